# Sourced by the loopback tests (tests/cluster/loopback_*.sh): a scratch dir cleaned
# on exit with every process the test started, the ok/FAIL reporting of every cluster
# test (lib/report.sh), a free port, bounded waits, and the shadowds on loopback. The
# caller sets `pids+=($!)` for each process it starts and ends with `[ "$failures" -eq 0 ]`.
#
#   source lib/loopback_lib.sh NAME     (the scratch dir is /tmp/mig-NAME.XXXXXX, in $dir)
LOOPBACK_LIB_DIR=$(dirname "${BASH_SOURCE[0]}")
source "$LOOPBACK_LIB_DIR/report.sh"
dir=$(mktemp -d "/tmp/mig-$1.XXXXXX")
pids=()
cleanup() {
  kill -9 "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
# bad WHAT FILE...: a failed check, with the end (30 lines) of each FILE under it.
bad() { fail "$1"; shift; local f; for f in "$@"; do detail "$f" "$f" 30; done; }

port() {  # a free loopback port
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_line FILE PATTERN: bounded wait (30 s) for a line
wait_line() { wait_until 30 grep -q "$2" "$1" 2>/dev/null; }
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
# new_key FILE: a fresh cluster key, owner-only.
new_key() { head -c 32 /dev/urandom > "$1"; chmod 600 "$1"; }
# start_shadowd NAME PORT KEY: "$shadowd" on 127.0.0.1:PORT with its socket in
# $dir/NAME/sock and its log in $dir/NAME.log (environment from the caller, e.g. a
# test hook); it is among $pids. wait_shadowds NAME...: bounded wait (5 s each) for
# their sockets; a FAIL with the log of one that did not come up.
start_shadowd() {
  "$shadowd" --listen "127.0.0.1:$2" --cluster-key "$3" --socket "$dir/$1/sock" --log "$dir/$1.log" &
  pids+=($!)
}
wait_shadowds() {
  local s
  for s in "$@"; do wait_until 5 test -S "$dir/$s/sock" || bad "shadowd $s started" "$dir/$s.log"; done
}
# up_shadowd NAME KEY VAR: as start_shadowd on a port the kernel gave as free, set in
# VAR once shadowd says it listens there. port() closes its socket before shadowd
# binds: a busy machine's other tests may take the number meanwhile, and shadowd then
# ends with "cannot listen on" (in its log): another port, up to 5 tries (10 s each).
up_shadowd() {
  local name=$1 key=$2 try p pid
  for try in 1 2 3 4 5; do
    p=$(port)
    "$shadowd" --listen "127.0.0.1:$p" --cluster-key "$key" --socket "$dir/$name/sock" --log "$dir/$name.log" \
      2>>"$dir/$name.err" &
    pid=$!
    pids+=($pid)
    wait_until 10 grep -q -e "listening on 127.0.0.1:$p," -e "cannot listen on 127.0.0.1:$p:" \
      "$dir/$name.log" "$dir/$name.err" 2>/dev/null
    if grep -q "listening on 127.0.0.1:$p," "$dir/$name.log" 2>/dev/null; then
      printf -v "$3" %s "$p"
      return 0
    fi
    grep -q "cannot listen on 127.0.0.1:$p:" "$dir/$name.log" "$dir/$name.err" 2>/dev/null || break
    kill -9 "$pid" 2>/dev/null
  done
  bad "shadowd $name listening (try $try, port $p)" "$dir/$name.log" "$dir/$name.err"
  return 1
}
# A MIGCTL_ARGS...: migctl talking to shadowd a (bounded: 120 s).
A() { MIG_SHADOWD_SOCKET=$dir/a/sock timeout 120 "$migctl" "$@"; }
