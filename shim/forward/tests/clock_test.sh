#!/usr/bin/env bash
# A migrated job's clocks (shim/forward/clock_shift.h) on one host, without a home:
# the shim's test hook activates forwarding from a Config whose realtime offset is
# +1 h and monotonic offset +2 h. Every way of reading the clocks must show them
# (libc functions answered by the vDSO, and raw system calls), the CPU clock none,
# and every absolute deadline computed on the shifted clocks (condition variables,
# semaphores, PI mutexes, clock_nanosleep, timerfd, POSIX timers) must wait its
# 500 ms, not an hour more and not zero. A forked child forwards like the job: it
# reads the job's clocks and waits right too. A Config with no offsets changes nothing.
# The bounds are sanity bounds for a +-1 h effect, not timing thresholds.
#
#   clock_test.sh CLOCK_APP LIBMIG
set -euo pipefail

APP=$(realpath "$1") LIBMIG=$(realpath "$2")
T=$(mktemp -d /tmp/mig-clock-test.XXXXXX)
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*"; echo "--- report"; cat "$T/report" 2>/dev/null; exit 1; }
value() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "missing" }' "$T/report"; }
near() {  # near NAME EXPECTED: the value is within 60 s of EXPECTED
  local v; v=$(value "$1")
  [[ "$v" =~ ^-?[0-9]+$ ]] && (( v - $2 < 60 && $2 - v < 60 )) || fail "$1 is $v, expected about $2"
  echo "ok - $1 $v (expected about $2)"
}
waited() {  # waited NAME: a 500 ms wait took between 400 ms and 30 s and timed out
  local line; line=$(grep "^$1 " "$T/report") || fail "no $1 line"
  local ms status; read -r _ ms status <<< "$line"
  (( ms >= 400 && ms <= 30000 )) || fail "$1 waited $ms ms for a 500 ms deadline"
  [[ "$status" = ETIMEDOUT || "$status" = 0 ]] || fail "$1 ended with $status"
  echo "ok - $1 waited $ms ms"
}

run() {  # run REALTIME_NS MONOTONIC_NS
  "$APP" config "$T/config.bin" "$1" "$2"
  (cd "$T" && timeout 120 env MIG_FORWARD_TEST_CONFIG="$T/config.bin" LD_PRELOAD="$LIBMIG" "$APP" report) \
    > "$T/report" 2> "$T/err" || fail "clock_app exited with status $? ($(cat "$T/err"))"
  grep -qx DONE "$T/report" || fail "no DONE"
}
host_clocks() {  # this host's realtime, monotonic and boottime seconds
  read -r now mono boot < <(python3 -c 'import time; print(int(time.time()), int(time.monotonic()), int(time.clock_gettime(time.CLOCK_BOOTTIME)))')
}

run 3600000000000 7200000000000
host_clocks
for k in realtime realtime_coarse time gettimeofday timespec_get raw_clock_gettime raw_gettimeofday raw_time; do
  near "$k" $((now + 3600))
done
near tai $((now + 3600))  # TAI is ahead by the leap seconds, if the kernel knows them
near monotonic $((mono + 7200))
near boottime $((boot + 7200))
near raw_monotonic $((mono + 7200))
near cputime 0
for k in cond_timedwait_ms cond_clockwait_ms sem_timedwait_ms pi_timedlock_ms nanosleep_abs_realtime_ms \
         nanosleep_abs_monotonic_ms timerfd_abs_realtime_ms timerfd_abs_monotonic_ms timer_abs_realtime_ms \
         timer_abs_monotonic_ms child_cond_timedwait_ms; do
  waited "$k"
done
near child_realtime $((now + 3600))

# Offsets pointing the other way: deadlines would be in the past here if left alone.
run -3600000000000 0
host_clocks
near realtime $((now - 3600))
near time $((now - 3600))
for k in cond_timedwait_ms sem_timedwait_ms pi_timedlock_ms nanosleep_abs_realtime_ms timerfd_abs_realtime_ms \
         timer_abs_realtime_ms; do
  waited "$k"
done

# No offsets: a job migrated to a host with the same clock sees it unchanged.
run 0 0
host_clocks
near realtime "$now"
near raw_time "$now"
near monotonic "$mono"
waited cond_timedwait_ms
echo "all clock checks passed"
