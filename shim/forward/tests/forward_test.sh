#!/usr/bin/env bash
# Forwarding of system calls through syscall user dispatch, end to end on one host:
# fake_relay plays home (it holds the job's fds 3, 4, 5 and runs in TMP/home),
# forward_app runs under libmig.so in TMP/away with /dev/null placeholders at 3, 4, 5
# and the test hook MIG_FORWARD_TEST_CONFIG turning forwarding on. Everything the app
# did to its home fds and relative paths must show in TMP/home, nothing in TMP/away,
# and its host-local file must be in TMP/local.
#
#   forward_test.sh FORWARD_APP FAKE_RELAY LIBMIG
set -euo pipefail

APP=$(realpath "$1") RELAY=$(realpath "$2") LIBMIG=$(realpath "$3")
T=$(mktemp -d /tmp/mig-forward-test.XXXXXX)
RELAY_PID=
status=1

cleanup() {
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
  if [ "$status" != 0 ]; then
    for f in app.out app.err relay.err control.out unreachable.out; do
      [ -f "$T/$f" ] && { echo "--- $f"; cat "$T/$f"; }
    done
    echo "--- home"; ls -la "$T/home" || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }
has_line() { grep -qxF -- "$1" "$2" || fail "expected line '$1' in $(basename "$2")"; }

mkdir "$T/home" "$T/home/sub" "$T/away" "$T/local"
printf 'first line of in\nsecond line\n' > "$T/home/in.txt"

exec 7< <(exec "$RELAY" "$T/home" "$T/relay.sock" "$T/config.bin" "$T/local" 2> "$T/relay.err" 3>&- 4>&- 5>&-)
RELAY_PID=$!
read -r -t 30 -u 7 ready || fail "fake_relay did not start"
[ "$ready" = READY ] || fail "fake_relay said '$ready'"

# Control run, without the hook: the working directory is the local one, so the
# checks below really tell forwarding from no forwarding.
(cd "$T/away" && LD_PRELOAD="$LIBMIG" "$APP" --cwd 7<&-) > "$T/control.out"
has_line "cwd $T/away" "$T/control.out"

(cd "$T/away" && timeout 120 env MIG_FORWARD_TEST_CONFIG="$T/config.bin" LD_PRELOAD="$LIBMIG" \
   "$APP" "$T" 3>/dev/null 4</dev/null 5>/dev/null 7<&-) > "$T/app.out" 2> "$T/app.err" ||
  fail "forward_app exited with status $?"

kill -TERM "$RELAY_PID"
read -r -t 30 -u 7 stats || fail "fake_relay did not finish"
wait "$RELAY_PID" 2>/dev/null || true
RELAY_PID=

out="$T/app.out"
has_line "DONE" "$out"
# Local things stay local.
has_line "local fd 6" "$out"
has_line "local write 16" "$out"
has_line "local close 0" "$out"
[ "$(cat "$T/local/local.txt")" = "written locally" ] || fail "local file not written locally"
[ ! -e "$T/home/local.txt" ] || fail "local file went home"
# Reads through stdio, with ftell and fseek, came from home.
has_line "in first first line of in" "$out"
has_line "in ftell 17" "$out"
has_line "in second second line" "$out"
has_line "in again first line of in" "$out"
# Metadata and positioning of home fds are home's.
has_line "fstat3 0 ino $(stat -c %i "$T/home/out.txt")" "$out"
has_line "lseek5 -1 errno 29" "$out"  # ESPIPE: at home fd 5 is a pipe
has_line "cwd $T/home" "$out"
# A relative open ran at home, under the next free local number (7; 6 at home).
has_line "created fd 7 cloexec 1" "$out"
has_line "created write 16" "$out"
has_line "created close 0" "$out"
[ "$(cat "$T/home/created.txt")" = "created at home" ] || fail "created.txt not at home"
[ ! -e "$T/away/created.txt" ] || fail "created.txt was created locally"
has_line "stat in.txt 0" "$out"
has_line "open missing -1 errno 2" "$out"
has_line "big fd 7 wrote 3145728 read 3145728 same 1" "$out"
[ "$(stat -c %s "$T/home/big.bin")" = 3145728 ] || fail "big.bin has the wrong size at home"
has_line "dup write 15" "$out"
has_line "dup2 20 write 16" "$out"
has_line "takeover some refused 0 stat failures 0" "$out"
has_line "after takeover fstat 0" "$out"
has_line "dupfd 30 write 19" "$out"
has_line "writev 18" "$out"
has_line "system 3" "$out"
has_line "popen from a child" "$out"
has_line "fork child 7" "$out"
has_line "vfork child 8" "$out"
has_line "chdir sub 0" "$out"
has_line "cwd $T/home/sub" "$out"
has_line "subfile write 7" "$out"
[ "$(cat "$T/home/sub/subfile.txt")" = "in sub" ] || fail "subfile.txt not in home/sub"
# A home file mapped by copy; a system library opened here, and dlopen after the move.
has_line "mmap private 1 written F shared f" "$out"
has_line "mmap shared writable without a lock -1 errno 19" "$out"  # ENODEV
has_line "mmap shared writable 0 lock 0 home has 'from the job' copy before lock 0 after 'from home' after msync 'at msync'" "$out"
has_line "mmap shared read-only of a locked file after a lock 'from home'" "$out"
[ "$(dd if="$T/home/shm.bin" bs=1 skip=8000 count=9 2>/dev/null)" = "at munmap" ] ||
  fail "shm.bin at home lacks what the job wrote into its shared mapping before munmap"
has_line "mmap home pipe -1 errno 19" "$out"
[ "$(head -c 17 "$T/home/in.txt")" = "first line of in" ] || fail "in.txt at home changed"
has_line "system file opened here $(readlink -f /usr/lib/x86_64-linux-gnu/libc.so.6)" "$out"
has_line "dlopen libz 1" "$out"

# The home files hold what the app wrote, in order.
{
  printf 'line 1 via stdio\nline 2 via raw syscall\nline 3 via dup\nline 4 via dup2\n'
  printf 'line 5 via F_DUPFD\nline 6 via writev\nline from the fork child\nline 7 after children\n'
  for i in $(seq 0 199); do echo "main line $i"; done
} > "$T/expected_out.txt"
cmp "$T/expected_out.txt" "$T/home/out.txt" || fail "home out.txt differs"
for i in $(seq 0 199); do echo "pipe line $i"; done > "$T/expected_pipe.txt"
cmp "$T/expected_pipe.txt" "$T/home/pipe_out.txt" || fail "home pipe contents differ"

# Without the relay a forwarded call fails with EIO at once; it never hangs.
(cd "$T/away" && timeout 60 env MIG_FORWARD_TEST_CONFIG="$T/config.bin" LD_PRELOAD="$LIBMIG" \
   "$APP" --unreachable 3>/dev/null 7<&-) > "$T/unreachable.out" 2>&1 || fail "--unreachable run failed"
has_line "unreachable write -1 errno 5" "$T/unreachable.out"

# Each thread had its own connection (and so did each child that forwarded), and
# every connection said hello properly.
read -r _ conns _ requests _ bad <<< "$stats"
[ "$bad" = 0 ] || fail "relay saw $bad bad hellos"
[ "$conns" -ge 3 ] || fail "expected a connection per thread and one for the fork child (3 or more), relay saw $conns"
[ "$requests" -ge 420 ] || fail "relay saw only $requests requests"
[ ! -s "$T/app.err" ] || fail "the app printed on stderr"

status=0
echo "PASS ($stats)"
