#!/bin/bash
# migctl checkpoint as a user meets it: success with and without --stop, and each
# error giving one clear line while the process goes on unharmed.
# Args: MIGCTL LIBMIG
set -u
migctl=$1 libmig=$2
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup ckpt

# A job that counts, printing a line per step, and reports how it ended.
cat > "$dir/job.sh" <<'JOB'
for i in $(seq 1 40); do echo "step $i"; sleep 0.05; done; echo done
JOB
start_job() {  # start_job NAME: runs the job under mig, waits for its first line
  LD_PRELOAD=$libmig bash "$dir/job.sh" > "$dir/$1.out" 2>&1 &
  pids+=($!)
  job=$!
  wait_for "step 1" grep -q 'step 1' "$dir/$1.out"
}
finish_ok() {  # finish_ok PID NAME: the job ends normally with all its output
  wait "$1"; local rc=$?
  [ "$rc" -eq 0 ] && [ "$(grep -c '^step' "$dir/$2.out")" -eq 40 ] && grep -q '^done$' "$dir/$2.out"
}

start_job keep
"$migctl" checkpoint "$job" -o "$dir/keep.img" > "$dir/keep.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "written to $dir/keep.img" "$dir/keep.log" && finish_ok "$job" keep &&
   "$migctl" image info --verify "$dir/keep.img" > "$dir/keep.info" 2>&1 &&
   grep -qE "^  owner     uid $(id -u) .*gid $(id -g)" "$dir/keep.info"; then
  ok "checkpoint leaves the job running to its normal end, and the image verifies and names its owner"
else bad "checkpoint of a running job" "$dir/keep.log" "$dir/keep.out" "$dir/keep.info"; fi

start_job stop
"$migctl" checkpoint "$job" -o "$dir/stop.img" --stop > "$dir/stop.log" 2>&1; rc=$?
wait "$job"; jrc=$?
if [ $rc -eq 0 ] && ! kill -0 "$job" 2>/dev/null && [ -s "$dir/stop.img" ] && ! grep -q '^done$' "$dir/stop.out" &&
   [ $jrc -eq 86 ]; then
  ok "checkpoint --stop ends the job after writing the image, with status 86 (checkpointed, not finished)"
else bad "checkpoint --stop (job status $jrc)" "$dir/stop.log" "$dir/stop.out"; fi

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

# The shim's control socket and eventfd are not in the program's fd table at all (the
# control thread has one of its own); its one fd there is MIG_LOG's file. A program
# that dup2s onto that file's number, then closes the number the file went to: the
# shim moved its file away first and ignores the close (the program never had it),
# the program's fd is its own, and the job can still be checkpointed. (Python: bash
# keeps a copy of an open fd it redirects onto.)
if command -v python3 >/dev/null; then
  cat > "$dir/ownfd.py" <<'PY'
import os, sys, time
def mig_fds():
    found = []
    for f in os.listdir("/proc/self/fd"):
        try:
            t = os.readlink("/proc/self/fd/" + f)
            if t.startswith("socket:") or t == "anon_inode:[eventfd]" or t == sys.argv[1] + "/ownfd.miglog":
                found.append(int(f))
        except OSError: pass  # listdir's own fd, closed by now
    return found
