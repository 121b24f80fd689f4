# Sourced by every cluster test (through lib/cluster_lib.sh or lib/loopback_lib.sh):
# one "ok - ..." / "FAIL - ..." line per check, the end of a log under a FAIL as
# "#   " lines, and the one bounded wait everything polls with.
#
#   ok WHAT                       a check passed
#   fail WHAT                     a check failed ($failures counts them)
#   detail FILE [TITLE [LINES]]   the last LINES (15) lines of FILE under a FAIL
#   note TEXT                     a "#   " line
#   wait_until LIMIT_S CMD...     polls CMD (every 50 ms) until it succeeds; 1 on timeout
failures=0
ok() { echo "ok - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
detail() {
  local f=$1 title=${2:-$(basename "$1")} lines=${3:-15}
  if [[ -s $f ]]; then
    echo "#   --- $title:"
    tail -n "$lines" "$f" | tr -d '\r' | sed 's/^/#     /'
  else
    echo "#   --- $title: (empty)"
  fi
}
note() { echo "#   $*"; }
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    (( SECONDS >= end )) && return 1
    sleep 0.05
  done
}
