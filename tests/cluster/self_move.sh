#!/bin/bash
# self_move.sh: a program moves itself (examples/self_move.c, the self-migration
# API of shim/mig.h): started under mig on a, it calls mig_move("b") then
# mig_move("c"), and finishes with exactly the output of the run it must be (where
# it ran after each move, its home a, its PID unchanged, its sums); the same
# a -> b -> a (back home); then without mig, where mig_move fails cleanly (ENOSYS)
# and the program says so; and a move to a host that does not answer fails with
# the reason, the program still on a; MIG_ANYWHERE goes to b or c.
#
# usage: self_move.sh SELF_MOVE OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-self-move' (suite cluster) with every path filled in.
SELF_MOVE=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b c

# expected NODE...: what self_move NODE... started on a prints.
expected() {
  local n sum=0 k=0 h
  echo "self_move: started on a, home a"
  sums() { local i; for ((i = 0; i < 1000; i++)); do k=$((k + 1)); sum=$((sum + k * k)); done
           echo "self_move: sum of squares 1..$k = $sum"; }
  sums
  for h in "$@"; do
    echo "self_move: moving to $h"
    echo "self_move: now on $h, home a, PID unchanged"
    sums
  done
  echo "self_move: done"
}

# run_self NAME WANT_STATUS MODE NODE...: runs it on a, waits, compares its output.
run_self() {
  local name=$1 want=$2 mode=$3
  shift 3
  start_job "$name" "$mode" "$SELF_MOVE" "$@" || return
  if ! wait_job "$name" 120; then
    fail "$name: self_move $* did not finish within 120 s"
    detail "$(jfile "$name" out)" "its output"
    shadowd_logs a b c
    kill_job "$name"
    return 1
  fi
  if [[ $STATUS == "$want" ]] && cmp -s "$(jfile "$name" out)" "$T/$name.want"; then
    ok "$name: self_move $* ($mode) finished with status $STATUS and exactly the expected output"
  else
    fail "$name: self_move $* ($mode): status $STATUS (want $want), output differs from the expected"
    diff "$T/$name.want" "$(jfile "$name" out)" | head -20 | sed 's/^/#     /'
    detail "$(jfile "$name" err)" "its stderr"
    shadowd_logs a b c
  fi
}

expected b c >"$T/abc.want"
run_self abc 0 mig b c
expected b a >"$T/aba.want"
run_self aba 0 mig b a

# MIG_ANYWHERE: to b or c (the idler), not a.
start_job any mig "$SELF_MOVE" anywhere || true
if wait_job any 120 && [[ $STATUS == 0 ]] &&
   sed -n 4p "$(jfile any out)" | grep -qxE "self_move: now on [bc], home a, PID unchanged" &&
   [[ $(tail -n 1 "$(jfile any out)") == "self_move: done" ]]; then
  ok "any: self_move anywhere (MIG_ANYWHERE) went to another host: $(sed -n 4p "$(jfile any out)")"
else
  fail "any: self_move anywhere: status $STATUS"
  detail "$(jfile any out)" "its output"
  detail "$(jfile any err)" "its stderr"
  kill_job any
fi

{ echo "self_move: not running under mig (Function not implemented)"; } >"$T/plain.want"
run_self plain 3 plain b

# A move to a host that does not answer: mig_move returns -1 (EIO) with the reason
# migctl gave, and the program is still on a.
start_job nowhere mig "$SELF_MOVE" 127.0.0.1:9 || true
if wait_job nowhere 120 && [[ $STATUS == 1 ]] &&
   [[ $(tail -n 1 "$(jfile nowhere out)") == "self_move: cannot move to 127.0.0.1:9: Input/output error: migctl migrate: "*"stays where it was"* ]]; then
  ok "nowhere: a move to a host that does not answer: status 1, $(tail -n 1 "$(jfile nowhere out)")"
else
  fail "nowhere: a move to a host that does not answer: status $STATUS"
  detail "$(jfile nowhere out)" "its output"
  kill_job nowhere
fi

cluster_end