if len(mig_fds()) != 1: print("mig's fds in the program's table:", mig_fds(), flush=True)
ctl = mig_fds()[0]
f = os.open(sys.argv[1] + "/taken", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.dup2(f, ctl)
os.close(f)
moved = [fd for fd in mig_fds() if fd != ctl][0]
os.close(moved)
os.write(ctl, b"took %d, log moved to %d\n" % (ctl, moved))
for i in range(1, 41):
    print("step", i, flush=True)
    time.sleep(0.05)
os.write(ctl, b"still mine\n")
print("done")
PY
  MIG_LOG=$dir/ownfd.miglog LD_PRELOAD=$(realpath "$libmig") python3 "$dir/ownfd.py" "$dir" > "$dir/ownfd.out" 2>&1 &
  pids+=($!) job=$!
  wait_for "step 1" grep -q 'step 1' "$dir/ownfd.out"
  "$migctl" checkpoint "$job" -o "$dir/ownfd.img" > "$dir/ownfd.log" 2>&1; rc=$?
  if [ $rc -eq 0 ] && finish_ok "$job" ownfd && grep -q "^took [0-9]*, log moved to [0-9]*$" "$dir/taken" &&
     grep -qx "still mine" "$dir/taken" && [ "$(wc -l < "$dir/taken")" -eq 2 ] &&
     ! grep -q "mig's fds" "$dir/ownfd.out" && grep -q "checkpoint: done, running on here" "$dir/ownfd.miglog"; then
    ok "no control socket among the program's fds; dup2 onto MIG_LOG's number and close of its new number: the program's fd is its own, checkpoint works ($(head -1 "$dir/taken"))"
  else bad "the program took MIG_LOG's number (checkpoint status $rc)" "$dir/ownfd.log" "$dir/ownfd.out" "$dir/taken" "$dir/ownfd.miglog"; fi
fi

# A pipe the job inherited and closes is closed for its reader while the job runs on:
# the control thread's table (a copy of the program's when it started) kept no copy.
if command -v python3 >/dev/null; then
  cat > "$dir/eof.py" <<'PY'
import os, select, subprocess, sys
r, w = os.pipe()
job = subprocess.Popen([sys.executable, "-c", "import os, sys, time\nos.close(int(sys.argv[1]))\nsys.stdin.read()",
                        str(w)], pass_fds=(w,), stdin=subprocess.PIPE, env=dict(os.environ, LD_PRELOAD=sys.argv[1]))
os.close(w)
ready, _, _ = select.select([r], [], [], 20)
print("EOF while the job runs" if ready and os.read(r, 1) == b"" and job.poll() is None else "no EOF", flush=True)
job.stdin.close()
job.wait(20)
PY
  out=$(timeout 60 /usr/bin/python3 "$dir/eof.py" "$(realpath "$libmig")" 2>&1)
  if [ "$out" = "EOF while the job runs" ]; then
    ok "a pipe the job inherited and closed reaches EOF at its reader while the job runs"
  else bad "inherited pipe closed by the job: $out"; fi
fi

# A program that lowers its fd limit under the shim's fd (memcached -c 1024 does):
# the shim moves MIG_LOG's file under the new limit first, as high as it fits, and the
# job can still be checkpointed (the control thread's socket, in its own table, keeps
# its number: the kernel refuses only new numbers above the limit).
if command -v python3 >/dev/null; then
  cat > "$dir/lowlimit.py" <<'PY'
import os, resource, time
def ours():
    found = []
    for f in os.listdir("/proc/self/fd"):
        try:
            t = os.readlink("/proc/self/fd/" + f)
            if t.startswith("socket:") or t == "anon_inode:[eventfd]" or t.endswith("/lowlimit.miglog"): found.append(int(f))
        except OSError: pass
    return sorted(found)
before = ours()
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print("mig's fds", before, "->", ours(), flush=True)
for i in range(1, 41):
    print("step", i, flush=True)
    time.sleep(0.05)
print("done")
PY
  MIG_LOG=$dir/lowlimit.miglog LD_PRELOAD=$(realpath "$libmig") python3 "$dir/lowlimit.py" > "$dir/lowlimit.out" 2>&1 &
  pids+=($!) job=$!
  wait_for "step 1" grep -q 'step 1' "$dir/lowlimit.out"
  "$migctl" checkpoint "$job" -o "$dir/lowlimit.img" > "$dir/lowlimit.log" 2>&1; rc=$?
  moved=$(grep "^mig's fds" "$dir/lowlimit.out")
  after=$(sed 's/.*-> \[//; s/\]//; s/,//g' <<<"$moved")
  if [ $rc -eq 0 ] && finish_ok "$job" lowlimit && [ -n "$after" ] &&
     [ "$after" = "255" ] && grep -q "checkpoint: done, running on here" "$dir/lowlimit.miglog"; then
    ok "a program that lowers its fd limit to 256: the shim's fds move under it, as high as they fit ($moved); checkpoint works"
  else bad "fd limit lowered to 256 (checkpoint status $rc): $moved" "$dir/lowlimit.log" "$dir/lowlimit.out"; fi
fi

# A deleted file larger than --max-deleted-file: refused in one line naming the file,
# its size and the option; the job goes on, and a larger limit takes it.
cat > "$dir/deleted.sh" <<'JOB'
head -c 3000000 /dev/zero > "$1/big"; exec 7<"$1/big"; rm "$1/big"
for i in $(seq 1 40); do echo "step $i"; sleep 0.05; done; echo done
JOB
LD_PRELOAD=$libmig bash "$dir/deleted.sh" "$dir" > "$dir/deleted.out" 2>&1 &
pids+=($!) job=$!
wait_for "step 1" grep -q 'step 1' "$dir/deleted.out"
out=$("$migctl" checkpoint "$job" -o "$dir/deleted.img" --max-deleted-file 2 2>&1); rc=$?
want="deleted file $dir/big (fd 7) is 3 MiB, over the 2 MiB a checkpoint keeps of a deleted file; raise the limit with migctl checkpoint --max-deleted-file MIB (at most 511), or let the job close the file first"
if [ $rc -ne 0 ] && [ "$out" = "migctl: $want" -o "$out" = "$want" ] && [ ! -e "$dir/deleted.img" ] &&
   "$migctl" checkpoint "$job" -o "$dir/deleted.img" --max-deleted-file 3 > "$dir/deleted.log" 2>&1 &&
   finish_ok "$job" deleted; then
  ok "a deleted file over --max-deleted-file is refused in one line naming it, its size and the option; 3 MiB takes it"
else bad "deleted file over the limit (status $rc): $out" "$dir/deleted.log" "$dir/deleted.out"; fi
out=$("$migctl" checkpoint 1 -o "$dir/x.img" --max-deleted-file 600 2>&1); rc=$?
[ $rc -eq 2 ] && [ "$out" = "migctl checkpoint: --max-deleted-file=600: takes a whole number from 0 to 511, not '600' (try 'migctl checkpoint --help')" ] &&
  ok "--max-deleted-file beyond 511 MiB: one line" || bad "--max-deleted-file 600 (status $rc): $out"

# An epoll registration made under an fd number that no longer holds that file
# cannot be restored (epoll_ctl registers by number): refused, naming both fds.
if command -v python3 >/dev/null; then
  for how in closed replaced; do
    cat > "$dir/stale.py" <<'PY'
import os, select, sys, time
r, w = os.pipe()
ep = select.epoll()
ep.register(r, select.EPOLLIN)
keep = os.dup(r)
os.close(r)
if sys.argv[1] == "replaced":
    other = os.open("/dev/null", os.O_RDONLY)
    assert other == r
print("step 1", flush=True)
time.sleep(1)
os.write(w, b"x")
print("events", len(ep.poll(5)), flush=True)
PY
    LD_PRELOAD=$libmig /usr/bin/python3 "$dir/stale.py" "$how" > "$dir/stale.out" 2>&1 &
    pids+=($!) job=$!
    wait_for "step 1" grep -q 'step 1' "$dir/stale.out"
    out=$("$migctl" checkpoint "$job" -o "$dir/stale.img" 2>&1); rc=$?
    wait "$job"; jrc=$?
    if [ $rc -ne 0 ] && grep -q "epoll fd [0-9]* watches a file registered as fd [0-9]*, which" <<<"$out" &&
       [ "$(wc -l <<<"$out")" -eq 1 ] && [ ! -e "$dir/stale.img" ] && [ $jrc -eq 0 ] &&
       grep -qx "events 1" "$dir/stale.out"; then
      ok "an epoll registration whose fd was $how is refused in one line; the job goes on"
    else bad "stale epoll registration ($how): $out (job status $jrc)" "$dir/stale.out"; fi
  done
fi

out=$("$migctl" checkpoint 2>&1); rc=$?
[ $rc -eq 2 ] && [ "$out" = "migctl checkpoint: missing argument PID (try 'migctl checkpoint --help')" ] &&
  ok "usage errors say what is missing, in one line, and where to look" || bad "usage: $out"
"$migctl" checkpoint --help | grep -q -- "--stop" && "$migctl" checkpoint --help | grep -q "status 86" &&
  ok "checkpoint --help (names --stop's exit status)" || bad "checkpoint --help"

for cmd in "checkpoint abc -o $dir/x.img" "checkpoint abc" "migrate abc --to b" "migrate 12x --to b"; do
  # shellcheck disable=SC2086  # words
  out=$("$migctl" $cmd 2>&1); rc=$?
  arg=$(awk '{print $2}' <<<"$cmd")
  if [ $rc -eq 2 ] && [ "$out" = "migctl ${cmd%% *}: '$arg' is not a process ID (try 'migctl ${cmd%% *} --help')" ]; then
    ok "migctl $cmd: one line, the argument is not a PID"
  else bad "migctl $cmd (status $rc): $out"; fi
done

# A shadowd socket this user may not use is named as such, not as "no shadowd".
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
  mkdir -m 0755 "$dir/sock" && touch "$dir/sock/shadowd.sock" && chmod 0600 "$dir/sock/shadowd.sock"
  chmod 0755 "$dir"
  out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$migctl" list --socket "$dir/sock/shadowd.sock" 2>&1); rc=$?
  if [ $rc -ne 0 ] && grep -q "permission denied on $dir/sock/shadowd.sock" <<<"$out" &&
     grep -q "job's owner (or as root)" <<<"$out" && ! grep -q "no shadowd" <<<"$out"; then
    ok "a shadowd socket this user may not use: permission denied, and what to do"
  else bad "shadowd socket without permission (status $rc): $out"; fi
  chmod 0700 "$dir"
else
  echo "ok - # SKIP permission on shadowd's socket (needs root, user nobody and setpriv)"
fi

[ "$fails" -eq 0 ]
