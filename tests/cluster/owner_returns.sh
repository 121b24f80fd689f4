#!/bin/bash
# owner_returns.sh: the *owner returns* policy (docs/policies.md). b's shadowd runs with
# a policy file that turns it on (threshold 0.1 CPUs for 2 s, sampled every 0.5 s: the
# machine is shared, a busy loop may get little of it). A CPU-bound job started on a is
# moved to b and computes there; b counts it as mig's, not its owner's, and keeps it
# while it computes (4 s of CPU). Then the test
# starts a busy loop on b that is not under mig (its owner's work): the job leaves b on
# its own for a or c, `migctl nodes` shows b owner-busy, and a migrate to b is refused
# with the reason. The busy loop is killed (by its PID), b takes jobs again, and the
# job finishes with exactly the output of an undisturbed run.
#
# usage: owner_returns.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-owner-returns' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b c

# b's shadowd again, with the policy (the file in T, which every host sees).
cat >"$T/policy.toml" <<'TOML'
# owner_returns.sh: quick to decide, so that the test is short.
[owner_returns]
enabled = true
threshold = 0.1
sustain_seconds = 2
sample_seconds = 0.5

[drain]
time_limit_seconds = 60
TOML
kill -TERM "${SD[b]}"
if ! wait_until 20 eval '! kill -0 "${SD[b]}" 2>/dev/null'; then
  fail "b's first shadowd did not stop on SIGTERM"
  cluster_end
fi
mv "$T/shadowd-b.log" "$T/shadowd-b.first.log"
SHADOWD_ARGS=(--policy "$T/policy.toml")
start_shadowd b "$T/key"
if wait_until 20 shadowd_ready b && grep -q "policy: owner returns: jobs leave when this host's own processes use 0.1 CPUs or more for 2 s" "$T/shadowd-b.log"; then
  ok "shadowd on b started with the policy: $(grep -m1 'policy: ' "$T/shadowd-b.log" | sed 's/^.*shadowd: //')"
else
  fail "shadowd on b with --policy did not come up"
  shadowd_logs b
  cluster_end
fi

mkdir -p "$(jfile ref data)"
touch "$(jfile ref data)/go"
start_job ref plain "$CPU_JOB" @DIR@/go spin || cluster_end
start_job job mig "$CPU_JOB" @DIR@/go spin || cluster_end
if wait_step job 3 30 && migrate job b && [[ $(host_of "$(where job)") == b ]]; then
  ok "job: moved a -> b, where it computes: $(migrated_line)"
else
  fail "job: could not move it to b at STEP 3 (last: STEP $(last_step job); migctl: ${MIG_RC-not run} $(cat "${MIG_ERR-/dev/null}" 2>/dev/null | tr '\n' ' '))"
  shadowd_logs a b
  kill_job job
  cluster_end
fi

# Its own computing is not the owner's: once it has used 4 s of CPU on b (more wall time
# than the 2 s the policy waits, plus a sample), b still takes jobs and keeps it.
job_cpu() { hx b ps -C cpu_job -o times= 2>/dev/null | awk 'NR == 1 { print $1 }'; }
if wait_until 60 eval '(( $(job_cpu || echo 0) >= 4 ))' &&
   [[ $(hm a nodes 2>/dev/null | awk '$1 == "b" { print $3 }') == up && $(host_of "$(where job)") == b ]] &&
   ! grep -q "owner returns: this host's own processes" "$T/shadowd-b.log"; then
  ok "job: computed $(job_cpu) s of CPU on b, and b, counting it as mig's, still takes jobs and keeps it"
else
  fail "job: after $(job_cpu) s of CPU on b: b is $(hm a nodes 2>/dev/null | awk '$1 == "b" { print $3 }'), the job on $(host_of "$(where job)")"
  shadowd_logs b
fi

# The owner's work on b: a busy shell loop, not under mig.
LOAD=$(mh spawn "$C" b "$T/load.log" -- sh -c 'while :; do :; done')
bg_pids+=("$LOAD")
left() { w=$(host_of "$(where job)"); [[ $w == a || $w == c ]]; }
if wait_until 60 left; then
  ok "job: left b on its own once b's owner was busy, now on $w: $(grep -m1 'owner returns: PID' "$T/shadowd-b.log" | sed 's/^.*shadowd: //')"
else
  fail "job: still on b ($(host_of "$(where job)")) 60 s after b's own busy loop started"
  shadowd_logs b
fi
hm a nodes >"$T/nodes.1" 2>&1
if [[ $(awk '$1 == "b" { print $3 }' "$T/nodes.1") == owner-busy ]]; then
  ok "migctl nodes on a shows b owner-busy"
else
  fail "migctl nodes on a does not show b owner-busy"
  detail "$T/nodes.1" "migctl nodes"
fi
migrate job b
if one_line_reason && grep -q ": b's own processes are busy (.* CPUs, owner returns policy): it takes no jobs now$" "$MIG_ERR"; then
  ok "a migrate to b while its owner is busy is refused: $(cat "$MIG_ERR")"
else
  fail "a migrate to b while its owner is busy: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
fi

# The owner is done: b takes jobs again.
kill -KILL "$LOAD"
if wait_until 30 eval '[[ $(hm a nodes 2>/dev/null | awk '"'"'$1 == "b" { print $3 }'"'"') == up ]]'; then
  ok "b's busy loop killed: migctl nodes shows b up again"
else
  fail "b's busy loop killed 30 s ago, b is still not up"
  shadowd_logs b
fi

if ! wait_job ref 120 || ! grep -qx done "$(jfile ref out)"; then
  fail "the undisturbed run did not finish: status $STATUS"
fi
touch "$(jfile job data)/go"
compare job ref 0
kill_job job
cluster_end
