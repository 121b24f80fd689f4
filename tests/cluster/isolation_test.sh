#!/bin/bash
# isolation_test.sh: proves that the simulated hosts of tests/harness/mig-hosts
# are isolated the way mig's multi-host tests rely on: hostnames, PID
# numbers, clocks, /tmp and the job's home directory, a network of their own
# on which TCP works across hosts, complete teardown, and recovery from a run
# killed in the middle. One line per check ("ok - ..." / "FAIL - ..."); exits
# 1 if any check fails, 77 (skipped) if this machine cannot make namespaces.
#
# usage: isolation_test.sh MIG_HOSTS HOST_INIT TCP_PROBE CLOCK_PROBE
set -uo pipefail

if (( $# != 4 )); then
  echo "usage: $0 MIG_HOSTS HOST_INIT TCP_PROBE CLOCK_PROBE" >&2
  exit 2
fi
HOSTS=$1
export MIG_HOST_INIT=$2
PROBE=$3
CLOCK=$4
readonly CLOCK_STEP=100000   # host i's clocks run i*CLOCK_STEP s ahead (mig-hosts --help)

if (( EUID != 0 )); then
  echo "SKIP: needs root to create namespaces, veths and a bridge"
  exit 77
fi
if ! why=$("$HOSTS" check 2>&1); then
  echo "SKIP: ${why#mig-hosts: }"
  exit 77
fi

# Clusters left behind by killed runs (their owner is dead) go first.
timeout 60 "$HOSTS" gc

source "$(dirname "$0")/lib/report.sh"   # ok, fail, $failures
check() {   # check DESCRIPTION CMD...: one line, from CMD's status
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

C=iso$$          # the cluster under test
C2=isocrash$$    # the clusters whose owner gets killed
T=$(mktemp -d /tmp/mig-isolation.XXXXXX)

# down kills every process we started in a host; the crash owner is our child.
cleanup() {
  [[ -n ${CRASH_PID:-} ]] && kill -KILL "$CRASH_PID" 2>/dev/null
  timeout 60 "$HOSTS" down "$C"
  timeout 60 "$HOSTS" down "$C2"
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' TERM INT HUP

# Every call into a host is bounded; the hosts see our binaries through --share.
mh() { timeout -k 5 60 "$HOSTS" "$@"; }
hx() { local c=$1 h=$2; shift 2; timeout -k 5 30 "$HOSTS" exec "$c" "$h" -- "$@"; }
share=()
for d in "$(dirname "$(readlink -f "$PROBE")")" "$(dirname "$(readlink -f "$CLOCK")")"; do
  [[ $d == /tmp/* ]] && share+=(--share "$d")
done

# alive PID [STARTTIME]: running, not a zombie (a zombie holds no namespace)
# and, if given, started at STARTTIME (a recycled PID does not count).
alive() {
  local s f
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  read -r -a f <<<"$s"
  [[ ${f[0]} != [ZX] && ( -z ${2:-} || ${f[19]} == "$2" ) ]]
}
ident() {   # ident PID...: "PID:STARTTIME" of each, to test later with still_running
  local p s f
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    echo "$p:${f[19]}"
  done
}
still_running() {   # still_running IDENT...: prints the PIDs among them still alive
  local e
  for e in "$@"; do alive "${e%%:*}" "${e#*:}" && echo "${e%%:*}"; done
  return 0
}
# PIDs of processes in the network namespaces with the given inode numbers.
pids_in_netns() {
  (( $# )) || return 0
  stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null |
    awk -v list=" $* " 'index(list, " " $1 " ") { split($2, a, "/"); print a[3] }'
}
netns_inodes() {   # netns_inodes CLUSTER: inodes of its network namespaces
  local f
  for f in /run/netns/"mig-$1" /run/netns/"mig-$1".*; do
    [[ -e $f ]] && stat -L -c %i "$f"
  done
  return 0
}
# cluster_procs CLUSTER: IDENTs of every process in the cluster's network
# namespaces and of its hosts' inits (which hold the rest of each host).
cluster_procs() {
  local h
  ident $(pids_in_netns $(netns_inodes "$1"))
  for h in "${@:2}"; do ident "$(mh pid "$1" "$h")"; done
}
# leftovers CLUSTER IDENT...: prints what is left of a torn-down cluster.
leftovers() {
  local c=$1
  shift
  ip netns list | grep -E "^mig-$c(\.| |$)" | sed 's/^/netns /'
  grep -E "/run/netns/mig-$c[. ]" /proc/self/mountinfo | sed 's/^/mount /'
  [[ -e /run/mig-hosts/$c ]] && echo "state /run/mig-hosts/$c"
  still_running "$@" | sed 's/^/process /'
  return 0
}
root_ns() { readlink "/proc/$$/ns/$1"; }

# --- up ------------------------------------------------------------------------
out=$(mh up --owner $$ ${share[@]+"${share[@]}"} "$C" a b c 2>"$T/up.err")
rc=$?
if (( rc != 0 )); then
  if (( rc == 77 )); then echo "SKIP: $(cat "$T/up.err")"; exit 77; fi
  echo "FAIL - mig-hosts up failed ($rc): $(cat "$T/up.err")"
  exit 1
fi
declare -A addr init
while read -r h a; do addr[$h]=$a; done <<<"$out"
net=${addr[a]%.*}
check "up gives hosts .1 .2 .3 of one 10.231.K.0/24 ($net.0/24)" \
  test "$net" != "${net#10.231.}" -a "${addr[a]}" = "$net.1" -a "${addr[b]}" = "$net.2" -a "${addr[c]}" = "$net.3"
check "addr reports the same address" test "$(mh addr "$C" b)" = "${addr[b]}"
for h in a b c; do init[$h]=$(mh pid "$C" "$h"); done

# --- hostnames (UTS) -----------------------------------------------------------------
names="$(hx "$C" a hostname) $(hx "$C" b hostname) $(hx "$C" c uname -n)"
check "each host's hostname is its name (got: $names)" test "$names" = "a b c"
check "the machine's hostname is untouched ($(hostname))" eval '[[ " a b c " != *" $(hostname) "* ]]'

# --- PID namespace -------------------------------------------------------------------
pidinfo=$(hx "$C" a sh -c 'echo $$; cat /proc/1/comm; ls /proc | grep -cE "^[0-9]+$"')
{ read -r inner_pid; read -r comm1; read -r nprocs; } <<<"$pidinfo"
root_nprocs=$(ls /proc | grep -cE '^[0-9]+$')
check "exec sees host PIDs: its \$\$ is $inner_pid, PID 1 is $comm1" \
  test "${inner_pid:-999}" -lt 50 -a "$comm1" = host_init
check "the host's /proc lists only its own $nprocs processes (machine: $root_nprocs)" \
  test "${nprocs:-999}" -le 6 -a "$root_nprocs" -gt "${nprocs:-0}"
check "hosts' PID namespaces differ from each other and from the machine's" \
  test "$(readlink /proc/"${init[a]}"/ns/pid)" != "$(root_ns pid)" \
    -a "$(readlink /proc/"${init[a]}"/ns/pid)" != "$(readlink /proc/"${init[b]}"/ns/pid)"

# --- clocks (time namespace) -------------------------------------------------------------
ns_a=$(hx "$C" a readlink /proc/self/ns/time)
ns_b=$(hx "$C" b readlink /proc/self/ns/time)
check "hosts have their own time namespaces ($ns_a, $ns_b; machine $(root_ns time))" \
  test -n "$ns_a" -a "$ns_a" != "$ns_b" -a "$ns_a" != "$(root_ns time)"
r0=$("$CLOCK")
ca=$(hx "$C" a "$CLOCK"); cb=$(hx "$C" b "$CLOCK"); cc=$(hx "$C" c "$CLOCK")
r1=$("$CLOCK")
upt_a=$(hx "$C" a cat /proc/uptime)
r2=$("$CLOCK")
# offset_ok CLOCKNAME HOST_OUTPUT EXPECTED: the host's clock minus the
# machine's (read just before and after) brackets EXPECTED, give or take 0.5 s.
offset_ok() {
  printf '%s\n%s\n%s\n' "$r0" "$2" "$r1" | awk -v k="$1" -v want="$3" '
    $1 == k { v[n++] = $2 }
    END { lo = v[1] - v[2]; hi = v[1] - v[0];
          printf "%.2f", (lo + hi) / 2 > "/dev/stderr";
          exit !(n == 3 && want >= lo - 0.5 && want <= hi + 0.5) }'
}
for h in a b c; do
  case $h in a) out=$ca; i=1 ;; b) out=$cb; i=2 ;; c) out=$cc; i=3 ;; esac
  want=$(( i * CLOCK_STEP ))
  got_m=$(offset_ok monotonic "$out" "$want" 2>&1) && m_ok=1 || m_ok=0
  got_b=$(offset_ok boottime "$out" "$want" 2>&1) && b_ok=1 || b_ok=0
  check "host $h's monotonic clock is +$want s from the machine's (measured +$got_m)" test $m_ok = 1
  check "host $h's boottime clock is +$want s from the machine's (measured +$got_b)" test $b_ok = 1
done
upt_ok=$(awk -v u="${upt_a%% *}" -v r1="$(awk '$1=="boottime"{print $2}' <<<"$r1")" \
             -v r2="$(awk '$1=="boottime"{print $2}' <<<"$r2")" -v want=$CLOCK_STEP \
             'BEGIN { print (u - r2 <= want + 0.5 && u - r1 >= want - 0.5) ? 1 : 0 }')
check "host a's /proc/uptime carries its boottime offset (${upt_a%% *} s)" test "$upt_ok" = 1

# --- /tmp and the job's home directory (mount namespace) ----------------------------------
hx "$C" a sh -c 'echo secret-of-a >/tmp/mig-host-a/file'
check "a file written in a's /tmp/mig-host-a/ reads back on a" \
  test "$(hx "$C" a cat /tmp/mig-host-a/file)" = secret-of-a
check "b sees neither a's file nor a's /tmp/mig-host-a/" hx "$C" b test ! -e /tmp/mig-host-a
check "b has /tmp/mig-host-b/, which a does not have" \
  eval 'hx "$C" b test -d /tmp/mig-host-b && hx "$C" a test ! -e /tmp/mig-host-b'
check "the machine has neither host's directory" test ! -e /tmp/mig-host-a -a ! -e /tmp/mig-host-b
touch "$T/machine-only"
check "the machine's /tmp is invisible in the hosts" hx "$C" a test ! -e "$T/machine-only"

# --- network -------------------------------------------------------------------------
# The listener runs as a daemon on b; its output comes back through a FIFO,
# so we learn its port as soon as it listens.
mkfifo "$T/b.out"
exec {bout}<>"$T/b.out"
listener=$(mh spawn "$C" b "$T/b.out" -- "$PROBE" listen --timeout 30)
read -r -t 15 -u "$bout" portline || portline=
port=${portline#port }
check "spawn prints a machine PID ($listener) in b's PID namespace, child of b's init" \
  eval '[[ $(readlink /proc/$listener/ns/pid) == "$(readlink /proc/${init[b]}/ns/pid)" &&
          $(awk "/^PPid:/ {print \$2}" /proc/$listener/status) == "${init[b]}" ]]'
check "listener on b reports its port ($portline)" eval '[[ $port =~ ^[0-9]+$ ]]'
reply=$(hx "$C" a "$PROBE" connect "${addr[b]}" "$port" --send "hello from a $$" --timeout 10)
check "a connects to b at ${addr[b]}:$port over TCP and gets its line echoed ($reply)" \
  test "$reply" = "got hello from a $$"
read -r -t 15 -u "$bout" peerline || peerline=
check "b saw the connection come from a's address ($peerline)" test "$peerline" = "peer ${addr[a]}"
check "the listener exits after one echo" timeout 10 tail --pid="$listener" -f /dev/null

mkfifo "$T/a.out"
exec {aout}<>"$T/a.out"
lo_listener=$(mh spawn "$C" a "$T/a.out" -- "$PROBE" listen --bind 127.0.0.1 --timeout 30)
read -r -t 15 -u "$aout" portline || portline=
port=${portline#port }
check "b cannot reach a's loopback listener on 127.0.0.1:$port" \
  eval '! hx "$C" b "$PROBE" connect 127.0.0.1 "$port" --send x --timeout 5 2>/dev/null'
check "a reaches its own loopback listener" \
  eval 'hx "$C" a "$PROBE" connect 127.0.0.1 "$port" --send lo --timeout 10 >/dev/null'
check "hosts have only lo and eth0, and no route off the cluster's subnet" \
  eval '[[ $(hx "$C" a ip -o link | awk -F": " "{print \$2}" | cut -d@ -f1 | tr "\n" " ") == "lo eth0 " &&
          -z $(hx "$C" a ip -4 route show default) ]]'
check "the machine has no interface of the cluster" \
  eval '[[ -z $(ip -o link | grep -E ": mig-(br|p[0-9]+)[@:]") ]]'

# --- gc and a crashed owner -------------------------------------------------------------
# crash_cluster: brings C2 up from a child shell (its owner by default) and
# kills that shell with SIGKILL, as if the test running it were killed.
crash_cluster() {
  local line lines=()
  coproc CRASH { "$HOSTS" up "$C2" x y; echo "up-rc=$?"; exec cat; }
  while read -r -t 60 -u "${CRASH[0]}" line; do
    lines+=("$line")
    [[ $line == up-rc=* ]] && break
  done
  crash_out=$(printf '%s\n' ${lines[@]+"${lines[@]}"})
  crash_host_ok=$(hx "$C2" y hostname)
  mapfile -t crash_procs < <(cluster_procs "$C2" x y)
  kill -KILL "$CRASH_PID"
  wait "$CRASH_PID" 2>/dev/null
  CRASH_PID=
}

crash_cluster
check "a second cluster comes up beside the first ($(tr '\n' ' ' <<<"$crash_out"))" \
  eval '[[ $crash_out == *up-rc=0* && $crash_host_ok == y ]]'
net2=$(awk '$1 == "x" { sub(/\.[0-9]+$/, "", $2); print $2 }' <<<"$crash_out")
check "the two clusters have different subnets ($net.0/24, $net2.0/24)" \
  test -n "$net2" -a "$net2" != "$net"
check "list shows the crashed cluster's owner dead" eval 'mh list | grep "^$C2 .* dead " >/dev/null'
mh gc 2>/dev/null
left=$(leftovers "$C2" "${crash_procs[@]}")
check "gc removes the cluster whose owner was killed (${#crash_procs[@]} processes)${left:+: $left}" \
  test -z "$left"
check "gc leaves the live cluster alone" eval 'mh pid "$C" a >/dev/null && [[ -d /run/mig-hosts/$C ]]'

crash_cluster
out2=$(mh up --owner $$ "$C2" x y 2>/dev/null)
left=$(still_running "${crash_procs[@]}")
check "up over a crashed cluster of the same name kills its processes${left:+: $left}" test -z "$left"
check "and brings the new one up" eval '[[ $(hx "$C2" x hostname) == x && -n $out2 ]]'
mapfile -t new_procs < <(cluster_procs "$C2" x y)
mh down "$C2"
left=$(leftovers "$C2" "${new_procs[@]}")
check "down of the replacement leaves nothing${left:+: $left}" test -z "$left"

# --- down --------------------------------------------------------------------------
check "the cluster has its switch and 3 host network namespaces" \
  test "$(netns_inodes "$C" | wc -l)" = 4
daemon=$(mh spawn "$C" c /dev/null -- "$PROBE" listen --timeout 60)
mapfile -t procs < <(cluster_procs "$C" a b c; ident "$daemon")
mh down "$C"
left=$(leftovers "$C" "${procs[@]}")
check "down leaves no namespace, mount, state or process (of ${#procs[@]})${left:+: $left}" test -z "$left"
check "down again succeeds (idempotent)" mh down "$C"

if (( failures )); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
