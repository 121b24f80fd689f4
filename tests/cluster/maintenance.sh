#!/bin/bash
# maintenance.sh: shadowd stopped for maintenance (SIGTERM, as `systemctl stop` sends
# it; docs/policies.md, Maintenance). Hosts a and b. A job started on a runs on b; b's
# shadowd gets SIGTERM: the job leaves b for a (its home, the only other host) and b's
# shadowd exits, its log saying the job left.
# The first job finishes (at home) with exactly the output of an undisturbed run.
# Then b's shadowd is started again, a second job is moved to b, and a is drained: with
# no host that takes it, the SIGTERM to b's shadowd says which job could not move and
# stays for it (its calls home go through b: docs/design.md, "Stopping shadowd"); the
# job finishes exact there, and then b's shadowd exits by itself. (The first job ends
# first: once back home it runs on a as a job that migrated in, which a drain of a
# would move away.)
#
# usage: maintenance.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-maintenance' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
SHADOWD_ARGS=(--stop-time-limit 20)
cluster_up a b

undisturbed_cpu_job idle

start_job job mig "$CPU_JOB" @DIR@/go idle || cluster_end
if ! wait_step job 3 60 || ! migrate job b; then
  fail "job: could not move it to b (migctl: ${MIG_RC-not run} $(cat "${MIG_ERR-/dev/null}" 2>/dev/null | tr '\n' ' '))"
  kill_job job
  cluster_end
fi

sd_gone() { ! kill -0 "${SD[b]}" 2>/dev/null; }
kill -TERM "${SD[b]}"
if wait_until 60 sd_gone && grep -q "maintenance: PID ${PID[job]} of a (.*) moved to a, frozen" "$T/shadowd-b.log" &&
   grep -q "stopping: all 1 job(s) that migrated in have left" "$T/shadowd-b.log" &&
   [[ $(host_of "$(where job)") == a ]]; then
  ok "SIGTERM to b's shadowd: the job went home to a first, then shadowd exited: $(grep -m1 'maintenance: PID' "$T/shadowd-b.log" | sed 's/^.*shadowd: //')"
else
  fail "SIGTERM to b's shadowd with a job there: shadowd $(sd_gone && echo exited || echo 'still runs'), the job on $(host_of "$(where job)")"
  shadowd_logs b
fi

touch "$(jfile job data)/go"
compare job ref 0

# b again, a second job there, and nowhere for it to go.
mv "$T/shadowd-b.log" "$T/shadowd-b.first.log"
start_shadowd b "$T/key"
if ! wait_until 20 shadowd_ready b; then
  fail "b's shadowd did not start again"
  shadowd_logs b
  kill_job job
  cluster_end
fi
start_job job2 mig "$CPU_JOB" @DIR@/go2 idle || cluster_end
if ! wait_step job2 3 60 || ! migrate job2 b; then
  fail "job2: could not move it to b (migctl: ${MIG_RC-not run} $(cat "${MIG_ERR-/dev/null}" 2>/dev/null | tr '\n' ' '))"
  kill_job job
  kill_job job2
  cluster_end
fi
hm a drain >"$T/drain.out" 2>&1
kill -TERM "${SD[b]}"
could_not() { grep -q "stopping: 0 job(s) left; 1 could not move, still here: PID ${PID[job2]} of a (.*): no other host accepts it" "$T/shadowd-b.log"; }
if wait_until 90 could_not && grep -q "not stopping yet: 1 job(s)" "$T/shadowd-b.log" && ! sd_gone; then
  ok "SIGTERM to b's shadowd with a drained: it says which job could not move and stays for it: $(grep -m1 'could not move, still here' "$T/shadowd-b.log" | sed 's/^.*shadowd: //')"
else
  fail "SIGTERM to b's shadowd, nowhere to go: shadowd $(sd_gone && echo exited || echo 'still runs'), no line saying it stays for the job"
  shadowd_logs b
fi
touch "$(jfile job2 data)/go2"
compare job2 ref 0  # cpu_job prints the same whatever its GO file is called
if wait_until 30 sd_gone; then
  ok "b's shadowd exited by itself once the job it stayed for had ended"
else
  fail "b's shadowd still runs after the job it stayed for ended"
  shadowd_logs b
fi
hm a undrain >/dev/null 2>&1
kill_job job
kill_job job2
cluster_end
