# Sourced by the loopback tests (loopback_migration_test.sh, clock_migration_test.sh):
# a scratch dir cleaned on exit with every process the test started, the ok/bad
# reporting, a free port, and bounded waits. The caller sets `pids+=($!)` for each
# process it starts and ends with `[ "$fails" -eq 0 ]`.
#
#   source loopback_lib.sh NAME     (the scratch dir is /tmp/mig-NAME.XXXXXX, in $dir)
dir=$(mktemp -d "/tmp/mig-$1.XXXXXX")
pids=()
cleanup() {
  kill -9 "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fails=0
ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; shift; for f in "$@"; do echo "  --- $f"; sed 's/^/    /' "$f" 2>/dev/null | tail -30; done; fails=$((fails + 1)); }

port() {  # a free loopback port
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_line FILE PATTERN: bounded wait (30 s) for a line
wait_line() { for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# kill_restored PATTERN: the processes the shadowds restored (the PIDs their logs,
# $dir/*.log, name) are not among $pids; end those whose command line still matches
# PATTERN (a PID taken since by another process is left alone). For an EXIT trap:
#   trap 'kill_restored "PATTERN"; cleanup' EXIT
kill_restored() {
  local p
  for p in $(sed -n 's/.*runs here as PID \([0-9]*\)$/\1/p' "$dir"/*.log 2>/dev/null); do
    tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -q "$1" && kill -9 "$p" 2>/dev/null
  done
}
# wait_socket PATH: bounded wait (5 s) for a shadowd's local socket
wait_socket() { for _ in $(seq 1 100); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
