#!/bin/bash
# home_files.sh: a job's files stay at home. rwjob (jobs/rwjob.c): printf to a
# redirected file, fgets + fseek/ftell on a file, syscall(SYS_write) appends, a file
# opened after the migration: contents exact after a -> b, as an undisturbed run's
# without mig; getpid/getppid unchanged; its files only in a's private directory.
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

cluster_end
