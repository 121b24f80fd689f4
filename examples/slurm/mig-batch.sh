#!/bin/bash
# A Slurm batch script that runs its command under mig, so that the job can move
# live to another node while Slurm keeps it (and its exit status) where it started:
#   sbatch examples/slurm/mig-batch.sh PROGRAM [ARG]...
# The node's shadowd must be running (see README.md). MIG_LIBMIG: where libmig.so is
# (default: the one `meson install` puts under /usr/local).
#SBATCH --job-name=mig-job
libmig=${MIG_LIBMIG:-/usr/local/lib/x86_64-linux-gnu/libmig.so}
if [[ ! -e $libmig ]]; then
  echo "mig-batch.sh: $libmig not found; install mig on this node or set MIG_LIBMIG" >&2
  exit 127
fi
# exec: the job is Slurm's batch step itself, so its exit status is the job's.
LD_PRELOAD=$libmig exec "$@"
