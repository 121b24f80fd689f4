#!/bin/bash
# migctl restart --lazy as a user meets it (issue 14, resources/lazy_pages.h):
#  - a job whose system calls use pages not in place yet (write() from one, read()
#    and a blocking recv() into one, a forked child) goes on exactly, and the pages
#    really were missing when the calls ran; so do MADV_DONTNEED and mremap of
#    missing pages;
#  - a corrupt page in the image kills the restarted job with one clear line before
#    it uses the page: it prints nothing computed from it;
#  - --lazy on a process tree's image is refused with one line;
#  - lazy is the default from 64 MiB of memory, --eager places every page first.
# Args: MIGCTL LIBMIG LAZY_SYSCALLS
set -u
migctl=$1 libmig=$2 prog=$3
source "$(dirname "$0")/../lib/check.sh"
check_setup lazy

# The job prints STEP 1..3 200 ms apart, then checks: checkpointed at STEP 1. Its
# output goes through pipes (as to a terminal, a restart connects it to its own); the
# reading cats are this script's children, not the job's.
exec 4> >(cat > "$dir/job.out") 5> >(cat > "$dir/job.err")
LD_PRELOAD=$libmig "$prog" 256 >&4 2>&5 4>&- 5>&- &
job=$!
exec 4>&- 5>&-
pids+=($job)
for _ in $(seq 1 600); do grep -q '^STEP 1$' "$dir/job.out" && grep -q '^lazy: pages at ' "$dir/job.err" && break; sleep 0.05; done
"$migctl" checkpoint "$job" -o "$dir/job.img" --stop > "$dir/ckpt.log" 2>&1 || bad "checkpoint" "$dir/ckpt.log"
wait "$job" 2>/dev/null

# Restarts IMG lazily with a 60 s limit; sets rc, out and err files. Without the
# background fill (MIG_LAZY_NO_FILL), so the pages the job checks are still missing.
restart_lazy() {
  MIG_LAZY_NO_FILL=1 timeout -s KILL 60 "$migctl" restart --lazy "$1" < /dev/null > "$dir/$2.out" 2> "$dir/$2.err"
  rc=$?
}

restart_lazy "$dir/job.img" r1
want=$(printf '%s\n' 'STEP 2' 'STEP 3' 'write from a lazy page: ok' 'read into a lazy page: ok' \
  'recv into a lazy page: ok' 'forked child saw exact memory: ok' 'dropped pages read zero: ok' \
  'moved pages kept their contents: ok' '65456 of 65456 pages exact')
if [ $rc -eq 0 ] && [ "$(cat "$dir/r1.out")" = "$want" ]; then
  ok "a lazily restarted job's system calls on missing pages give exact results"
else bad "lazy restart (exit $rc)" "$dir/r1.out" "$dir/r1.err"; fi
missing=$(sed -n 's/^lazy: \([0-9]*\) of 4 target pages missing$/\1/p' "$dir/r1.err")
if [ -n "$missing" ] && [ "$missing" -gt 0 ]; then
  ok "the pages were still missing when the calls ran ($missing of 4)"
else bad "the target pages were already in place: the test proves nothing" "$dir/r1.err"; fi
if grep -q '^lazy: 80 of 80 moved or dropped pages missing$' "$dir/r1.err"; then
  ok "MADV_DONTNEED and mremap on missing pages: dropped ones read zero, moved ones keep their contents"
else bad "the dropped and moved pages were not all missing" "$dir/r1.err"; fi

