#!/bin/bash
# slurm.sh: a Slurm batch job under mig moves live when Slurm drains its node
# (examples/slurm). Debian's Slurm runs for real on the simulated hosts: munged (one,
# the machine's, its socket shared), slurmctld on a, one slurmd on a and one on b, each
# with examples/slurm/mig-health-check as its HealthCheckProgram. A python3 batch job
# submitted to a through examples/slurm/mig-batch.sh prints STEP 1..3, then
# `scontrol update nodename=a state=drain` makes a's health check run `migctl drain
# --all`: the job moves to b while Slurm still lists it RUNNING on a (its deputy holds
# its PID there). Then it finishes: its output equals an undisturbed run's, Slurm
# records its own exit status 3 (scontrol and the jobcomp/filetxt completion log) on
# node a, and `scontrol update state=resume` undrains mig's side too.
# Skipped (77) with the reason where Slurm is not installed or cannot start.
#
# usage: slurm.sh EXAMPLES_DIR JOB_PY OPTIONS (lib/cluster_lib.sh); meson runs it as
# test 'migration-slurm' (suite cluster) with every path filled in.
EXAMPLES=$(realpath "$1")
JOB_PY=$(realpath "$2")
shift 2
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
for p in slurmctld slurmd munged mungekey sbatch scontrol sinfo; do
  command -v "$p" >/dev/null || { echo "SKIP: $p is not installed (apt-get install slurmd slurmctld slurm-client munge)"; exit 77; }
done
PY=/usr/bin/python3
cluster_up a b

# --- munge and Slurm --------------------------------------------------------------------
S=$T/slurm
mkdir -p "$S/ctld" "$S/slurmd-a" "$S/slurmd-b"
mungekey --create --keyfile="$S/munge.key" --force >/dev/null 2>&1 && chmod 600 "$S/munge.key"
munged --foreground --force --socket="$S/munge.sock" --key-file="$S/munge.key" \
  --pid-file="$S/munged.pid" --log-file="$S/munged.log" --seed-file="$S/munge.seed" &
bg_pids+=($!)
wait_until 10 test -S "$S/munge.sock" || { echo "SKIP: munged did not start: $(tail -n 3 "$S/munged.log" 2>/dev/null | tr '\n' ' ')"; exit 77; }
# The health check's environment: slurmd's, which mig-hosts spawn gives these.
cat >"$S/health-check" <<EOS
#!/bin/bash
export SLURM_CONF=$S/slurm.conf MIGCTL=$MIGCTL MIG_HEALTH_STATE=$S/health-\$(hostname -s) MIG_HEALTH_LOG=$S/health.log
exec "$EXAMPLES/mig-health-check"
EOS
chmod +x "$S/health-check"
cat >"$S/slurm.conf" <<EOS
ClusterName=mig
SlurmctldHost=a(${ADDR[a]})
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/slurmd-%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/linear
JobCompType=jobcomp/filetxt
JobCompLoc=$S/jobcomp.txt
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
HealthCheckProgram=$S/health-check
HealthCheckInterval=2
HealthCheckNodeState=ANY
NodeName=a NodeAddr=${ADDR[a]} CPUs=1 State=UNKNOWN
NodeName=b NodeAddr=${ADDR[b]} CPUs=1 State=UNKNOWN
PartitionName=main Nodes=a,b Default=YES MaxTime=INFINITE State=UP
EOS
echo "CgroupPlugin=cgroup/v1" >"$S/cgroup.conf"
sl() { local h=$1; shift; timeout -k 5 60 "$HOSTS" exec "$C" "$h" -- env SLURM_CONF="$S/slurm.conf" "$@"; }
# A simulated host has a fresh /sys without cgroup mounts; slurmd 22.05 sets up its
# cgroup plugin even with proctrack/pgid and task/none, and an empty tmpfs there is
# all it needs (no controller of the machine's is touched).
for h in a b; do hx "$h" mount -t tmpfs slurm-cgroup /sys/fs/cgroup || { echo "SKIP: cannot mount a tmpfs on $h's /sys/fs/cgroup"; exit 77; }; done
mh spawn "$C" a "$S/slurmctld.out" -- env SLURM_CONF="$S/slurm.conf" slurmctld -D -f "$S/slurm.conf" >/dev/null
for h in a b; do mh spawn "$C" "$h" "$S/slurmd-$h.out" -- env SLURM_CONF="$S/slurm.conf" slurmd -D -N "$h" -f "$S/slurm.conf" >/dev/null; done
both_idle() { [[ $(sl a sinfo -h -o '%n %t' 2>/dev/null | sort | tr '\n' ' ') == "a idle b idle " ]]; }
if ! wait_until 60 both_idle; then
  echo "SKIP: Slurm did not start here (sinfo: $(sl a sinfo -h -o '%n %t' 2>&1 | tr '\n' ' ')); logs:"
  tail -n 5 "$S/slurmctld.out" "$S/slurmd-a.out" "$S/slurmd-b.out" 2>/dev/null | sed 's/^/#   /'
  exit 77
fi
ok "Slurm up: slurmctld on a, slurmd on a and b, both idle"

