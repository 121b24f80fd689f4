#!/bin/bash
# A signal that comes while a checkpoint has the process parked in a lock wait ends the
# wait as it would have without mig (issue 15, shim/park_signals.h). The feature
# program lock_alarm waits twice in F_SETLKW for a lock it holds itself through another
# open file description, each wait ended by one SIGALRM sent by this test:
#  - undisturbed, without mig: sent once it waits (the reference output);
#  - under mig, checkpointed in place (--stop-the-world: frozen while the image is
#    written) in each wait, the SIGALRM sent while it is parked: the first wait (handler
#    without SA_RESTART) must fail with EINTR, not start again after the handler and
#    wait for ever; the second (SA_RESTART, the handler lets go) must go on and take
#    the lock; the output is the reference's;
#  - checkpointed with --stop in the first wait, the SIGALRM sent while parked, and
#    restarted: the signal, pending in the image, ends the restored wait with EINTR
#    (when it came after migctl had read the pending signals, it died with the process:
#    then it is sent again to the restarted one, and the line says so).
# The moment it is parked is told by its main thread blocking SIGUSR2, which the program
# never does and the checkpoint handler does (every signal). Args: MIGCTL LIBMIG PROGRAM
set -u
migctl=$1 libmig=$2 prog=$3
py=/usr/bin/python3
[[ -x $py ]] || { echo "SKIP: needs $py"; exit 77; }
source "$(dirname "$0")/../lib/check.sh"
check_setup lockalarm
bad_lines=40

# start NAME [PRELOAD]: the program in $dir/NAME (its output in $dir/NAME.out, through a
# cat of this script's); its PID in $job.
start() {
  mkdir -p "$dir/$1"
  exec 4> >(cat > "$dir/$1.out")
  if [[ -n ${2-} ]]; then
    LD_PRELOAD=$2 "$prog" "$dir/$1" >&4 2>"$dir/$1.err" 4>&- &
  else
    "$prog" "$dir/$1" >&4 2>"$dir/$1.err" 4>&- &
  fi
  job=$!; pids+=($job)
  exec 4>&-
}

# in_wait PID: its main thread is in fcntl (the lock wait).
in_wait() { local nr; read -r nr _ 2>/dev/null < "/proc/$1/task/$1/syscall" && [[ $nr == 72 ]]; }
# waiting NAME PID N: STEP N printed, then PID waits for the lock.
waiting() { wait_for "STEP $3 of $1" grep -qx "STEP $3" "$dir/$1.out" && wait_for "$1 in F_SETLKW" in_wait "$2"; }

# checkpoint_in_wait NAME PID OPTION: `migctl checkpoint PID OPTION` (PID in its lock
# wait), a SIGALRM sent to PID as soon as the checkpoint has it parked; $when is
# "parked" if it still was after the signal (so the signal came while it was). 1 if the
# checkpoint failed. One python3 starts migctl and watches, so it watches from the start;
# when it saw no park at all (a loaded machine kept it from running during the freeze),
# nothing was sent and the job still waits: checkpointed again, up to 5 times.
checkpoint_in_wait() {
  local try
  for try in 1 2 3 4 5; do
    checkpoint_once "$@" || return 1
    [[ $when == "never parked" ]] || return 0
  done
}
checkpoint_once() {
  when=$("$py" - "$2" "$migctl" checkpoint "$2" -o "$dir/$1.img" "$3" 2>"$dir/$1.ckpt" <<'EOF'
import os, signal, subprocess, sys
pid = int(sys.argv[1])
def parked():
    try:
        with open(f"/proc/{pid}/task/{pid}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return int(line.split()[1], 16) & (1 << (signal.SIGUSR2 - 1)) != 0
    except OSError:
        pass
    return False
ck = subprocess.Popen(sys.argv[2:], stdout=sys.stderr)
while not parked():
    if ck.poll() is not None:
        print("never parked")
        sys.exit(ck.wait())
os.kill(pid, signal.SIGALRM)
print("parked" if parked() else "after the park")
sys.exit(ck.wait())
EOF
) || { bad "$1: migctl checkpoint $3" "$dir/$1.ckpt"; return 1; }
}

# ends NAME PID: PID ends with status 0, its output the reference's.
ends() {
  wait "$2"; local rc=$?
  if [[ $rc -eq 0 ]] && cmp -s "$dir/ref.out" "$dir/$1.out"; then
    ok "$1: $(grep -c . "$dir/$1.out") lines as undisturbed, exit 0"
  else
    bad "$1: exit $rc, output not the reference's" "$dir/$1.out" "$dir/$1.err" "$dir/ref.out"
  fi
}

# --- the reference: a SIGALRM in each wait ------------------------------------------------
start ref
for n in 1 2; do
  waiting ref "$job" "$n" || { bad "the undisturbed run" "$dir/ref.out" "$dir/ref.err"; exit 1; }
  kill -ALRM "$job"
done
wait "$job" || { bad "the undisturbed run failed" "$dir/ref.out" "$dir/ref.err"; exit 1; }

# --- checkpointed in place in each wait ------------------------------------------------------
start inplace "$libmig"
for n in 1 2; do
  if waiting inplace "$job" "$n" && checkpoint_in_wait "inplace$n" "$job" --stop-the-world; then
    case $when in
      parked) ok "inplace: SIGALRM while parked in wait $n" ;;
      # the job went on before it (a loaded machine): the wait ended as without mig
      "after the park") ok "inplace: SIGALRM in wait $n, after the park (not the case tested, this time)" ;;
      *) bad "inplace: no SIGALRM in wait $n ($when)" ;;
    esac
  else
    bad "inplace: wait $n (a wait that started again after the handler never ends)" "$dir/inplace.out" \
      "$dir/inplace.err"
    kill -9 "$job"
    break
  fi
done
ends inplace "$job"

# --- checkpointed with --stop in the first wait, restarted ------------------------------------
start restart "$libmig"
if waiting restart "$job" 1 && checkpoint_in_wait restart "$job" --stop; then
  wait "$job"
  # Its fd 2 is restart.err, which must not change: appended to, as its fd 1.
  "$migctl" restart "$dir/restart.img" >> "$dir/restart.out" 2>>"$dir/restart.err" </dev/null &
  job=$!; pids+=($job)
  # STEP 2 (the SIGALRM in the image ended the wait), or waiting in the first wait still:
  # in_wait first, since STEP 2 is written before the second wait starts.
  first_or_second() {
    in_wait "$job" && ! grep -qx "STEP 2" "$dir/restart.out" || grep -qx "STEP 2" "$dir/restart.out" ||
      [[ ! -e /proc/$job ]]
  }
  wait_for "the restarted process" first_or_second
  if [[ ! -e /proc/$job ]]; then
    :  # it ended: ends says how
  elif grep -qx "STEP 2" "$dir/restart.out"; then
    ok "restart: the SIGALRM sent while parked ($when) ended the restored wait with EINTR"
  else
    ok "restart: the SIGALRM came after migctl read the pending signals ($when): sent again"
    kill -ALRM "$job"
  fi
  if waiting restart "$job" 2; then kill -ALRM "$job"; else kill -9 "$job"; fi
  ends restart "$job"
else
  bad "restart: the checkpoint in wait 1" "$dir/restart.out" "$dir/restart.err"
fi

(( fails == 0 )) || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
