#!/bin/bash
# Restart to the job's first instruction, eager (`migctl restart --eager`, the default
# below 64 MiB: every page checked, then copied into place) beside lazy (`migctl restart --lazy`,
# the default from 64 MiB where allowed: pages placed as touched and in the background,
# resources/lazy_pages.h), measured in the same run
# for a MIB MiB image, a small one (1 MiB) and a tiny one (the probe with no memory of
# its own). For each: from the command's start to
# the job's first action after the restart ("first"), and to the job having read
# every page of its memory ("all"). Medians of ROUNDS, alternating. Needs root (--lazy).
# issue 14's targets: 1 GiB image <= 100 ms, small <= 5 ms to the first instruction.
# The baseline, in the same run and the same rounds: a plain exec of the same program
# (restart_probe, no image) from the same moment to the same first action, under
# libmig.so as the job was and without it; the restart's figure is quoted as a ratio
# to the first.
# Then where the time to the first instruction goes, medians of the eager restarts:
# migctl's exec and start until its restart code runs, the restart's phases
# ($MIG_HOP_TIMES, shadow/hop_times.h) to its exec of mig-restore, that exec, and
# mig-restore's work (memory, threads) until the job's first action.
#   bench/lazy_restart_bench.sh [MIB]      (default 1024; images in /var/tmp)
#   ROUNDS=N (default 5): rounds per kind, alternating; the median is printed
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
mib=${1:-1024}
dir=$(mktemp -d /var/tmp/mig-lazybench-XXXXXX)
job=
trap '[ -n "$job" ] && kill -9 $job 2>/dev/null; rm -rf "$dir"' EXIT
migctl=$build/migctl/migctl
probe=$build/bench/restart_probe
rounds=${ROUNDS:-5}
ms() { echo "$(( $1 / 1000 )).$(( $1 % 1000 / 100 ))"; }

