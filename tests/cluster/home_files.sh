#!/bin/bash
# home_files.sh: a job's files stay at home. rwjob (jobs/rwjob.c): printf to a
# redirected file, fgets + fseek/ftell on a file, syscall(SYS_write) appends, a file
# opened after the migration: contents exact after a -> b, as an undisturbed run's
# without mig; getpid/getppid unchanged; its files only in a's private directory. A
# python3 job (jobs/child_lock.py) moved a -> b forks a child there that takes an fcntl
# lock (lockf) on a home file: a process on a finds the lock held while the child holds
# it and free once it has let go.
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

# --- an fcntl lock taken by a child born away is held at home ------------------------------------
# lock_at_a FILE: "held" when a process on a cannot take a write lock on bytes 0-9 of
# FILE (someone holds one there), "free" when it can.
lock_at_a() {
  hx a /usr/bin/python3 -c 'import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    print("free")
except OSError:
    print("held")' "$1"
}
CHILD_LOCK_JOB=$(readlink -f "$(dirname "$0")/jobs/child_lock.py")
if start_job lock mig /usr/bin/python3 "$CHILD_LOCK_JOB" @DIR@ && hop lock a b; then
  touch "$(jfile lock data/go)"
  if wait_until 30 grep -qx 'child locked' "$(jfile lock out)"; then
    held=$(lock_at_a "$(jdir lock)/data/locked.dat")
    touch "$(jfile lock data/release)"
    if [[ $held == held ]]; then
      ok "lock: the job's child forked on b holds an fcntl lock on a home file, and a process on a finds it held"
    else
      fail "lock: the job's child forked on b holds an fcntl lock on a home file, but a process on a finds it '$held'"
    fi
    if wait_job lock 30 && [[ $STATUS == 0 ]] && grep -qx 'child status 0' "$(jfile lock out)" &&
       [[ $(lock_at_a "$(jdir lock)/data/locked.dat") == free ]]; then
      ok "lock: the child let go of it, the job ended with status 0 and the lock is free on a"
    else
      fail "lock: status $STATUS (want 0), the lock on a '$(lock_at_a "$(jdir lock)/data/locked.dat")' (want free)"
      detail "$(jfile lock out)" "its stdout"
      detail "$(jfile lock err)" "its stderr"
    fi
  else
    fail "lock: no 'child locked' from the job's child within 30 s"
    detail "$(jfile lock out)" "its stdout"
    detail "$(jfile lock err)" "its stderr"
    shadowd_logs a b
    touch "$(jfile lock data/release)"
  fi
fi
kill_job lock

cluster_end
