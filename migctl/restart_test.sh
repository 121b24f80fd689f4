#!/bin/bash
# migctl restart as a user meets it: a restarted job finishes as if never stopped,
# twice from one image; and every refusal (corrupt or cut image, changed or missing
# binary, changed open file, foreign CPU) is one clear line, with nothing started.
# Args: MIGCTL LIBMIG REWRITE_TOOL
set -u
migctl=$1 libmig=$2 rewrite=$3
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup restart

# The job: its own copy of a program (so the test can change the binary), reading
# an input file through stdio while it counts.
cp "$(command -v cat)" "$dir/app-cat"
seq 1 20000 > "$dir/input"
# It also holds 200 more fds: a restart reads the fd table in several passes, which
# once ran out of Cap'n Proto's traversal limit for a process with ~150 fds.
cat > "$dir/job.sh" <<JOB
exec 3< "$dir/input"
for k in \$(seq 1 200); do exec {fd}< "$dir/input"; done
for i in \$(seq 1 30); do read -r line <&3; echo "step \$i line \$line"; sleep 0.05; done
echo done
JOB
# checkpoint_job NAME: runs the job under mig, stops it with an image at step 5.
checkpoint_job() {
  # Through a pipe, as a terminal would be: a restart reconnects it to its own stdout.
  # The reading cat is this script's child, not the job's: a checkpoint takes the job's
  # children too, and a cat without libmig.so among them would refuse it.
  exec 4> >(cat > "$dir/$1.out")
  LD_PRELOAD=$libmig bash "$dir/job.sh" >&4 2>&1 4>&- &
  local job=$!
  exec 4>&-
  pids+=($job)
  wait_for "step 5" grep -q 'step 5 ' "$dir/$1.out"
  "$migctl" checkpoint "$job" -o "$dir/$1.img" --stop > "$dir/$1.ckpt" 2>&1 || bad "checkpoint for $1" "$dir/$1.ckpt"
}
expected() { for i in $(seq 1 30); do echo "step $i line $i"; done; echo done; }

refused() {  # refused NAME PATTERN IMAGE [ARGS]: restart must fail with PATTERN, nothing run
  local name=$1 pattern=$2 img=$3; shift 3
  local out rc
  out=$("$migctl" restart "$img" "$@" 2>&1 </dev/null); rc=$?
  if [ $rc -ne 0 ] && [ "$(grep -c . <<<"$out")" -eq 1 ] && grep -qE -- "$pattern" <<<"$out"; then
    ok "$name"
  else bad "$name (exit $rc): $out"; fi
}

checkpoint_job base
size=$(stat -c %s "$dir/base.img")

head -c $((size - 5000)) "$dir/base.img" > "$dir/cut.img"
refused "a truncated image is refused, naming the section" '^migctl: image truncated: section [0-9]+ \(' "$dir/cut.img"
cp "$dir/base.img" "$dir/flip.img"
printf '\x77' | dd of="$dir/flip.img" bs=1 seek=$((size - 3000)) conv=notrunc status=none
refused "a corrupt image is refused, naming the section" 'section [0-9]+ \((sparse-)?pages\).*checksum mismatch' "$dir/flip.img"
refused "a missing image is named" 'cannot open image .*nope.img' "$dir/nope.img"
# Register state this CPU lacks: AMX, or else MPX (gone from recent CPUs), or AVX-512.
flags=$(grep -m1 '^flags' /proc/cpuinfo)
if ! grep -qw amx_tile <<<"$flags"; then xcr0=60000 names='AMX TILECFG, AMX TILEDATA'
elif ! grep -qw mpx <<<"$flags"; then xcr0=18 names='MPX bounds, MPX config'
else xcr0=e0 names='AVX-512 opmask'; fi
"$rewrite" "$dir/base.img" "$dir/foreign.img" --add-xcr0 $xcr0
refused "an image needing CPU features this CPU lacks names them" "$names" "$dir/foreign.img"

# Change the input in place, then put back its bytes and times: same inode, size, mtime.
touch -r "$dir/input" "$dir/input.times"
input_size=$(stat -c %s "$dir/input")
echo "changed" >> "$dir/input"
refused "a changed open file is named, with the way out" "file $dir/input \(fd 3\) changed since the checkpoint; restart with --force" "$dir/base.img"
truncate -s "$input_size" "$dir/input"; touch -r "$dir/input.times" "$dir/input"

