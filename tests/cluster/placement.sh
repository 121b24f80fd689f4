#!/bin/bash
# placement.sh: `migctl run --anywhere` (docs/policies.md, Placement). Hosts a, b, c,
# each shadowd counting 1 CPU (the simulated hosts share the machine's). Busy loops not
# under mig run on a and on c; once a's shadowd sees them (migctl nodes --json:
# runnable), `migctl run --anywhere` starts a job on a, which lands on b, the idlest
# host, and says so in one line. The loops are killed; once the hosts are seen idle a
# second job started the same way stays home with one line saying why. Both finish with
# exactly the output of an undisturbed run and exit status 0.
#
# usage: placement.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-placement' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
CLUSTER_POLICY='# placement.sh: one CPU a host, quick to measure (balance itself stays off).
[balance]
cpus = 1
sample_seconds = 0.5
window_seconds = 2'
cluster_up a b c

undisturbed_cpu_job idle

# runnable HOST: the runnable count of HOST as a's shadowd sees it.
runnable() {
  hm a nodes --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys
print(next((n["runnable"] for n in json.load(sys.stdin)["nodes"] if n["name"] == sys.argv[1]), -1))' "$1"
}
busy() { /usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 else 1)' "$(runnable "$1")"; }
idle() { /usr/bin/python3 -c 'import sys; sys.exit(0 if 0 <= float(sys.argv[1]) < 0.5 else 1)' "$(runnable "$1")"; }

LOAD_A=$(mh spawn "$C" a "$T/load-a.log" -- sh -c 'while :; do :; done')
LOAD_C=$(mh spawn "$C" c "$T/load-c.log" -- sh -c 'while :; do :; done')
bg_pids+=("$LOAD_A" "$LOAD_C")
if wait_until 60 eval 'busy a && busy c && idle b'; then
  ok "busy loops on a and c seen: runnable a $(runnable a), b $(runnable b), c $(runnable c)"
else
  fail "a's shadowd does not see a and c busy, b idle: runnable a $(runnable a), b $(runnable b), c $(runnable c)"
  shadowd_logs a
  cluster_end
fi

start_job job plain "$MIGCTL" run --anywhere -- "$CPU_JOB" @DIR@/go idle || cluster_end
placed_line() { grep -m1 "^migctl run: PID ${PID[job]} moved to b (where it gets the most CPU), frozen [0-9.]* ms$" "$(jfile job err)"; }
if wait_until 60 eval '[[ $(host_of "$(where job)") == b ]]' && wait_until 10 placed_line >/dev/null; then
  ok "job: migctl run --anywhere on a placed it on b, the idlest host: $(placed_line)"
else
  fail "job: started with --anywhere, it is on $(host_of "$(where job)"), not b"
  detail "$(jfile job err)" "its stderr"
  shadowd_logs a
fi

kill -KILL "$LOAD_A" "$LOAD_C"
if ! wait_until 60 eval 'idle a && idle c'; then
  fail "a and c still seen busy 60 s after their loops were killed: runnable a $(runnable a), c $(runnable c)"
fi
start_job job2 plain "$MIGCTL" run --anywhere -- "$CPU_JOB" @DIR@/go idle || cluster_end
stays_line() { grep -m1 "^migctl run: PID ${PID[job2]} stays here: no host would give it more CPU than this one" "$(jfile job2 err)"; }
if wait_until 60 stays_line >/dev/null && [[ $(host_of "$(where job2)") == a ]]; then
  ok "job2: with no host idler than a, it stays home: $(stays_line)"
else
  fail "job2: on $(host_of "$(where job2)"); its stderr has no line saying it stays"
  detail "$(jfile job2 err)" "its stderr"
  shadowd_logs a
fi

touch "$(jfile job data)/go" "$(jfile job2 data)/go"
compare job ref 0 nostderr
compare job2 ref 0 nostderr
kill_job job
kill_job job2
cluster_end