source "$(dirname "$0")/probe_image.sh"
# once IMG [ARGS]: prints "first_ms all_ms restorer_ms": from the command's start to
# the job's first action and to all its memory read, and from mig-restore's start (its
# MIG_RESTORE_DEBUG line) to the first action: DESIGN's "restart of a small process".
once() {
  local img=$1; shift
  echo go > "$dir/go"
  # Both kinds start from a cached image: what a restart right after a checkpoint sees.
  cat "$img" > /dev/null
  : > "$dir/times"
  local t0=${EPOCHREALTIME/./}
  MIG_HOP_TIMES=$dir/times MIG_RESTORE_DEBUG=1 "$migctl" restart "$@" "$img" < "$dir/go" > "$dir/run.out" 2> "$dir/run.err"
  local first all rs
  first=$(sed -n 's/^first \([0-9]*\)$/\1/p' "$dir/run.out")
  all=$(sed -n 's/^all \([0-9]*\) .*/\1/p' "$dir/run.out")
  rs=$(cat "$dir/run.out" "$dir/run.err" | sed -n 's/.*started at realtime \([0-9]*\) us.*/\1/p')
  # The breakdown: "LABEL<TAB>restart at T us: ..." lines for bench/hop_times.awk, the
  # restart's own marks, with the moments around them as phases of their own.
  local line at exec_us
  line=$(cat "$dir/times")
  at=$(sed -n 's/.* at \([0-9]*\) us:.*/\1/p' <<<"$line")
  if [ -n "$at" ]; then
    # Its total, "N.NNN ms" (always three decimals), in us; bash's 64-bit arithmetic, as
    # awk's printf %d cannot hold a realtime in us.
    local total; total=$(sed -n 's/.* total \([0-9]*\)\.\([0-9]\{3\}\) ms$/\1\2/p' <<<"$line")
    exec_us=$((at + 10#$total))
    printf '%s\tmigctl restart at %s us: exec+start %s ms, %s, exec mig-restore %s ms, mig-restore to first action %s ms, total %s ms\n' \
      "$label" "$t0" "$(ms $((at - t0)))" "$(sed -e 's/.* us: //' -e 's/, total [0-9.]* ms$//' <<<"$line")" \
      "$(ms $((rs - exec_us)))" "$(ms $((first - rs)))" "$(ms $((first - t0)))" >> "$dir/times.all"
  fi
  echo "$(ms $((first - t0))) $(( (all - t0) / 1000 )) $(ms $((first - rs)))"
}
# plain [PRELOAD]: the probe started by a plain exec (no image, no memory of its own)
# from the same moment to the same first action (its "first" line, after reading its
# line on stdin): the baseline of a restart. PRELOAD: under libmig.so, as the job was.
plain() {
  echo go > "$dir/go"
  local t0=${EPOCHREALTIME/./}
  if [ -n "${1:-}" ]; then
    LD_PRELOAD=$build/shim/libmig.so "$probe" 0 < "$dir/go" > "$dir/plain.out" 2> /dev/null
  else
    "$probe" 0 < "$dir/go" > "$dir/plain.out" 2> /dev/null
  fi
  local first; first=$(sed -n 's/^first \([0-9]*\)$/\1/p' "$dir/plain.out")
  echo "$(ms $((first - t0)))"
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

probe_image "$build" "$dir" big "$mib"
probe_image "$build" "$dir" small 1
probe_image "$build" "$dir" tiny 0   # no memory of its own: a small printf program under libmig.so
printf 'image sizes: %d MiB, %d KiB, %d KiB (tiny: issue 14 wants a small printf program <= 150 KiB; CRIU 120 KiB)\n' \
  $(($(stat -c %s "$dir/big.img") >> 20)) $(($(stat -c %s "$dir/small.img") >> 10)) $(($(stat -c %s "$dir/tiny.img") >> 10))
pm=() pn=()
declare -A firsts
for name in big small tiny; do
  ef=() ea=() er=() lf=() la=() lr=()
  label=$([ $name = big ] && echo "$mib MiB" || echo "$name")
  for round in $(seq 1 "$rounds"); do
    read -r f a r < <(label="$label eager" once "$dir/$name.img" --eager); ef+=("$f"); ea+=("$a"); er+=("$r")
    pm+=("$(plain preload)")
    read -r f a r < <(label="$label lazy" once "$dir/$name.img" --lazy); lf+=("$f"); la+=("$a"); lr+=("$r")
    pn+=("$(plain)")
  done
  firsts["$label eager"]=$(median "${ef[@]}")
  firsts["$label lazy"]=$(median "${lf[@]}")
  printf '%-8s eager restart: first instruction %7s ms (%s ms from mig-restore), all memory read %6s ms   (runs: %s)\n' \
    "$label" "$(median "${ef[@]}")" "$(median "${er[@]}")" "$(median "${ea[@]}")" "${ef[*]}"
  printf '%-8s lazy restart : first instruction %7s ms (%s ms from mig-restore), all memory read %6s ms   (runs: %s)\n' \
    "$label" "$(median "${lf[@]}")" "$(median "${lr[@]}")" "$(median "${la[@]}")" "${lf[*]}"
done
base=$(median "${pm[@]}")
printf 'baseline, a plain exec of the same program (no image) in the same rounds: first instruction %s ms under libmig.so, %s ms without   (runs: %s / %s)\n' \
  "$base" "$(median "${pn[@]}")" "${pm[*]}" "${pn[*]}"
printf 'restart / plain exec under libmig.so (medians):'
for k in "tiny eager" "tiny lazy" "small eager" "small lazy" "$mib MiB eager" "$mib MiB lazy"; do
  awk -v k="$k" -v a="${firsts[$k]}" -v b="$base" 'BEGIN { printf "  %s %.2fx", k, (b > 0 ? a / b : 0) }'
done
echo
echo "where the time to the first instruction goes:"
awk -f "$root/bench/hop_times.awk" "$dir/times.all"
