#!/bin/bash
# list_nodes.sh: migctl nodes on a lists a b c up; then b's shadowd is killed
# (SIGKILL) and c's stopped (SIGTERM: it stops cleanly), and migctl nodes on a shows
# a up, b and c unreachable. (migctl list, where a job runs, is checked after every
# hop of the other scenarios.)
#
# usage: list_nodes.sh OPTIONS (below); meson runs it as test 'migration-list-nodes'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL
cluster_up a b c

# --- migctl nodes, all up ----------------------------------------------------------------
hm a nodes >"$T/nodes.1" 2>&1
bad=""
for h in a b c; do [[ $(awk -v n="$h" '$1 == n { print $3 }' "$T/nodes.1") == up ]] || bad+=" $h"; done
if [[ -z $bad ]]; then
  ok "migctl nodes on a lists a b c up"
else
  fail "migctl nodes on a: not up:$bad"
  detail "$T/nodes.1" "migctl nodes"
fi

# --- migctl nodes with a node down ------------------------------------------------------------------
kill -KILL "${SD[b]}" 2>/dev/null   # b's shadowd dies
kill -TERM "${SD[c]}"
if wait_until 20 eval '! kill -0 "${SD[c]}" 2>/dev/null' && ! grep -q "stopping: " "$T/shadowd-c.log"; then
  ok "shadowd on c stopped on SIGTERM: $(tail -n 1 "$T/shadowd-c.log")"
else
  fail "shadowd on c did not stop cleanly on SIGTERM"
  shadowd_logs c
fi
hm a nodes >"$T/nodes.2" 2>&1
states="a:$(awk '$1 == "a" { print $3 }' "$T/nodes.2") b:$(awk '$1 == "b" { print $3 }' "$T/nodes.2") c:$(awk '$1 == "c" { print $3 }' "$T/nodes.2")"
if [[ $states == "a:up b:unreachable c:unreachable" ]]; then
  ok "migctl nodes on a: a up; b (shadowd killed) and c (shadowd stopped) unreachable"
else
  fail "migctl nodes on a, with b's shadowd killed and c's stopped: $states"
  detail "$T/nodes.2" "migctl nodes"
fi

cluster_end