# --- the undisturbed run -------------------------------------------------------------------
R=/tmp/mig-host-a/ref
hx a mkdir -p "$R" && hx a touch "$R/go"
hx a bash -c "cd $R && $PY $JOB_PY $R/go >out 2>err; echo \$? >status"
[[ $(cat "$(hp a "$R/status")") == 3 ]] && grep -q '^done$' "$(hp a "$R/out")" ||
  fail "the undisturbed run: status $(cat "$(hp a "$R/status")"), output $(tail -n 1 "$(hp a "$R/out")")"

# --- the batch job, under mig, on a ---------------------------------------------------------
W=/tmp/mig-host-a/slurmjob
hx a mkdir -p "$W"
if ! sl a sbatch --parsable -w a -D "$W" -o "$W/out" -e "$W/err" --export=ALL,MIG_LIBMIG="$LIBMIG" \
    "$EXAMPLES/mig-batch.sh" "$PY" "$JOB_PY" "$W/go" >"$T/sbatch.out" 2>&1; then
  fail "sbatch: $(cat "$T/sbatch.out")"
  detail "$S/slurmctld.log" "slurmctld log"
  cluster_end
fi
JOB=$(tr -d '[:space:]' <"$T/sbatch.out")
out=$(hp a "$W/out")
job_field() { sl a scontrol show job -o "$JOB" 2>/dev/null | grep -o "$1=[^ ]*" | head -n 1 | cut -d= -f2; }
step3() { grep -qx 'STEP 3' "$out" 2>/dev/null; }
if wait_until 60 step3 && [[ $(job_field JobState) == RUNNING && $(job_field NodeList) == a ]]; then
  ok "batch job $JOB runs on a under mig (STEP 3 printed)"
else
  fail "batch job $JOB did not reach STEP 3 on a (state $(job_field JobState), node $(job_field NodeList))"
  detail "$(hp a "$W/err")" "its stderr"
  detail "$S/slurmd-a.log" "slurmd log of a"
  cluster_end
fi
# The job's PID at home: the row of `migctl list` on a for the python3 it runs.
pid=$(hm a list | awk '/python3/ { print $1; exit }')
[[ -n $pid ]] || { fail "migctl list on a shows no python3 job"; detail "$T/shadowd-a.log" "shadowd log of a"; cluster_end; }

# --- Slurm drains a: the health check moves the job to b -------------------------------
sl a scontrol update nodename=a state=drain reason="mig test: maintenance"
moved() { [[ $(hm a list | awk -v p="$pid" '$1 == p { print $3 }') == "${ADDR[b]}:$PORT" ]]; }
if wait_until 60 moved; then
  ok "drained in Slurm: a's health check moved the job to b ($(grep -m1 'moved to' "$S/health.log" | sed 's/^[0-9-]* [0-9:]* //'))"
else
  fail "the job did not move to b after the drain (migctl list on a: $(hm a list | awk -v p="$pid" '$1 == p'))"
  detail "$S/health.log" "health check log"
  shadowd_logs a b
  cluster_end
fi
if [[ $(job_field JobState) == RUNNING && $(job_field NodeList) == a ]] &&
   [[ $(sl a sinfo -h -n a -o '%t') == drng ]]; then
  ok "Slurm still sees job $JOB RUNNING on a, and a draining"
else
  fail "Slurm's view after the move: job $(job_field JobState) on $(job_field NodeList), node a $(sl a sinfo -h -n a -o '%t')"
fi

# --- it finishes: output, exit status and accounting ------------------------------------
hx a touch "$W/go"
finished() { [[ $(job_field JobState) != RUNNING && $(job_field JobState) != COMPLETING ]]; }
wait_until 90 finished || fail "job $JOB did not finish (state $(job_field JobState))"
if cmp -s "$(hp a "$R/out")" "$out"; then
  ok "its output equals the undisturbed run's ($(wc -l <"$out") lines)"
else
  fail "its output differs from the undisturbed run's"
  diff "$(hp a "$R/out")" "$out" | head -n 10 | sed 's/^/#   /'
fi
if [[ $(job_field ExitCode) == 3:0 && $(job_field JobState) == FAILED ]]; then
  ok "Slurm records the job's own exit status: ExitCode=3:0 (JobState FAILED: non-zero)"
else
  fail "Slurm's record: ExitCode=$(job_field ExitCode), JobState=$(job_field JobState) (want 3:0, FAILED)"
fi
comp=$(grep "JobId=$JOB " "$S/jobcomp.txt" 2>/dev/null)
if [[ $comp == *"ExitCode=3:0"* && $comp == *"NodeList=a "* ]]; then
  ok "the completion log has it on a with ExitCode=3:0"
else
  fail "the completion log: ${comp:-no line for job $JOB}"
fi

# --- Slurm resumes a: mig takes jobs there again --------------------------------------------
sl a scontrol update nodename=a state=resume
undrained() { grep -q "a resumed in Slurm" "$S/health.log" 2>/dev/null; }
if wait_until 30 undrained && [[ $(hm a nodes --json | $PY -c 'import json,sys; print([n["drained"] for n in json.load(sys.stdin)["nodes"] if n["name"] == "a"][0])') == False ]]; then
  ok "resumed in Slurm: the health check undrained a for mig too"
else
  fail "a is not undrained for mig after the resume"
  detail "$S/health.log" "health check log"
fi
cluster_end
