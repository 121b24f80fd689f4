# Sourced by the shell tests of migctl and of the feature programs (tests/features/*_test.sh;
# the cluster tests have lib/report.sh): one "ok - ..." / "FAIL - ..." line per check
# with the files that explain a FAIL under it, the one bounded wait they poll with,
# and a temporary directory removed at exit once every process the test started is
# killed, so that nothing a test started outlives it.
#
#   check_setup NAME       $dir: a new /tmp/mig-NAME-XXXXXX. At exit every PID in $pids
#                          is killed, check_at_exit runs when the test defines it, and
#                          $dir is removed.
#   ok WHAT                a check passed
#   bad WHAT [FILE...]     a check failed ($fails counts them); under it each FILE, its
#                          last $bad_lines lines when the test sets bad_lines
#   wait_for WHAT CMD...   polls CMD (a state, not a time) every 20 ms for at most 60 s;
#                          1 and a "timed out" line when it never held
fails=0
pids=()
check_setup() {
  dir=$(mktemp -d "/tmp/mig-$1-XXXXXX") || { echo "FAIL - cannot make a temporary directory"; exit 1; }
  trap check_cleanup EXIT
}
check_cleanup() {
  kill -9 "${pids[@]}" 2>/dev/null
  if declare -F check_at_exit > /dev/null; then check_at_exit; fi
  rm -rf "$dir"
}
ok() { echo "ok - $*"; }
bad() {
  echo "FAIL - $1"
  shift
  local f
  for f in "$@"; do
    echo "  --- $f"
    if [[ -n ${bad_lines:-} ]]; then
      sed 's/^/    /' "$f" 2>/dev/null | tail -n "$bad_lines"
    else
      sed 's/^/    /' "$f" 2>/dev/null
    fi
  done
  fails=$((fails + 1))
}
wait_for() {
  local what=$1
  shift
  for _ in $(seq 1 3000); do "$@" && return 0; sleep 0.02; done
  echo "timed out waiting for $what"
  return 1
}
