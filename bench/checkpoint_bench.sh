#!/bin/bash
# Checkpoint-to-file rate beside its physical limit, measured in the same run: the
# time plain write()+fsync of the same number of bytes takes on the same file
# system. DESIGN.md's target: checkpoint >= 80 % of the plain write rate.
#   bench/checkpoint_bench.sh [MIB] [DIR]      (default 1024 MiB in /var/tmp)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
mib=${1:-1024}
dir=$(mktemp -d "${2:-/var/tmp}/mig-bench-XXXXXX")
trap 'kill -9 $job 2>/dev/null; rm -rf "$dir"' EXIT
job=

LD_PRELOAD=$build/shim/libmig.so "$build/bench/hold_memory" "$mib" > "$dir/job.out" &
job=$!
for _ in $(seq 1 600); do grep -q READY "$dir/job.out" && break; sleep 0.1; done

# The disk and page cache of a shared machine are noisy: alternate the two, three
# rounds, and compare medians.
ckpts=() plains=()
for round in 1 2 3; do
  sync
  start=$(date +%s.%N)
  "$build/migctl/migctl" checkpoint "$job" -o "$dir/job.img" > "$dir/ckpt.log"
  end=$(date +%s.%N)
  ckpts+=("$(echo "$end - $start" | bc -l)")
  img=$(stat -c %s "$dir/job.img")
  rm -f "$dir/job.img"
  sync
  plains+=("$("$build/bench/write_rate" $((img >> 20)) "$dir/plain.bin")")
  rm -f "$dir/plain.bin"
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
ckpt=$(median "${ckpts[@]}")
plain=$(median "${plains[@]}")

printf 'image: %d MiB (%s)\n' $((img >> 20)) "$(sed 's/.*: //' "$dir/ckpt.log")"
printf 'checkpoint to file : %6.3f s  %7.1f MiB/s   (median of %s)\n' "$ckpt" "$(echo "($img/1048576)/$ckpt" | bc -l)" "${ckpts[*]}"
printf 'plain write+fsync  : %6.3f s  %7.1f MiB/s   (median of %s; same bytes, same file system)\n' \
  "$plain" "$(echo "($img/1048576)/$plain" | bc -l)" "${plains[*]}"
printf 'ratio              : %5.1f %% of the plain write rate (target >= 80 %%)\n' \
  "$(echo "100*$plain/$ckpt" | bc -l)"