cp /bin/bash "$dir/bash"
exec 4> >(cat > "$dir/own.out")
LD_PRELOAD=$libmig "$dir/bash" "$dir/job.sh" >&4 2>&1 4>&- &
job=$!; pids+=($job)
exec 4>&-
wait_for "step 3" grep -q 'step 3 ' "$dir/own.out"
"$migctl" checkpoint "$job" -o "$dir/own.img" --stop > /dev/null 2>&1
echo >> "$dir/bash"
refused "a changed program binary is named" "mapped file $dir/bash changed since the checkpoint" "$dir/own.img"
rm "$dir/bash"
refused "a missing program binary is named" "mapped file $dir/bash is missing" "$dir/own.img"

if [ "${MIG_RESTORE_READY:-1}" = 1 ]; then
  for n in 1 2; do
    cp "$dir/base.out" "$dir/again$n.out"
    "$migctl" restart "$dir/base.img" >> "$dir/again$n.out" 2> "$dir/again$n.err" </dev/null; rc=$?
    if [ $rc -eq 0 ] && diff <(expected) "$dir/again$n.out" > "$dir/again$n.diff"; then
      ok "restart $n of one image finishes the job with exactly the undisturbed output"
    else bad "restart $n (exit $rc)" "$dir/again$n.diff" "$dir/again$n.err"; fi
  done
fi

# A restored job checkpointed again carries nothing of the restorer that brought it
# back: its memory map is the same after two restarts as after one (each restart left
# its restorer's pages in the job, and every later image carried all of them). The job
# forks nothing after its start (a tree's members come back differently): it counts.
if [ "${MIG_RESTORE_READY:-1}" = 1 ]; then
  cat > "$dir/cycle.sh" <<'JOB'
for i in $(seq 1 1000); do echo "step $i"; for ((j = 0; j < 3000; j++)); do :; done; done
JOB
  LD_PRELOAD=$libmig bash "$dir/cycle.sh" > "$dir/cycle0.out" 2>&1 &
  job=$!; pids+=($job)
  map_bytes() { "$migctl" image info "$1" | awk '$2 == "memory-map" { print $4; exit }'; }
  maps=()
  last=2
  for n in 0 1 2; do
    # A restart writes on to the same file, from where the checkpoint stopped the job.
    wait_for "step $((last + 3)) in run $n" grep -q "^step $((last + 3))$" "$dir/cycle0.out"
    # One process comes back in migctl restart's own process; where migctl stays (a
    # sanitized build), under its old PID as migctl's child.
    [ $n -gt 0 ] && [ "$(cat "/proc/$restarted/comm" 2>/dev/null)" != migctl ] && job=$restarted
    "$migctl" checkpoint "$job" -o "$dir/cycle$n.img" --stop > "$dir/cycle$n.ckpt" 2>&1 || bad "checkpoint of run $n" "$dir/cycle$n.ckpt"
    maps+=("$(map_bytes "$dir/cycle$n.img")")
    last=$(awk '/^step /{n = $2} END {print n + 0}' "$dir/cycle0.out")
    [ $n = 2 ] && break
    "$migctl" restart "$dir/cycle$n.img" > /dev/null 2> "$dir/cycle$((n + 1)).err" </dev/null &
    restarted=$!; pids+=($restarted)
  done
  if [ -n "${maps[1]}" ] && [ "${maps[1]}" = "${maps[2]}" ]; then
    ok "a job checkpointed after one restart and after two has the same memory map (${maps[1]} bytes; ${maps[0]} before any)"
  else bad "the memory map of a job restarted twice grew: ${maps[*]} bytes" "$dir/cycle1.ckpt" "$dir/cycle2.ckpt"; fi
fi

# An epoll registration of an fd that comes back as a stand-in epoll cannot watch (stdin
# was a FIFO, the restart's is /dev/null) is dropped with one warning; the job goes on.
if [ "${MIG_RESTORE_READY:-1}" = 1 ] && command -v python3 >/dev/null; then
  cat > "$dir/ep.py" <<'PY'
