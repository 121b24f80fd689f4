#!/bin/bash
# A change to a hop's freeze measured beside the build before it, in the same run: two
# pairs of shadowd on loopback, one of each build (MIG_BEFORE_BUILD, a second build
# directory of the older tree, or a copy of its executables; and this tree's), and a
# job of MIB MiB writing RATE MiB/s (bench/dirty_memory.c) moved HOPS times per mode,
# the older and the newer build in turn at each step (which goes first alternates), so
# that the shared machine's load falls on both alike (bench/precopy_bench.sh moves the
# three modes with one build).
# Prints every hop (freeze, load), each build's median freeze per mode, then each
# phase's median ($MIG_HOP_TIMES, shadow/hop_times.h; bench/hop_times.awk).
# usage: MIG_BEFORE_BUILD=DIR [MIG_FREEZE_ONLY=1] bench/freeze_ab.sh [MIB [RATE [HOPS [MODE...]]]]
#        (defaults 1024, 16, 5, postcopy precopy; a mode is migctl migrate's --MODE;
#        MIG_FREEZE_ONLY: each hop's job is ended on B right after its freeze)
set -eu
mib=${1:-1024}
rate=${2:-16}
hops=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(postcopy precopy)
: "${MIG_BEFORE_BUILD:?names the build to compare with (its shadow/, migctl/, shim/, bench/ ...)}"
source "$(dirname "$0")/lib.sh"
declare -A builds=([before]=$MIG_BEFORE_BUILD [after]=$build) ports
dir=$(mktemp -d /tmp/mig-freezeab.XXXXXX)
pids=()
trap bench_end EXIT
head -c 32 /dev/urandom > "$dir/key"; chmod 600 "$dir/key"
export MIG_HOP_TIMES=$dir/times  # read by each build's hop sender and restart
for w in before after; do
  for s in a b; do
    ports[$w$s]=$(port)
    "${builds[$w]}/shadow/shadowd" --listen 127.0.0.1:${ports[$w$s]} --cluster-key "$dir/key" --socket "$dir/$w$s/sock" \
      --log "$dir/$w$s.log" & pids+=($!)
  done
done
for s in beforea beforeb aftera afterb; do
  for _ in $(seq 1 100); do [ -S "$dir/$s/sock" ] && break; sleep 0.05; done
  [ -S "$dir/$s/sock" ] || { echo "bench: shadowd $s did not start; its log:" >&2; cat "$dir/$s.log" >&2; exit 1; }
done
declare -A frozen
printf 'process of %d MiB writing %d MiB/s, migrated on loopback; the build before (%s) and this one in turn:\n' \
  "$mib" "$rate" "$MIG_BEFORE_BUILD"
for i in $(seq 1 "$hops"); do
  for mode in "${modes[@]}"; do
    # Which build goes first changes each step: a hop's leftovers (B's end of the job
    # killed, its image deleted) fall on the next hop, so neither always follows the other.
    order=(before after); (( i % 2 )) || order=(after before)
    for w in "${order[@]}"; do
      b=${builds[$w]}
      LD_PRELOAD=$b/shim/libmig.so "$b/bench/dirty_memory" "$mib" "$rate" > "$dir/job.out" &
      job=$!; pids+=($job)
      wait_for "$dir/job.out" READY
      : > "$MIG_HOP_TIMES"
      seen=$(wc -l < "$dir/${w}b.log")  # B's lines of this hop only: an older PID may be another's now
      if [ -n "${MIG_FREEZE_ONLY-}" ]; then
        # The freeze alone: the job on B is ended once the sender wrote its line (at the
        # commit's answer), so that a post-copy hop's fetch of the rest, minutes beside
        # busy loops, is not waited for; the freeze is that line's total.
        MIG_SHADOWD_SOCKET=$dir/${w}a/sock "$b/migctl/migctl" migrate "$job" --to 127.0.0.1:${ports[${w}b]} \
          "--$mode" > "$dir/migrate.out" 2>&1 &
        mig=$!
        for _ in $(seq 1 1200); do grep -q '^send ' "$MIG_HOP_TIMES" && break; kill -0 $mig 2>/dev/null || break; sleep 0.1; done
        sleep 0.5  # B's "runs here as PID" line
        end_restored "$dir/${w}b.log" "$seen"
        wait $mig || true
        t=$(sed -n 's/^send .*total \([0-9.]*\) ms$/\1/p' "$MIG_HOP_TIMES")
        line=${t:+"migrated: frozen $t ms"}
        [ -n "$line" ] || line=$(tail -1 "$dir/migrate.out")
      else
        line=$(MIG_SHADOWD_SOCKET=$dir/${w}a/sock "$b/migctl/migctl" migrate "$job" --to 127.0.0.1:${ports[${w}b]} \
               "--$mode" 2>&1 | tail -1)
      fi
      if [[ "$line" == migrated* ]]; then
        f=$(sed -E 's/.*frozen ([0-9.]+) ms.*/\1/' <<<"$line")
        frozen[$mode $w]+=" $f"
        sed "s/^/$mode $w\t/" "$MIG_HOP_TIMES" >> "$dir/times.all"
      else
        f="failed ($line)"  # left out of the medians
      fi
      printf '  %-13s %-6s frozen %s ms (load %s)\n' "$mode" "$w" "$f" "$(cut -d' ' -f1 /proc/loadavg)"
      end_job "$job"
      end_restored "$dir/${w}b.log" "$seen"
    done
  done
done
echo "medians (ms):"
for mode in "${modes[@]}"; do
  for w in before after; do
    [ -n "${frozen[$mode $w]-}" ] || { printf '  %-13s %-6s every hop failed\n' "$mode" "$w"; continue; }
    # shellcheck disable=SC2086
    printf '  %-13s %-6s %8s   (%s )\n' "$mode" "$w" "$(median ${frozen[$mode $w]})" "${frozen[$mode $w]}"
  done
done
echo "where the freeze goes:"
if [ -s "$dir/times.all" ]; then awk -f "$root/bench/hop_times.awk" "$dir/times.all"; fi
