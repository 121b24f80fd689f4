#!/bin/bash
# Restart of a tiny image (restart_probe holding no memory of its own, ~80 KiB) to the
# job's first instruction, for two or more builds in turn and a plain exec of the same
# probe under libmig.so in the same rounds (the baseline): issue 14's "small <= 5 ms".
# Each build restarts its own image (made by its own shim and migctl), so a build before
# and after a change of migctl, mig-restore or the shim compare in the same minutes.
#   bench/restart_ab.sh ROUNDS BUILD_DIR...   (e.g. 80 ../main/build build)
# Prints, per build and for the plain exec, the median and first quartile in ms.
set -eu
rounds=$1; shift
builds=("$@")
dir=$(mktemp -d /var/tmp/mig-restart-ab-XXXXXX)
trap 'rm -rf "$dir"' EXIT
ms() { echo "$(( $1 / 1000 )).$(( $1 % 1000 / 100 ))$(( $1 % 100 / 10 ))"; }
first() { sed -n 's/^first \([0-9]*\)$/\1/p' "$1"; }

source "$(dirname "$0")/probe_image.sh"
job=

for n in "${!builds[@]}"; do probe_image "${builds[$n]}" "$dir" "$n" 0; done
echo go > "$dir/go"
declare -A runs
for _ in $(seq 1 "$rounds"); do
  for n in "${!builds[@]}"; do
    t0=${EPOCHREALTIME/./}
    "${builds[$n]}/migctl/migctl" restart "$dir/$n.img" < "$dir/go" > "$dir/run.out" 2> "$dir/run.err"
    runs[$n]+="$(( $(first "$dir/run.out") - t0 )) "
  done
  t0=${EPOCHREALTIME/./}
  LD_PRELOAD=${builds[0]}/shim/libmig.so "${builds[0]}/bench/restart_probe" 0 < "$dir/go" > "$dir/plain.out" 2> /dev/null
  runs[plain]+="$(( $(first "$dir/plain.out") - t0 )) "
done
quantile() { printf '%s\n' ${runs[$1]} | sort -n | awk -v q="$2" '{a[NR] = $1} END {print a[int((NR - 1) * q) + 1]}'; }
for n in "${!builds[@]}" plain; do
  name=$([ "$n" = plain ] && echo "plain exec under libmig.so" || echo "${builds[$n]}")
  printf '%-40s median %6s ms, first quartile %6s ms\n' "$name" "$(ms "$(quantile "$n" 0.5)")" "$(ms "$(quantile "$n" 0.25)")"
done
