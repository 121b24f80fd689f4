#!/bin/bash
# Runs one libFuzzer target for a bounded time on a corpus seeded with valid
# samples; fails on any finding and shows the reproducer's path.
# Args: FUZZER SAMPLE_TOOL SECONDS WORKDIR SEED_KIND(image|plan)
set -u
fuzzer=$1 sample=$2 seconds=$3 work=$4 kind=$5
name=$(basename "$fuzzer")
corpus=$work/$name-corpus
mkdir -p "$corpus" "$work/$name-findings"
if [ "$kind" = image ]; then
  for spec in "1 1" "3 2" "5 3" "2 0"; do
    set -- $spec
    "$sample" "$corpus/seed-$1-$2.img" "$1" "$2" || exit 1
  done
fi
# -rss_limit_mb and -malloc_limit_mb turn a huge allocation into a finding.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
  -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/$name-findings/" "$corpus" 2>&1 |
  grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)'
rc=${PIPESTATUS[0]}
rm -f /tmp/mig-fuzz-*.img
if [ "$rc" -ne 0 ]; then
  echo "FAIL - $name found a problem; reproducer(s) in $work/$name-findings:"
  ls -l "$work/$name-findings"
  exit 1
fi
echo "ok - $name ran ${seconds}s without findings"
