#!/bin/bash
# migctl checkpoint as a user meets it: success with and without --stop, and each
# error giving one clear line while the process goes on unharmed.
# Args: MIGCTL LIBMIG
set -u
migctl=$1 libmig=$2
dir=$(mktemp -d /tmp/mig-ckpt-XXXXXX)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null; rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; shift; for f in "$@"; do echo "  --- $f"; sed 's/^/    /' "$f" 2>/dev/null; done; fails=$((fails + 1)); }

# A job that counts, printing a line per step, and reports how it ended.
cat > "$dir/job.sh" <<'JOB'
for i in $(seq 1 40); do echo "step $i"; sleep 0.05; done; echo done
JOB
start_job() {  # start_job NAME: runs the job under mig, waits for its first line
  LD_PRELOAD=$libmig bash "$dir/job.sh" > "$dir/$1.out" 2>&1 &
  pids+=($!)
  job=$!
  for _ in $(seq 1 200); do grep -q 'step 1' "$dir/$1.out" && return; sleep 0.05; done
}
finish_ok() {  # finish_ok PID NAME: the job ends normally with all its output
  wait "$1"; local rc=$?
  [ "$rc" -eq 0 ] && [ "$(grep -c '^step' "$dir/$2.out")" -eq 40 ] && grep -q '^done$' "$dir/$2.out"
}

start_job keep
"$migctl" checkpoint "$job" -o "$dir/keep.img" > "$dir/keep.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "written to $dir/keep.img" "$dir/keep.log" && finish_ok "$job" keep &&
   "$migctl" image info --verify "$dir/keep.img" > "$dir/keep.info" 2>&1; then
  ok "checkpoint leaves the job running to its normal end, and the image verifies"
else bad "checkpoint of a running job" "$dir/keep.log" "$dir/keep.out" "$dir/keep.info"; fi

start_job stop
"$migctl" checkpoint "$job" -o "$dir/stop.img" --stop > "$dir/stop.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && ! kill -0 "$job" 2>/dev/null && [ -s "$dir/stop.img" ] && ! grep -q '^done$' "$dir/stop.out"; then
  ok "checkpoint --stop ends the job after writing the image"
else bad "checkpoint --stop" "$dir/stop.log" "$dir/stop.out"; fi

out=$("$migctl" checkpoint 999999999 -o "$dir/x.img" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "no process with PID 999999999" <<<"$out" && [ ! -e "$dir/x.img" ]; then
  ok "a PID that does not exist is named"
else bad "nonexistent PID: $out"; fi

sleep 30 & plain=$!; pids+=($plain)
out=$("$migctl" checkpoint "$plain" -o "$dir/x.img" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "does not run under mig" <<<"$out" && kill -0 "$plain"; then
  ok "a process without the shim is refused and left alone"
else bad "process without the shim: $out"; fi
kill "$plain"

start_job nodir
out=$("$migctl" checkpoint "$job" -o "$dir/missing/x.img" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "cannot create $dir/missing/x.img" <<<"$out" && finish_ok "$job" nodir; then
  ok "an unwritable output path fails before the freeze; the job goes on"
else bad "unwritable path: $out" "$dir/nodir.out"; fi

start_job full
# A file size limit makes the write fail part-way, as a full disk does.
out=$(trap '' XFSZ; ulimit -f 64; "$migctl" checkpoint "$job" -o "$dir/full.img" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "File too large" <<<"$out" && [ -z "$(ls "$dir" | grep full.img)" ] &&
   finish_ok "$job" full; then
  ok "a write that fails part-way leaves no image, not even a partial one; the job goes on"
else bad "disk full: $out ($(ls -a "$dir"))" "$dir/full.out"; fi

out=$("$migctl" checkpoint 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "no PID given" <<<"$out" && ok "usage errors say what is missing" || bad "usage: $out"
"$migctl" checkpoint --help | grep -q -- "--stop" && ok "checkpoint --help" || bad "checkpoint --help"

[ "$fails" -eq 0 ]
