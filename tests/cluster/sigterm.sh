#!/bin/bash
# sigterm.sh: a plain SIGTERM to shadowd (what `systemctl stop` and `restart` send)
# does not end the jobs whose calls go through it. A counter job is migrated a -> b,
# then b's shadowd gets SIGTERM: it logs that it stays for the job and takes no new
# work (a second job's migration to b is refused with one line), the job goes on
# printing its numbered lines through it and finishes as an undisturbed run does;
# then b's shadowd stops by itself. Started again on b, it takes the second job;
# SIGTERM to a's shadowd, that job's home, leaves it running on b too, it finishes
# exact, and a's shadowd stops by itself. (Before: shadowd exited at once and the
# job died at its next call home.) a is drained first: a stopping shadowd first
# sends its guests to a host that takes them (migration-maintenance), here none, so
# b's stays for the job.
#
# usage: sigterm.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-sigterm' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features counter
cluster_up a b

# Steps of 100 ms. job's checks end about 20 steps after its start (30 on a loaded
# machine), then it only has to end; job2 hops once job has ended and b's shadowd is
# up again (about 25 steps after that), then prints 10 more: 80 and 180 steps leave
# each some 50 steps to spare.
start_job ref plain "${FEATURE[counter]}" 80
start_job ref2 plain "${FEATURE[counter]}" 180
if start_job job mig "${FEATURE[counter]}" 80 && start_job job2 mig "${FEATURE[counter]}" 180 &&
   hop job a b; then
  hm a drain >"$T/drain.out" 2>&1
  kill -TERM "${SD[b]}"
  if wait_until 10 grep -q "not stopping yet: 1 job" "$T/shadowd-b.log"; then
    ok "b's shadowd got SIGTERM: $(grep -m1 'not stopping yet' "$T/shadowd-b.log" | cut -d' ' -f3-)"
  else
    fail "b's shadowd did not say it stays for the job after SIGTERM"
    shadowd_logs b
  fi
  k=$(( $(last_step job) + 10 ))
  if wait_step job "$k" 20 && kill -0 "${SD[b]}" 2>/dev/null; then
    ok "the job on b goes on after SIGTERM to b's shadowd (STEP $k printed at home through it)"
  else
    fail "the job on b did not go on after SIGTERM to b's shadowd (last STEP $(last_step job), shadowd on b $(kill -0 "${SD[b]}" 2>/dev/null && echo runs || echo gone))"
    detail "$(jfile job err)" "its stderr"
  fi
  migrate job2 b
  if one_line_reason && grep -q "is stopping (SIGTERM)" "$MIG_ERR" && job_at_home job2 "${FEATURE[counter]}"; then
    ok "a new job for b is refused while its shadowd stops (exit $MIG_RC): $(cat "$MIG_ERR")"
  else
    fail "migrating job2 to b while its shadowd stops: exit $MIG_RC, not one line saying b is stopping"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
  fi
  wait_job ref 60
  compare job ref "$STATUS"
  if wait_until 20 eval '! kill -0 "${SD[b]}" 2>/dev/null'; then
    ok "b's shadowd stopped by itself once the job had ended"
  else
    fail "b's shadowd still runs 20 s after its last job ended"
    shadowd_logs b
  fi
  mv "$T/shadowd-b.log" "$T/shadowd-b.0.log"
  start_shadowd b "$T/key"
  if wait_until 20 shadowd_ready b && hop job2 a b; then
    # The home side: job2 runs on b, its deputy's link is a's shadowd.
    kill -TERM "${SD[a]}"
    k=$(( $(last_step job2) + 10 ))
    if wait_until 10 grep -q "not stopping yet: 1 job" "$T/shadowd-a.log" && wait_step job2 "$k" 20 &&
       kill -0 "${SD[a]}" 2>/dev/null; then
      ok "SIGTERM to a's shadowd (job2's home) leaves job2 running on b (STEP $k printed at home)"
    else
      fail "after SIGTERM to a's shadowd, job2 did not go on (last STEP $(last_step job2), shadowd on a $(kill -0 "${SD[a]}" 2>/dev/null && echo runs || echo gone))"
      shadowd_logs a
    fi
    wait_job ref2 60
    compare job2 ref2 "$STATUS"
    if wait_until 20 eval '! kill -0 "${SD[a]}" 2>/dev/null'; then
      ok "a's shadowd stopped by itself once job2 had ended"
    else
      fail "a's shadowd still runs 20 s after job2 ended"
      shadowd_logs a
    fi
  else
    fail "b's shadowd, started again, did not take job2"
    shadowd_logs b
  fi
fi
cluster_end
