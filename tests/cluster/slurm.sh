#!/bin/bash
# slurm.sh: Debian's Slurm on the simulated hosts (examples/slurm/README.md). Hosts a,
# b, c with mig's shadowd; munged on each (one key), slurmctld on a, slurmd on each;
# job completions in a text file (JobCompType=jobcomp/filetxt, read by `sacct -c`: no
# database needed). Slurm calls the hosts node1, node2, node3 (NodeName), mig a, b, c:
# the policy file's [node_aliases] maps Slurm's names to mig's. A batch job (`sbatch -w
# node2`) runs the CPU job under mig on b, to end with exit status 3; a trigger
# (examples/slurm/drain_trigger.sh, `strigger --reconfig`, which fires on a node state
# update; `--drained` would fire only once the node has no job left) is set on a. Once
# the job is past STEP 3, `scontrol update nodename=node2 state=drain`: Slurm runs the
# trigger, which runs `migctl drain --all node2`, and the job moves live from b to a or
# c while its deputy stays under b's slurmstepd. Let go, it finishes; its output file is
# exactly the undisturbed run's, its error file empty, and sacct shows it FAILED with
# exactly its exit code 3:0 on node2, the node it started on. Skipped (77) with the
# reason where Slurm's programs are missing or its daemons cannot start.
#
# usage: slurm.sh CPU_JOB TRIGGER OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-slurm' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
TRIGGER=$(realpath "$2")
shift 2
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
for p in munged slurmctld slurmd sbatch scontrol strigger sacct; do
  if ! command -v "$p" >/dev/null && [[ ! -x /usr/sbin/$p ]]; then
    echo "SKIP: Slurm is not installed here ($p missing: apt-get install slurmctld slurmd slurm-client munge)"
    exit 77
  fi
done
# Slurm's names for the hosts, which every shadowd knows as other names for mig's.
declare -A SLURM_NAME=([a]=node1 [b]=node2 [c]=node3)
CLUSTER_POLICY='# slurm.sh: the Slurm node names (NodeName) of the hosts a, b, c.
[node_aliases]
node1 = "a"
node2 = "b"
node3 = "c"'
MUNGED=$(command -v munged || echo /usr/sbin/munged)
SLURMCTLD=$(command -v slurmctld || echo /usr/sbin/slurmctld)
SLURMD=$(command -v slurmd || echo /usr/sbin/slurmd)
cluster_up a b c

# --- Slurm on the hosts (everything under each host's private /tmp, config in T) ---------
export SLURM_CONF=$T/slurm.conf
head -c 1024 /dev/urandom >"$T/munge.key"
chmod 400 "$T/munge.key"
cat >"$SLURM_CONF" <<CONF
# slurm.sh: a 3-node cluster on simulated hosts; root runs everything.
ClusterName=mig
SlurmctldHost=a(${ADDR[a]})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=/tmp/munge/munge.socket
CredType=cred/munge
StateSaveLocation=/tmp/slurm/state
SlurmdSpoolDir=/tmp/slurm/spool
SlurmctldPidFile=/tmp/slurm/slurmctld.pid
SlurmdPidFile=/tmp/slurm/slurmd.pid
SlurmctldLogFile=/tmp/slurm/slurmctld.log
SlurmdLogFile=/tmp/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/tmp/slurm/jobcomp.txt
SchedulerType=sched/builtin
SelectType=select/linear
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=node1 NodeHostname=a NodeAddr=${ADDR[a]} CPUs=1 State=UNKNOWN
NodeName=node2 NodeHostname=b NodeAddr=${ADDR[b]} CPUs=1 State=UNKNOWN
NodeName=node3 NodeHostname=c NodeAddr=${ADDR[c]} CPUs=1 State=UNKNOWN
PartitionName=all Nodes=node1,node2,node3 Default=YES MaxTime=INFINITE State=UP
CONF
# The simulated hosts have a sysfs of their own with no cgroup file system: slurmd's
# default (autodetect) gives up; the v1 plugin starts without one, and nothing here uses
# cgroups (proctrack/linuxproc, task/none).
printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\n' >"$T/cgroup.conf"
skip_slurm() {  # the reason Slurm cannot run here: a skip, not a failure of mig
  echo "SKIP: $*"
  exit 77
}
for h in a b c; do
  hx "$h" mkdir -p /tmp/munge /tmp/slurm/state /tmp/slurm/spool
  hx "$h" chmod 700 /tmp/munge
  mh spawn "$C" "$h" "$T/munged-$h.log" -- "$MUNGED" --foreground --force --key-file "$T/munge.key" \
    --socket /tmp/munge/munge.socket --pid-file /tmp/munge/munged.pid --log-file /tmp/munge/munged.log \
    --seed-file /tmp/munge/munged.seed >/dev/null
done
for h in a b c; do
  wait_until 20 test -S "$(hp "$h" /tmp/munge/munge.socket)" ||
    skip_slurm "munged did not start on $h: $(tail -n 3 "$T/munged-$h.log" "$(hp "$h" /tmp/munge/munged.log)" 2>/dev/null | tr '\n' ' ')"
done
mh spawn "$C" a "$T/slurmctld.out" -- env SLURM_CONF="$SLURM_CONF" "$SLURMCTLD" -D -i >/dev/null
for h in a b c; do
  mh spawn "$C" "$h" "$T/slurmd-$h.out" -- env SLURM_CONF="$SLURM_CONF" "$SLURMD" -D -N "${SLURM_NAME[$h]}" >/dev/null
