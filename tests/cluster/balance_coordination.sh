#!/bin/bash
# balance_coordination.sh: two busy hosts, one idle host with one CPU: the idle host gets
# one job, not two (docs/policies.md, "Coordination between hosts"). Hosts a, b, c, each
# shadowd with [balance] on and counting 1 CPU. Job one runs on b, where a `migctl
# migrate` sent it (a's shadowd learns its transfer rate to b from that move and logs
# it); job two runs on a. Both jobs are stopped (SIGSTOP), two busy loops not under mig
# start on a and two on b, and once a and b are seen busy the jobs are let go together
# (SIGCONT): both hosts have 3 runnable on 1 CPU and see c idle, so both want to send
# their job to c in the same window, before c's load count can show either. c promises
# its one idle CPU to the first that asks for a slot and refuses the other: exactly one
# job moves to c, the other host logs that its job stays, and c never runs more than
# one job. The loops are killed and both jobs finish with exactly the undisturbed output.
#
# usage: balance_coordination.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as
# test 'migration-balance-coordination' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
# A window of 4 s: a host's count takes a job in over 4 s, so both busy hosts decide
# while c's count still says idle. no_return_seconds is short so that job one, moved
# by hand, may move again by the time its host is busy.
CLUSTER_POLICY='# balance_coordination.sh: one CPU a host.
[balance]
enabled = true
cpus = 1
sample_seconds = 0.5
window_seconds = 4
no_return_seconds = 1'
cluster_up a b c

undisturbed_cpu_job spin

# Job one: started on a, moved to b by hand while a is not busy (one job on one CPU).
start_job one mig "$CPU_JOB" @DIR@/go spin || cluster_end
if ! wait_step one 3 60; then
  fail "one: no STEP 3 within 60 s (last: STEP $(last_step one))"
  cluster_end
fi
if migrate one b 60 && [[ $(host_of "$(where one)") == b ]]; then
  ok "one: moved to b by migctl migrate: $(migrated_line)"
else
  fail "one: migctl migrate to b failed (status $MIG_RC): $(cat "$MIG_ERR")"
  kill_job one
  cluster_end
fi
rate_line() { grep -m1 "transfer rate to b: .* MB/s over the last 1 image(s) sent there" "$T/shadowd-a.log"; }
if rate_line >/dev/null; then
  ok "a's shadowd learned its transfer rate to b from that migctl migrate: $(rate_line | sed 's/^.*shadowd: //')"
else
  fail "a's shadowd logged no transfer rate to b after migctl migrate sent a job there"
  shadowd_logs a
fi
start_job two mig "$CPU_JOB" @DIR@/go spin || cluster_end
if ! wait_step two 3 60; then
  fail "two: no STEP 3 within 60 s (last: STEP $(last_step two))"
  kill_job one
  kill_job two
  cluster_end
fi

# Both jobs stopped (SIGSTOP at home: the deputy passes it on to one, on b), the owners
# of a and b start two busy loops each, not under mig: a and b are busy, but nothing
# there wants to move yet.
hx a kill -STOP "${PID[one]}" "${PID[two]}"
stopped() { [[ $(hx "$1" ps -o stat= -p "$2" 2>/dev/null) == T* ]]; }
# (anchored: the job's link process names its command in its own arguments)
ONE_ON_B=$(hx b pgrep -f "^[^ ]*cpu_job $(jdir one)/data/go" | head -n 1)
if ! wait_until 20 eval 'stopped a "${PID[two]}" && stopped b "$ONE_ON_B"'; then
  fail "SIGSTOP did not stop two on a and one on b (PID $ONE_ON_B there) within 20 s"
  kill_job one
  kill_job two
  cluster_end
fi
LOADS=()
for h in a a b b; do LOADS+=("$(mh spawn "$C" "$h" "$T/load-$h.log" -- sh -c 'while :; do :; done')"); done
bg_pids+=("${LOADS[@]}")
runnable() {  # runnable HOST: its count as a's shadowd sees it (migctl nodes --json)
  hm a nodes --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys
print(next((n["runnable"] for n in json.load(sys.stdin)["nodes"] if n["name"] == sys.argv[1]), -1))' "$1"
}
at_least() { /usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$@"; }
if wait_until 60 eval 'at_least "$(runnable a)" 1.9 && at_least "$(runnable b)" 1.9'; then
  ok "a and b busy with their owners' loops (runnable a $(runnable a), b $(runnable b), c $(runnable c), 1 CPU each), the jobs stopped"
else
  fail "a's shadowd does not see a and b busy: runnable a $(runnable a), b $(runnable b)"
  shadowd_logs a b
fi
# Both jobs go on at once: within half a window both hosts see their job want CPU
# (3 runnable on 1 CPU) and c idle.
hx a kill -CONT "${PID[one]}" "${PID[two]}"
# Balance's moves to c, each naming the job by its PID at home on a and its command.
moved_to_c() { grep -h "balance: PID .* moved to c, frozen" "$T/shadowd-a.log" "$T/shadowd-b.log"; }
right_job() { grep -qE "balance: PID (${PID[one]}|${PID[two]}) of a \($CPU_JOB $(jdir '(one|two)')/data/go spin\) moved to c" <<<"$1"; }
# The host whose job did not go, and its log line saying why it stays.
loser_stays() {
  local h
  for h in a b; do
    grep -q "balance: PID .* moved to c, frozen" "$T/shadowd-$h.log" && continue
    grep -m1 "balance: PID .* stays here: " "$T/shadowd-$h.log" && return 0
  done
  return 1
}
if wait_until 90 eval '[[ -n $(moved_to_c) ]] && loser_stays >/dev/null'; then
  if right_job "$(moved_to_c | head -n 1)"; then
    ok "one job went to c: $(moved_to_c | head -n 1 | sed 's/^.*shadowd: //')"
  else
    fail "the move to c does not name job one or two, PID ${PID[one]} or ${PID[two]} of a: $(moved_to_c | head -n 1 | sed 's/^.*shadowd: //')"
  fi
  ok "the other stays: $(loser_stays | sed 's/^.*shadowd: //')"
else
  fail "within 90 s of the busy loops: no job moved to c by balance, or the other host did not say why its job stays"
  shadowd_logs a b c
fi
refused=$(grep -m1 "coordination: no slot for a job another host would send here" "$T/shadowd-c.log")
if [[ -n $refused ]]; then
  ok "c refused the second job a slot: ${refused#*shadowd: }"
else
  # (Not a check: the second host decided late enough for c's own count to show the
  # first job. The count below is the check either way.)
  echo "# c was asked for no second slot: the second host saw c's count rise first"
fi
# The moves to c, and where the jobs run, once both hosts have decided.
n=$(moved_to_c | wc -l)
wa=$(host_of "$(where one)") wb=$(host_of "$(where two)")
on_c=0
[[ $wa == c ]] && on_c=$((on_c + 1))
[[ $wb == c ]] && on_c=$((on_c + 1))
if [[ $n == 1 && $on_c == 1 ]]; then
  ok "c, with 1 idle CPU, got exactly 1 job (one on $wa, two on $wb)"
else
  fail "c got $n balance move(s) and runs $on_c job(s) (one on $wa, two on $wb): more than its 1 idle CPU"
  shadowd_logs a b c
fi
kill -KILL "${LOADS[@]}"

touch "$(jfile one data)/go" "$(jfile two data)/go"
compare one ref 0
compare two ref 0
kill_job one
kill_job two
cluster_end
