#!/bin/bash
# drain_trigger.sh: Slurm's trigger program for mig (examples/slurm/README.md). strigger
# runs it on the slurmctld host, as SlurmUser, when a node's state is updated; it takes
# the nodes Slurm has in a drain state (`scontrol update nodename=NODE state=drain`:
# draining while jobs run, drained after) and for each, `migctl drain --all`
# moves the jobs running there (batch jobs at home there included) live to the other
# hosts. Their deputies stay on NODE, so Slurm's slurmstepd there still sees its job
# process and gets its exit status when the job ends wherever it runs.
#
# Set once (as SlurmUser; PERM: it stays set after it fired):
#   strigger --set --reconfig --flags=PERM --program=/path/to/drain_trigger.sh
# (Not `--node --drained`: Slurm fires it only once a drained node has no job left, too
# late to move the jobs. Node names given as arguments, as `--drained` or a person
# would, are taken as they are.) The names are Slurm's: where they are not those of
# mig's nodes file, the local shadowd's policy file maps them ([node_aliases]).
# A node drained in mig stays so (it takes no mig jobs) until `migctl undrain NODE`.
# The environment: MIGCTL (default: migctl on PATH), MIG_SHADOWD_SOCKET (the local
# shadowd's socket), MIG_DRAIN_LOG (where each drain's report goes; default: stderr,
# which slurmctld discards).
migctl=${MIGCTL:-migctl}
log=${MIG_DRAIN_LOG:-/dev/stderr}
status=0
# The --reconfig trigger (which Slurm fires when a node's state is updated) passes the
# word "reconfig": then every node Slurm has in a drain state (draining or drained).
if [[ $# == 0 || $1 == reconfig ]]; then
  set -- $(sinfo -h -N -t drain -o %N | sort -u)
fi
for arg in "$@"; do
  # Slurm passes a host list expression (a,b or node[1-3]): scontrol expands it.
  for node in $(scontrol show hostnames "$arg"); do
    {
      echo "mig: Slurm drained $node at $(date -u +%FT%TZ): moving its jobs"
      "$migctl" drain --all "$node"
    } >>"$log" 2>&1 || status=1
  done
done
exit $status
