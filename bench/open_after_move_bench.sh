#!/bin/bash
# The cost of opening a system file after a migration (rsc/open_rule.h): mig asks home
# for the file's size and content hash and opens the local copy if they match. Figures
# per open+close of a shared library, beside a plain local open (the same files, same
# process, before the move) and an open that goes home (what every open cost before
# this rule), all measured in the same run, between two shadowd on loopback:
#   first   the first open of each file after the move: home hashes it, so does the shim
#   cached  the same files again: both hashes cached (one round trip home per open)
# usage: bench/open_after_move_bench.sh [COUNT [DIR]]   (default 100 files of
#        /usr/lib/x86_64-linux-gnu; files are read once beforehand, so the figures are
#        hashing and round trips, not the disk)
set -eu
count=${1:-100}
libdir=${2:-/usr/lib/x86_64-linux-gnu}
source "$(dirname "$0")/lib.sh"
bench_two_shadowds openbench

find "$libdir" -maxdepth 1 -name '*.so*' -type f -size -8M -exec cat {} + >/dev/null 2>&1 || true
mkdir "$dir/data"
LD_PRELOAD=$build/shim/libmig.so "$build/bench/open_after_move" "$libdir" "$count" "$dir/data" 2> "$dir/job.err" &
job=$!; pids+=($job)
wait_for "$dir/job.err" READY
A migrate "$job" --to 127.0.0.1:$pb > "$dir/migrate.out"
touch "$dir/data/go"
wait_for "$dir/job.err" RESULT
read -r _ local first cached home files mib < <(grep RESULT "$dir/job.err")
printf 'open+close of %d shared libraries of %s (%.1f MiB), ns per open:\n' "$files" "$libdir" "$mib"
printf '  plain local open (before the move)       : %9d ns\n' "$local"
printf '  after the move, first time (hash both)   : %9d ns   (%.0fx local)\n' "$first" "$(echo "$first / $local" | bc -l)"
printf '  after the move, cached (one round trip)  : %9d ns   (%.0fx local)\n' "$cached" "$(echo "$cached / $local" | bc -l)"
printf '  after the move, an open that goes home   : %9d ns   (%.0fx local)\n' "$home" "$(echo "$home / $local" | bc -l)"
