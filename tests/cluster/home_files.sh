#!/bin/bash
# home_files.sh: a job's files stay at home. rwjob (jobs/rwjob.c): printf to a
# redirected file, fgets + fseek/ftell on a file, syscall(SYS_write) appends, a file
# opened after the migration: contents exact after a -> b, as an undisturbed run's
# without mig; getpid/getppid unchanged; its files only in a's private directory. A
# python3 job (jobs/child_lock.py) holding an fcntl lock on a home file, moved a -> b,
# forks a child there: the job's lock keeps the child out, the child's open and close of
# the file drop nothing, the child's own lock is held at home (a process on a finds both
# held), and the child's end drops its lock, not the
# job's; so does the reaping of a second child killed by SIGKILL holding one.
#
# usage: home_files.sh OPTIONS (below); meson runs it as test 'migration-home-files'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG RWJOB
cluster_up a b c

RW_STEPS=60
make_input() {  # make_input NAME: rwjob's input.txt in the job's data dir
  local i
  for (( i = 1; i <= RW_STEPS; i++ )); do
    printf 'input line %03d: %s\n' "$i" "$(printf '%*s' $(( (i * 7) % 40 )) '' | tr ' ' "${i: -1}")"
  done >"$(jfile "$1" data/input.txt)"
}
mkdir -p "$(jfile rwjob-ref data)" && make_input rwjob-ref
refs=()  # the undisturbed run goes beside the migrated one
start_job rwjob-ref plain "$RWJOB" @DIR@ "$RW_STEPS" && refs+=(rwjob-ref)

# --- home files through printf, fgets/fseek/ftell, syscall(SYS_write) ----------------------------
mkdir -p "$(jfile rwjob data)" && make_input rwjob
if start_job rwjob mig "$RWJOB" @DIR@ "$RW_STEPS"; then
  hop rwjob a b
  wait_refs "${refs[@]}"
  compare rwjob rwjob-ref 0 nostderr
  bad=""
  for x in append.log late.txt; do
    cmp -s "$(jfile rwjob-ref "data/$x")" "$(jfile rwjob "data/$x")" || bad+=" $x differs from the undisturbed run's;"
  done
  cmp -s <(seq -f 'append %g' "$RW_STEPS") "$(jfile rwjob data/append.log)" ||
    bad+=" append.log is not 'append 1'..'append $RW_STEPS' once each;"
  cmp -s <(seq -f 'late %g' "$RW_STEPS") "$(jfile rwjob data/late.txt)" ||
    bad+=" late.txt is not 'late 1'..'late $RW_STEPS' once each;"
  if [[ -z $bad ]]; then
    ok "rwjob: append.log (syscall(SYS_write)) and late.txt (opened at every step) exact, nothing lost or repeated"
  else
    fail "rwjob:$bad"
    for x in append.log late.txt; do detail "$(jfile rwjob "data/$x")" "$x"; done
  fi
  want_ids=$(printf 'pid %s ppid %s\n' "${PID[rwjob]}" "${SHELL_PID[rwjob]}")
  if [[ $(cat "$(jfile rwjob err)") == "$want_ids"$'\n'"$want_ids" ]]; then
    ok "rwjob: getpid() ${PID[rwjob]} and getppid() ${SHELL_PID[rwjob]} (its shell on a) the same before and after the migration"
  else
    fail "rwjob: getpid()/getppid() not the job's PID ${PID[rwjob]} and its shell's ${SHELL_PID[rwjob]} at both ends"
    detail "$(jfile rwjob err)" "its stderr"
  fi
  only_on_a rwjob out err data/input.txt data/append.log data/late.txt
fi

# --- fcntl locks of a child born away are its own at home ---------------------------------------
# lock_at_a FILE START: "held" when a process on a cannot take a write lock on bytes
# START..START+9 of FILE (someone holds one there), "free" when it can.
lock_at_a() {
  hx a /usr/bin/python3 -c 'import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, int(sys.argv[2]))
    print("free")
except OSError:
    print("held")' "$1" "$2"
}
CHILD_LOCK_JOB=$(readlink -f "$(dirname "$0")/jobs/child_lock.py")
LOCKED=$(jdir lock)/data/locked.dat
if start_job lock mig /usr/bin/python3 "$CHILD_LOCK_JOB" @DIR@ && hop lock a b; then
  touch "$(jfile lock data/go)"
  if wait_until 30 grep -qx 'child locked' "$(jfile lock out)"; then
    child=$(lock_at_a "$LOCKED" 0) job=$(lock_at_a "$LOCKED" 20)
    if grep -qx "child kept out of the job's bytes" "$(jfile lock out)" && [[ $child == held && $job == held ]]; then
      ok "lock: a child forked on b is kept out of the job's fcntl lock (bytes 20-29), opens and closes the file itself, and its own lock (bytes 0-9) is held at home: a process on a finds both held"
    else
      fail "lock: the child forked on b: '$(grep -m1 "^child [tk]" "$(jfile lock out)")' (want kept out); on a its bytes 0-9 '$child', the job's 20-29 '$job' (want held, held)"
    fi
    touch "$(jfile lock data/release)"
    if wait_until 30 grep -qx 'child status 0' "$(jfile lock out)"; then
      child=$(lock_at_a "$LOCKED" 0) job=$(lock_at_a "$LOCKED" 20)
      if [[ $child == free && $job == held ]]; then
        ok "lock: the child ended holding its lock: on a its bytes are free, the job's still held"
      else
        fail "lock: after the child ended holding its lock: on a its bytes 0-9 '$child' (want free), the job's 20-29 '$job' (want held)"
      fi
    else
      fail "lock: no 'child status 0' from the job within 30 s"
    fi
    if wait_until 30 grep -qx 'killed child locked' "$(jfile lock out)"; then
      held=$(lock_at_a "$LOCKED" 40)
      touch "$(jfile lock data/kill)"
      if wait_until 30 grep -qx 'killed child status -9' "$(jfile lock out)" && [[ $held == held ]] &&
         [[ $(lock_at_a "$LOCKED" 40) == free && $(lock_at_a "$LOCKED" 20) == held ]]; then
        ok "lock: a second child, killed by SIGKILL holding its lock: on a its bytes held, then free once the job reaped it, the job's still held"
      else
        fail "lock: the second child's bytes 40-49 on a: '$held' while it ran (want held), '$(lock_at_a "$LOCKED" 40)' once killed and reaped (want free); the job's '$(lock_at_a "$LOCKED" 20)' (want held)"
      fi
    else
      fail "lock: no 'killed child locked' from the job's second child within 30 s"
    fi
    touch "$(jfile lock data/end)"
    if wait_job lock 30 && [[ $STATUS == 0 ]] && grep -qx done "$(jfile lock out)"; then
      ok "lock: the job ended with status 0"
    else
      fail "lock: status $STATUS (want 0)"
      detail "$(jfile lock out)" "its stdout"
      detail "$(jfile lock err)" "its stderr"
    fi
  else
    fail "lock: no 'child locked' from the job's child within 30 s"
    detail "$(jfile lock out)" "its stdout"
    detail "$(jfile lock err)" "its stderr"
    shadowd_logs a b
  fi
  touch "$(jfile lock data/release)" "$(jfile lock data/kill)" "$(jfile lock data/end)"
fi
kill_job lock

cluster_end