import select, time
ep = select.epoll()
ep.register(0, select.EPOLLIN)
print("step 1", flush=True)
time.sleep(1)
print("events", ep.poll(0), flush=True)
PY
  mkfifo "$dir/fifo"
  exec 4<>"$dir/fifo"
  LD_PRELOAD=$libmig python3 "$dir/ep.py" < "$dir/fifo" > "$dir/ep.out" 2>&1 4>&- &
  job=$!; pids+=($job)
  wait_for "step 1" grep -q 'step 1' "$dir/ep.out"
  "$migctl" checkpoint "$job" -o "$dir/ep.img" --stop > "$dir/ep.ckpt" 2>&1
  exec 4>&-
  # (its stdout is the file ep.out, reopened by the restart)
  "$migctl" restart "$dir/ep.img" 2> "$dir/ep.err" </dev/null; rc=$?
  if [ $rc -eq 0 ] && grep -qx "events \[\]" "$dir/ep.out" && [ "$(grep -c . "$dir/ep.err")" -eq 1 ] &&
     grep -q "epoll fd [0-9]* no longer watches fd 0: here fd 0 is /dev/null, which epoll cannot watch" "$dir/ep.err"; then
    ok "an epoll registration of an fd that came back as /dev/null is dropped with one warning"
  else bad "epoll registration of a stand-in (exit $rc)" "$dir/ep.ckpt" "$dir/ep.out" "$dir/ep.err"; fi
fi

# bash checkpointed alone (--only: its child stays out of the image) while a $(...)
# substitution runs: its read end of the pipe to the
# substitution's child (not in the image) is a stream to another process. The restart
# must never hand it one of migctl's own fds (the image sat at that number: bash read
# MIGIMAGE... as the substitution's output); it reads end of file, with one warning,
# and bash goes on with what it had read.
if [ "${MIG_RESTORE_READY:-1}" = 1 ]; then
  cat > "$dir/subst.sh" <<SUBST
x=\$(echo line; echo \$BASHPID > "$dir/subst.child"; exec sleep 60)
echo "got: \$x"
echo done
SUBST
  # The child writes its PID after the line: once that file is there, bash waits in read.
  # (its stdout is the file subst.out, reopened by the restart)
  LD_PRELOAD=$libmig bash "$dir/subst.sh" > "$dir/subst.out" 2> "$dir/subst1.err" </dev/null \
    3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  job=$!; pids+=($job)
  for _ in $(seq 1 200); do [ -s "$dir/subst.child" ] && break; sleep 0.05; done
  child=$(cat "$dir/subst.child" 2>/dev/null); [ -n "$child" ] && pids+=($child)
  "$migctl" checkpoint --only "$job" -o "$dir/subst.img" --stop > "$dir/subst.ckpt" 2>&1 || bad "checkpoint in \$(...)" "$dir/subst.ckpt"
  wait "$job" 2>/dev/null
  # Only 0, 1 and 2 given to migctl restart: its own first fd (the image) lands at 3,
  # the number of bash's end of the pipe.
  "$migctl" restart "$dir/subst.img" > "$dir/subst.stdout" 2> "$dir/subst.err" </dev/null \
    3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; rc=$?
  image_bytes=$(cat "$dir/subst.out" "$dir/subst.stdout" | grep -c MIGIMAGE)
  head -c 160 "$dir/subst.out" | cat -v > "$dir/subst.head"  # what bash printed, readable
  if [ $rc -eq 0 ] && [ "$image_bytes" -eq 0 ] &&
     diff <(printf 'got: line\ndone\n') "$dir/subst.out" > /dev/null &&
     [ "$(grep -c . "$dir/subst.err")" -eq 1 ] &&
     grep -q "^migctl restart: fd [0-9]* (pipe:\[[0-9]*\]) cannot be restored here; it is /dev/null now" "$dir/subst.err"; then
    ok "bash restarted inside \$(...) reads end of file there (one warning), never migctl's image"
  else bad "restart inside \$(...) (exit $rc, $image_bytes lines with MIGIMAGE)" "$dir/subst.ckpt" "$dir/subst.head" "$dir/subst.err"; fi
fi

[ "$fails" -eq 0 ]
