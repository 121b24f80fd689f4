#!/bin/bash
# prelogin_limits.sh: what a peer without the cluster key can do to a shadowd before it
# logs in (DESIGN.md, Security). From a, against b's shadowd (login timeout 3 s, at
# most 16 connections waiting to log in): 8 connections each send the frame of a
# message claiming 64 MiB and then as much of it as they can, and hold on; b's
# shadowd closes each (at the link handshake, whose first bytes these are not: see
# shadow/secure_stream.h; a peer past it is held to 64 KiB until it logs in) with
# one line in its log, and its VmRSS stays within 32 MiB of what it was (without
# the limits it buffers ~64 MiB each). Then 40 idle connections: 24 are
# closed at once (16 pending is the limit), the other 16 after the login timeout;
# each closing is one line in b's log. Then a real migration a -> b still works and
# the job finishes as an undisturbed run.
#
# usage: prelogin_limits.sh OPTIONS (below); meson runs it as test
# 'migration-prelogin-limits' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features counter
CLIENT=$(abspath "$CLUSTER_LIB_DIR/prelogin_client.py")
LOGIN_TIMEOUT=3 PENDING=16 RSS_BOUND_KIB=$((32 * 1024))
SHADOWD_ARGS=(--login-timeout "$LOGIN_TIMEOUT" --max-pending-logins "$PENDING")
cluster_up a b
start_job counter-ref plain "${FEATURE[counter]}" 100

rss_b() { awk '$1 == "VmRSS:" { print $2 }' "/proc/${SD[b]}/status"; }
log_lines() { grep -c -- "$1" "$T/shadowd-b.log"; }

# --- oversized frames ------------------------------------------------------------------
rss_before=$(rss_b)
flood_pid=$(mh spawn "$C" a "$T/flood.out" -- python3 "$CLIENT" flood "${ADDR[b]}" "$PORT" 8)
bg_pids+=("$flood_pid")
if wait_until 90 grep -qx holding "$T/flood.out"; then
  rss_during=$(rss_b)
  closed=$(grep -c ' closed$' "$T/flood.out")
  growth=$((rss_during - rss_before))
  if (( closed == 8 && growth < RSS_BOUND_KIB )); then
    ok "8 connections each claiming a 64 MiB message: all closed by b; b's shadowd VmRSS $rss_before -> $rss_during KiB (+$growth KiB, bound $RSS_BOUND_KIB)"
  else
    fail "8 connections each claiming a 64 MiB message: $closed of 8 closed by b; b's shadowd VmRSS $rss_before -> $rss_during KiB (+$growth KiB, bound $RSS_BOUND_KIB)"
    detail "$T/flood.out" "the client's report"
  fi
  closing="closed the connection from ${ADDR[a]}:"
  n=$(log_lines "$closing")
  if (( n == 8 )); then
    ok "b logged each one: $(grep -m1 -- "$closing" "$T/shadowd-b.log")"
  else
    fail "b's log has $n lines about connections from a it closed, not 8"
    shadowd_logs b
  fi
else
  fail "the flooding client did not finish sending within 90 s"
  detail "$T/flood.out" "the client's report"
fi
kill -KILL "$flood_pid" 2>/dev/null

# --- idle connections --------------------------------------------------------------------
hx a python3 "$CLIENT" idle "${ADDR[b]}" "$PORT" 40 "$PENDING" $((LOGIN_TIMEOUT + 20)) >"$T/idle.out" 2>&1
at_once=$(awk '$1 == "at-once" { print $2 " closed, " $3 " open" }' "$T/idle.out")
later=$(awk '$1 == "later" { print $2 " closed, " $3 " open" }' "$T/idle.out")
if [[ $at_once == "24 closed, 16 open" ]]; then
  ok "40 idle connections: the 24 beyond $PENDING pending logins closed at once, 16 left waiting"
else
  fail "40 idle connections: at once: '${at_once:-no report}' (want 24 closed, 16 open)"
  detail "$T/idle.out" "the client's report"
fi
if [[ $later == "40 closed, 0 open" ]]; then
  ok "the 16 waiting ones were closed after the ${LOGIN_TIMEOUT} s login timeout"
else
  fail "after the login timeout: '${later:-no report}' (want 40 closed, 0 open)"
  detail "$T/idle.out" "the client's report"
fi
n_at_once=$(log_lines "at once: $PENDING connections are already waiting") n_late=$(log_lines "no login within $LOGIN_TIMEOUT s")
if (( n_at_once == 24 && n_late == 16 )); then
  ok "b logged one line per closed connection: $(grep -m1 -- "no login within" "$T/shadowd-b.log")"
else
  fail "b's log has $n_at_once lines 'closed at once' (want 24) and $n_late 'no login within' (want 16)"
  shadowd_logs b
fi

# --- a migration still works ---------------------------------------------------------------
if start_job counter mig "${FEATURE[counter]}" 100 && wait_step counter 3 30; then
  hop counter a b
  wait_job counter-ref 120
  compare counter counter-ref "$STATUS"
else
  fail "counter: the job did not get to STEP 3 on a"
fi

cluster_end