# A corrupt byte in a page the job's forked child reads after the restart (page 65530
# of its pages): checked against its own checksum (the image's page-sums section) as
# it is placed; nothing computed from it is printed. The line names the page by its
# address in the job and its byte in the image file (a pages section holds the pages
# of any number of regions, so the page's index there is not the job's).
base=$(sed -n 's/^lazy: pages at 0x\([0-9a-f]*\)$/\1/p' "$dir/job.err")
at=$(/usr/bin/python3 - "$dir/job.img" "$dir/bad.img" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
word = struct.pack('<Q', 0x4c415a5900000000 | (65530 << 9))
at = data.find(word)
assert at > 0 and at % 4096 == 0, 'page 65530 not found in the image'
data[at + 1000] ^= 0x55
open(sys.argv[2], 'wb').write(data)
print(at)
PY
)
[ -n "$base" ] && [ -n "$at" ] || bad "the job's pages address (job.err) or the corrupt page's image byte is unknown" "$dir/job.err"
page=$(printf '0x%x' $((0x${base:-0} + 65530 * 4096)))
restart_lazy "$dir/bad.img" r2
lines=$(grep -c . "$dir/r2.err")
if [ $rc -eq 137 ] && grep -q 'corrupt' "$dir/r2.err" && [ "$(grep -vc '^lazy: ' "$dir/r2.err")" -eq 1 ] &&
   grep -qE "^migctl restart: .*bad\.img: the saved pages at $page are corrupt \(page checksum mismatch at image byte ${at:-none}: page [0-9]+ of section [0-9]+ \(pages\) at byte [0-9]+\); killed the restarted job" "$dir/r2.err" &&
   ! grep -q 'forked child\|exact$' "$dir/r2.out"; then
  ok "a corrupt page kills the lazily restarted job with one line, before it uses the page"
else bad "corrupt page (exit $rc, $lines stderr lines)" "$dir/r2.out" "$dir/r2.err"; fi
out=$("$migctl" restart --eager "$dir/bad.img" 2>&1 < /dev/null); rc=$?
if [ $rc -ne 0 ] && grep -q 'checksum mismatch' <<<"$out"; then
  ok "the eager restart refuses the same image before it starts"
else bad "eager restart of the corrupt image (exit $rc): $out"; fi

# Lazy is the default for an image with 64 MiB of memory or more (this one: 256 MiB):
# without --lazy the pages are still missing when the job's calls run; --eager places
# them all first.
MIG_LAZY_NO_FILL=1 timeout -s KILL 60 "$migctl" restart "$dir/job.img" < /dev/null > "$dir/r4.out" 2> "$dir/r4.err"
rc=$?
missing=$(sed -n 's/^lazy: \([0-9]*\) of 4 target pages missing$/\1/p' "$dir/r4.err")
if [ $rc -eq 0 ] && [ "$(cat "$dir/r4.out")" = "$want" ] && [ -n "$missing" ] && [ "$missing" -gt 0 ]; then
  ok "a restart of a 256 MiB image without options is lazy ($missing of 4 pages missing at the calls)"
else bad "default restart of a 256 MiB image (exit $rc, ${missing:-no} pages missing)" "$dir/r4.out" "$dir/r4.err"; fi
MIG_LAZY_NO_FILL=1 timeout -s KILL 60 "$migctl" restart --eager "$dir/job.img" < /dev/null > "$dir/r5.out" 2> "$dir/r5.err"
rc=$?
# (Its output is not compared: after an eager restart the job's big regions are
# mapped from the image, where MADV_DONTNEED shows the saved page, not zeros:
# docs/kinds/memory.md, limits.)
if [ $rc -eq 0 ] && grep -q '^lazy: 0 of 4 target pages missing$' "$dir/r5.err" && grep -q '^65456 of 65456 pages exact$' "$dir/r5.out"; then
  ok "--eager places every page before the job runs"
else bad "--eager restart (exit $rc)" "$dir/r5.out" "$dir/r5.err"; fi

# With the background fill, as users run it.
timeout -s KILL 60 "$migctl" restart --lazy "$dir/job.img" < /dev/null > "$dir/r3.out" 2> "$dir/r3.err"
rc=$?
if [ $rc -eq 0 ] && [ "$(cat "$dir/r3.out")" = "$want" ]; then ok "the same image restarts lazily again, with the background fill"
else bad "second lazy restart (exit $rc)" "$dir/r3.out" "$dir/r3.err"; fi

# Without the privilege to handle the kernel's faults, --lazy is refused in one line
# (a system call on a missing page would fail instead of waiting).
if [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 0 ] && command -v setpriv > /dev/null; then
  chmod 755 "$dir"; chmod 644 "$dir/job.img"
  out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$migctl" restart --lazy "$dir/job.img" 2>&1 < /dev/null); rc=$?
  if [ $rc -ne 0 ] && [ "$(grep -c . <<<"$out")" -eq 1 ] &&
     grep -q -- '--lazy: lazy pages need root, or vm.unprivileged_userfaultfd = 1.*; restart without --lazy' <<<"$out"; then
    ok "--lazy without the privilege is refused in one line"
  else bad "unprivileged --lazy (exit $rc): $out"; fi
fi

[ $fails -eq 0 ] || exit 1