done
nodes_idle() { [[ $(hx a env SLURM_CONF="$SLURM_CONF" sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 == "idle"' | wc -l) == 3 ]]; }
if ! wait_until 60 nodes_idle; then
  echo "# sinfo: $(hx a env SLURM_CONF="$SLURM_CONF" sinfo -h -N -o '%N %t' 2>&1 | tr '\n' ' ')"
  skip_slurm "Slurm's daemons did not bring up nodes node1 node2 node3 within 60 s here (slurmctld: $(tail -n 2 "$(hp a /tmp/slurm/slurmctld.log)" 2>/dev/null | tr '\n' ' '))"
fi
ok "Slurm up: slurmctld on a, slurmd on a b c as Slurm's node1 node2 node3, all idle"

# The trigger, as an operator sets it: on a, for any node that gets drained.
cat >"$T/trigger.sh" <<SH
#!/bin/bash
export SLURM_CONF=$SLURM_CONF MIGCTL=$MIGCTL MIG_DRAIN_LOG=$T/trigger.log PATH=\$PATH:/usr/bin
exec "$TRIGGER" "\$@"
SH
chmod 755 "$T/trigger.sh"
if ! hx a env SLURM_CONF="$SLURM_CONF" strigger --set --reconfig --flags=PERM --program="$T/trigger.sh" >"$T/strigger.out" 2>&1; then
  fail "strigger --set: $(cat "$T/strigger.out")"
  cluster_end
fi

# --- the job ---------------------------------------------------------------------------
undisturbed_cpu_job idle
# Its files in T (every host sees it): the GO file and Slurm's output file.
mkdir -p "$T/job"
chmod 777 "$T/job"
cat >"$T/job/batch.sh" <<SH
#!/bin/bash
exec "$MIGCTL" run -- "$CPU_JOB" "$T/job/go" idle 3
SH
chmod 755 "$T/job/batch.sh"
if ! hx a env SLURM_CONF="$SLURM_CONF" sbatch -w node2 -o "$T/job/out" -e "$T/job/err" --parsable "$T/job/batch.sh" >"$T/sbatch.out" 2>&1; then
  fail "sbatch: $(cat "$T/sbatch.out")"
  cluster_end
fi
JOBID=$(tr -d '\n' <"$T/sbatch.out")
step3() { grep -qx "STEP 3" "$T/job/out" 2>/dev/null; }
if ! wait_until 60 step3; then
  fail "Slurm job $JOBID: no STEP 3 in its output within 60 s"
  detail "$T/job/err" "its stderr"
  detail "$(hp b /tmp/slurm/slurmd.log)" "slurmd log of b"
  cluster_end
fi
JOBPID=$(hx b pgrep -f "^[^ ]*cpu_job $T/job/go" | head -n 1)  # (not its link process)
ok "Slurm job $JOBID runs on node2 (mig's b) under mig (PID $JOBPID there), past STEP 3"

# --- drain node2 (b) through Slurm -------------------------------------------------------
hx a env SLURM_CONF="$SLURM_CONF" scontrol update nodename=node2 state=drain reason=maintenance
gone_from_b() { grep -qE "^PID $JOBPID of b \(.*\): moved to [ac], frozen" "$T/trigger.log" 2>/dev/null; }
# Where b's shadowd (the job's home) says it runs.
job_at() { hm b list 2>/dev/null | awk -v p="$JOBPID" '$1 == p { print $3; exit }'; }
if wait_until 90 gone_from_b && [[ $(host_of "$(job_at)") == [ac] ]]; then
  ok "scontrol drain node2: Slurm's trigger ran migctl drain --all node2 (b), the job runs on $(host_of "$(job_at)") now: $(grep -m1 "^PID $JOBPID" "$T/trigger.log")"
else
  fail "no live move of the job off b within 90 s of the Slurm drain of node2"
  detail "$T/trigger.log" "the trigger's log"
  detail "$(hp a /tmp/slurm/slurmctld.log)" "slurmctld log"
  shadowd_logs b
fi
touch "$T/job/go"
done_in_slurm() { hx a env SLURM_CONF="$SLURM_CONF" sacct -c -n -X -j "$JOBID" -o JobID,State,ExitCode,NodeList -P 2>/dev/null | grep -q "^$JOBID|"; }
if wait_until 90 done_in_slurm; then
  line=$(hx a env SLURM_CONF="$SLURM_CONF" sacct -c -n -X -j "$JOBID" -o JobID,State,ExitCode,NodeList -P | grep "^$JOBID|" | head -n 1)
  if [[ $line == "$JOBID|FAILED|3:0|node2" ]]; then
    ok "sacct -c: $line (the job, moved off node2, ended there in Slurm's accounting with its own exit code 3)"
  else
    fail "sacct -c: '$line', not FAILED with exit code 3:0 on node2 (where it started)"
  fi
else
  fail "Slurm job $JOBID did not complete within 90 s of its GO file"
  detail "$(hp a /tmp/slurm/jobcomp.txt)" "jobcomp"
fi
if cmp -s "$(jfile ref out)" "$T/job/out" && [[ ! -s $T/job/err ]]; then
  ok "its output file is exactly the undisturbed run's ($(wc -l <"$T/job/out") lines), its error file empty"
else
  fail "its output differs from the undisturbed run's, or it wrote errors"
  diff "$(jfile ref out)" "$T/job/out" | head -n 10 | sed 's/^/#     /'
  detail "$T/job/err" "its error file"
fi
hx a env SLURM_CONF="$SLURM_CONF" scontrol update nodename=node2 state=resume >/dev/null 2>&1
cluster_end
