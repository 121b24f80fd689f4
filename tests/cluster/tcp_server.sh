#!/bin/bash
# tcp_server.sh: servers whose sockets stay on a. A blocking TCP echo server
# (--netserver, jobs/echo_server.c) listening on a's address, migrated a -> b while
# a client on d talks to it (every echo, in order, no reset), then b -> c while it
# waits in accept; a client on c is served from b and one on b from c, each at a's
# address; accept tells each client's own address. An event-loop server (--evserver,
# jobs/epoll_echo_server.c: non-blocking sockets, epoll) on a's address, migrated
# a -> b -> c while three clients on d send numbered lines at a steady rate: every
# echo in order, no reset; a new client to a's address after each hop is served.
# --rebind: the event-loop server's client on d sees a reset, a client to b's
# address is served by the job on b. A job (--latejob, jobs/late_connect.c) that
# connects to a listener on d only after its migration to b: d sees a's address,
# and b's with --local-net.
#
# usage: tcp_server.sh OPTIONS (below); meson runs it as test 'migration-tcp-server'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
if [[ -z $NETSERVER$EVSERVER$LATEJOB ]]; then
  echo "SKIP: none of --netserver, --evserver, --latejob given"
  exit 77
fi
cluster_up a b c d

# steady HOST ADDR PORT N NAME OUT: from HOST, N lines "NAME i" to ADDR:PORT, 20 ms
# apart, each echo checked (lib/echo_client.py); OUT gets "N echoes in order" or what
# went wrong ("reset after i echoes" for a reset).
steady() { hx "$1" python3 "$CLUSTER_LIB_DIR/echo_client.py" "$2" "$3" "$4" "$5" >"$6" 2>&1; }
# net_client HOST PORT N OUT: the same to a's address.
net_client() { steady "$1" "${ADDR[a]}" "$2" "$3" message "$4"; }

