#!/bin/bash
# balance.sh: the *balance* policy acting (docs/policies.md). Hosts a and b, each
# shadowd with [balance] on and counting 1 CPU (the simulated hosts share the machine's).
# A CPU-bound job runs on a alone: a counts it, is not busy, and it stays. A busy loop not under mig
# starts on a: a is busy (2 runnable on 1 CPU), b idle, and a's shadowd moves the job to
# b on its own (a's log and migctl history say so). Then the loop on a is killed and one
# starts on b: b is busy and a idle, but the job moved less than the no-return time ago
# (set to an hour here), so b's shadowd logs that it stays, and it does: no move in b's
# history, the job still on b. The loop is killed and the job finishes with exactly the
# output of an undisturbed run.
#
# usage: balance.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-balance' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
CLUSTER_POLICY='# balance.sh: quick to measure; one CPU a host; no return within an hour.
[balance]
enabled = true
cpus = 1
sample_seconds = 0.5
window_seconds = 2
no_return_seconds = 3600'
cluster_up a b
if grep -q "policy: balance: a job leaves this host when busy (1 CPUs)" "$T/shadowd-a.log"; then
  ok "shadowd on a started with the policy: $(grep -m1 'policy: balance' "$T/shadowd-a.log" | sed 's/^.*shadowd: //')"
else
  fail "shadowd on a does not say it runs the balance policy"
  shadowd_logs a
fi

# The undisturbed run, first and alone: its GO file is there from the start.
undisturbed_cpu_job spin

start_job job mig "$CPU_JOB" @DIR@/go spin || cluster_end
if ! wait_step job 3 60; then
  fail "job: no STEP 3 within 60 s (last: STEP $(last_step job))"
  kill_job job
  cluster_end
fi
# a's count of runnable threads, as a's shadowd reports it (migctl nodes --json).
runnable_a() {
  hm a nodes --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys
print(next((n["runnable"] for n in json.load(sys.stdin)["nodes"] if n["name"] == "a"), -1))'
}
# Once a's shadowd counts the job (about 1 runnable on its 1 CPU: not busy), it decides
# after each sample; the job is still on a.
if wait_until 60 eval '/usr/bin/python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 else 1)" "$(runnable_a)"' &&
   [[ $(host_of "$(where job)") == a ]] && ! grep -q "balance: PID" "$T/shadowd-a.log"; then
  ok "job: computes on a, alone there (a counts $(runnable_a) runnable on 1 CPU), and stays"
else
  fail "job: on $(host_of "$(where job)") with a counting $(runnable_a) runnable, though a was not busy"
  shadowd_logs a
fi

# a's owner starts a busy loop, not under mig.
LOAD_A=$(mh spawn "$C" a "$T/load-a.log" -- sh -c 'while :; do :; done')
bg_pids+=("$LOAD_A")
moved_line() { grep -m1 "balance: PID ${PID[job]} of a (.*) moved to b, frozen" "$T/shadowd-a.log"; }
if wait_until 90 eval '[[ $(host_of "$(where job)") == b ]]' && wait_until 10 moved_line >/dev/null; then
  ok "job: a got busy, its shadowd moved the job to idle b: $(moved_line | sed 's/^.*shadowd: //')"
else
  fail "job: on $(host_of "$(where job)") 90 s after a's busy loop started, not on b"
  shadowd_logs a b
  kill_job job
  cluster_end
fi
history_moves() {  # history_moves HOST: the moves of the job in HOST's migctl history, "FROM>TO" each
  hm "$1" history --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys
print(" ".join(x["from"] + ">" + x["to"] for x in json.load(sys.stdin)["moves"] if x["pid"] == int(sys.argv[1]) and x["ok"]))' "${PID[job]}"
}
h=$(history_moves a)
if [[ $h == "a>b" ]]; then
  ok "migctl history on a: the one move, a -> b"
else
  fail "migctl history on a: moves of the job '$h', not just a -> b"
fi

# Now b is the busy one and a idle: the way back would gain, but the job just moved.
kill -KILL "$LOAD_A"
LOAD_B=$(mh spawn "$C" b "$T/load-b.log" -- sh -c 'while :; do :; done')
bg_pids+=("$LOAD_B")
stays_line() { grep -m1 "balance: PID ${PID[job]} of a (.*) stays here: it moved less than the no-return time ago" "$T/shadowd-b.log"; }
if wait_until 90 stays_line >/dev/null && [[ $(host_of "$(where job)") == b ]]; then
  ok "job: b got busy, a is idle, and b keeps the job (no ping-pong): $(stays_line | sed 's/^.*shadowd: //')"
else
  fail "job: on $(host_of "$(where job)"); b's shadowd did not say it keeps the job within 90 s"
  shadowd_logs a b
fi
ha=$(history_moves a) hb=$(history_moves b)
if [[ $ha == "a>b" && -z $hb ]]; then
  ok "migctl history: still only a -> b (on a), no move on b"
else
  fail "migctl history after b got busy: on a '$ha', on b '$hb'"
fi
kill -KILL "$LOAD_B"

touch "$(jfile job data)/go"
compare job ref 0
kill_job job
cluster_end
