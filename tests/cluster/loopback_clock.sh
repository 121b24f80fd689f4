#!/bin/bash
# loopback_clock.sh: a migrated job's CLOCK_REALTIME follows its home's clock.
# Two shadowd on loopback (no root); the hosts share one clock, so home (A) is given
# a clock 3600 s ahead with the test hook MIG_TEST_CLOCK_SKEW_NS (what its Node.clock
# answers). A job started at A reports its clocks, is migrated to B and reports
# again: time(), clock_gettime(CLOCK_REALTIME) and gettimeofday() must read about
# 3600 s ahead of this machine's clock, and a pthread_cond_timedwait with a deadline
# 1 s ahead of that clock must wait about 1 s (not an hour, not zero). Migrated back
# home, its clock is this machine's again. Bounds are sanity bounds for a 3600 s
# effect, not timing thresholds.
#
# usage: loopback_clock.sh SHADOWD MIGCTL LIBMIG CLOCK_JOB
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") job=$(realpath "$4")
source "$(dirname "$0")/lib/loopback_lib.sh" clock
skew=3600

new_key "$dir/key"
pa=$(port) pb=$(port)
MIG_TEST_CLOCK_SKEW_NS=${skew}000000000 start_shadowd a $pa "$dir/key"
start_shadowd b $pb "$dir/key"
wait_shadowds a b

# check_report TAG EXPECTED_OFFSET: the job's three realtime readings are within 60 s
# of this machine's clock plus the offset; its 1 s timed wait took 0.9 s to 60 s.
check_report() {
  local tag=$1 offset=$2 now k v line ms status good=1
  now=$(date +%s)
  for k in time realtime gettimeofday; do
    v=$(awk -v t="$tag" -v k="$k" '$1 == t && $2 == k { print $3 }' "$dir/out.txt")
    if ! [[ "$v" =~ ^[0-9]+$ ]] || (( v - now - offset > 60 || now + offset - v > 60 )); then
      bad "$tag: $k reads '$v', expected about $((now + offset)) (this host + $offset s)" "$dir/out.txt"
      good=0
    fi
  done
  line=$(grep "^$tag timedwait_ms " "$dir/out.txt")
  read -r _ _ ms status <<< "$line"
  if ! [[ "$ms" =~ ^[0-9]+$ ]] || (( ms < 900 || ms > 60000 )) || [ "$status" != ETIMEDOUT ]; then
    bad "$tag: a 1 s pthread_cond_timedwait took '$ms' ms ($status)" "$dir/out.txt"
    good=0
  fi
  [ $good = 1 ] && ok "$tag: time(), CLOCK_REALTIME and gettimeofday read this host + $offset s; a 1 s timed wait took $ms ms"
}

cd "$dir"
( LD_PRELOAD=$libmig "$job" "$dir" > "$dir/out.txt" 2> "$dir/err.txt"; echo "$?" > "$dir/status" ) &
pids+=($!)
wait_line "$dir/out.txt" '^start timedwait_ms ' || bad "the job started" "$dir/out.txt" "$dir/err.txt"
jobpid=$(awk '/^pid /{print $2; exit}' "$dir/out.txt")
check_report start 0

A migrate "$jobpid" --to 127.0.0.1:$pb > "$dir/m1.out" 2>&1; rc=$?
if [ $rc -eq 0 ]; then ok "migrated A -> B: $(tail -1 "$dir/m1.out")"
else bad "migrate A -> B (exit $rc)" "$dir/m1.out" "$dir/a.log" "$dir/b.log"; fi
if grep -q "home's realtime clock is 3599[0-9]\{3\} ms ahead\|home's realtime clock is 3600[0-9]\{3\} ms ahead" "$dir/b.log"; then
  ok "B measured home's clock $skew s ahead: $(grep -o "home's realtime clock is [0-9]* ms" "$dir/b.log" | tail -1)"
else bad "B's measurement of home's clock" "$dir/b.log"; fi
touch "$dir/away"
wait_line "$dir/out.txt" '^away timedwait_ms ' || bad "the job reported on B" "$dir/out.txt" "$dir/b.log"
check_report away $skew

A migrate "$jobpid" --to 127.0.0.1:$pa > "$dir/m2.out" 2>&1; rc=$?
if [ $rc -eq 0 ]; then ok "migrated B -> A (home again)"
else bad "migrate B -> A (exit $rc)" "$dir/m2.out" "$dir/a.log" "$dir/b.log"; fi
touch "$dir/back"
wait_line "$dir/out.txt" '^back timedwait_ms ' || bad "the job reported at home" "$dir/out.txt" "$dir/a.log"
check_report back 0

wait_until 10 test -s "$dir/status"
if [ "$(cat "$dir/status" 2>/dev/null)" = 0 ]; then ok "the job ended with status 0"
else bad "the job's exit status '$(cat "$dir/status" 2>/dev/null)'" "$dir/out.txt" "$dir/err.txt"; fi

[ "$failures" -eq 0 ]