# --- a blocking TCP server ----------------------------------------------------------------
if [[ -n $NETSERVER ]]; then
  if start_job netserver mig "$NETSERVER" 3 "${ADDR[a]}" &&
     wait_until 20 grep -q '^port ' "$(jfile netserver out)"; then
    nport=$(awk '$1 == "port" { print $2 }' "$(jfile netserver out)")
    net_client d "$nport" 150 "$T/net1.out" &
    c1=$!; bg_pids+=($c1)
    wait_until 20 grep -q '^client 1 ' "$(jfile netserver out)"  # its 150 messages take 3 s
    migrate netserver b && ok "netserver: a -> b while a client on d talks to it: $(migrated_line)" ||
      { fail "netserver: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    wait "$c1"
    net_client c "$nport" 20 "$T/net2.out"
    wait_until 20 grep -q '^served client 2$' "$(jfile netserver out)"
    migrate netserver c && ok "netserver: b -> c while it waits in accept: $(migrated_line)" ||
      { fail "netserver: b -> c: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b c; }
    net_client b "$nport" 20 "$T/net3.out"
    wait_job netserver 30
    if [[ $STATUS == 0 ]] && grep -qx "150 echoes in order" "$T/net1.out" &&
       grep -qx "20 echoes in order" "$T/net2.out" && grep -qx "20 echoes in order" "$T/net3.out" &&
       grep -qx "client 1 from ${ADDR[d]}, to port $nport" "$(jfile netserver out)" &&
       grep -qx "client 2 from ${ADDR[c]}, to port $nport" "$(jfile netserver out)" &&
       grep -qx "client 3 from ${ADDR[b]}, to port $nport" "$(jfile netserver out)"; then
      ok "netserver: a client on d got its 150 echoes in order across a -> b; clients on c and b were served from b and c at a's address ${ADDR[a]}:$nport, each seen from its own address; status 0 on a"
    else
      fail "netserver: status $STATUS; the clients and the server say:"
      for x in net1 net2 net3; do detail "$T/$x.out" "$x"; done
      detail "$(jfile netserver out)" "the server's output"
      shadowd_logs a b c
    fi
  fi
  kill_job netserver
fi

# --- an event-loop server, and --rebind ---------------------------------------------------
# An event-loop server (non-blocking sockets, one epoll): three clients on d keep
# talking to it at a's address while it goes a -> b -> c; after each hop a new
# client is served at the same address.
if [[ -n $EVSERVER ]]; then
  if start_job evserver mig "$EVSERVER" 5 "${ADDR[a]}" && wait_until 20 grep -q '^port ' "$(jfile evserver out)"; then
    eport=$(awk '$1 == "port" { print $2 }' "$(jfile evserver out)")
    steadies=()
    for k in 1 2 3; do steady d "${ADDR[a]}" "$eport" 400 "d$k" "$T/ev$k.out" & steadies+=($!); bg_pids+=($!); done
    wait_until 20 grep -q '^client 3 ' "$(jfile evserver out)"
    migrate evserver b && ok "evserver: a -> b while three clients on d talk to it: $(migrated_line)" ||
      { fail "evserver: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    steady c "${ADDR[a]}" "$eport" 20 c "$T/ev4.out"
    migrate evserver c && ok "evserver: b -> c while three clients on d talk to it: $(migrated_line)" ||
      { fail "evserver: b -> c: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b c; }
    steady b "${ADDR[a]}" "$eport" 20 b "$T/ev5.out"
    wait "${steadies[@]}"
    wait_job evserver 30
    if [[ $STATUS == 0 ]] && grep -qx "400 echoes in order" "$T/ev1.out" && grep -qx "400 echoes in order" "$T/ev2.out" &&
       grep -qx "400 echoes in order" "$T/ev3.out" && grep -qx "20 echoes in order" "$T/ev4.out" &&
       grep -qx "20 echoes in order" "$T/ev5.out"; then
      ok "evserver: three clients on d got their 400 echoes each in order across a -> b -> c, clients on c and b were served after each hop at a's address; status 0 on a"
    else
      fail "evserver: status $STATUS; the clients and the server say:"
      for x in ev1 ev2 ev3 ev4 ev5; do detail "$T/$x.out" "$x"; done
      detail "$(jfile evserver out)" "the server's output"
      detail "$(jfile evserver err)" "the server's stderr"
      shadowd_logs a b c
    fi
  fi
  kill_job evserver

  # --rebind: the server's listener is made again on b, its connection reset.
  if start_job rebound mig "$EVSERVER" 2 "${ADDR[a]}" && wait_until 20 grep -q '^port ' "$(jfile rebound out)"; then
    rport=$(awk '$1 == "port" { print $2 }' "$(jfile rebound out)")
    steady d "${ADDR[a]}" "$rport" 1000 r1 "$T/rb1.out" & rb=$!; bg_pids+=($rb)
    wait_until 20 grep -q '^client 1 ' "$(jfile rebound out)"
    migrate rebound b "" --rebind && ok "rebound: a -> b --rebind: $(migrated_line)" ||
      { fail "rebound: a -> b --rebind: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    wait "$rb"
    steady d "${ADDR[b]}" "$rport" 20 r2 "$T/rb2.out"
    wait_job rebound 30
    if [[ $STATUS == 0 ]] && grep -q "^reset after " "$T/rb1.out" && grep -qx "20 echoes in order" "$T/rb2.out" &&
       grep -qx "client 2 from ${ADDR[d]}" "$(jfile rebound out)"; then
      ok "rebound: its client on d saw a reset ($(cat "$T/rb1.out")); a new client to b's address ${ADDR[b]}:$rport was served by the job on b; status 0 on a"
    else
      fail "rebound: status $STATUS; the clients and the server say:"
      for x in rb1 rb2; do detail "$T/$x.out" "$x"; done
      detail "$(jfile rebound out)" "the server's output"
      shadowd_logs a b
    fi
  fi
  kill_job rebound
fi

# --- a socket made after the hop ---------------------------------------------------------
# A job that connects only once it runs on b: from home's address by default, from
# b's with --local-net.
LISTEN_ONCE='import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1); l.settimeout(60); print("listening", flush=True)
c, peer = l.accept(); c.settimeout(30); c.makefile("r").readline()
c.sendall(b"hello from d\n"); c.close(); print("peer", peer[0])'
if [[ -n $LATEJOB ]]; then
  for policy in home local; do
    lport=$((7100 + ${#policy}))
    hx d python3 -c "$LISTEN_ONCE" "${ADDR[d]}" "$lport" >"$T/late-$policy.out" 2>&1 & lst=$!; bg_pids+=($lst)
    wait_until 20 grep -q '^listening' "$T/late-$policy.out"
    start_job "late$policy" mig "$LATEJOB" @DIR@/go "${ADDR[d]}" "$lport"
    wait_until 20 grep -q '^pid ' "$(jfile "late$policy" out)"
    flag=(); [[ $policy == local ]] && flag=(--local-net)
    migrate "late$policy" b "" "${flag[@]}" ||
      { fail "late$policy: a -> b ${flag[*]}: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    touch "$(jfile "late$policy" data)/go"
    wait_job "late$policy" 30
    wait "$lst"
    want_from=${ADDR[a]}; [[ $policy == local ]] && want_from=${ADDR[b]}
    if [[ $STATUS == 0 ]] && grep -qx "peer $want_from" "$T/late-$policy.out" &&
       grep -qx "reply hello from d" "$(jfile "late$policy" out)"; then
      ok "late$policy: a socket the job made on b ${flag[*]:-(default)} reached d from $want_from"
    else
      fail "late$policy: status $STATUS; d saw '$(cat "$T/late-$policy.out")', wanted peer $want_from"
      detail "$(jfile "late$policy" out)" "the job's output"
      detail "$(jfile "late$policy" err)" "the job's stderr"
      shadowd_logs a b
    fi
    kill_job "late$policy"
  done
fi

cluster_end
