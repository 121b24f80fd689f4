#!/bin/bash
# What encrypting the links between hosts costs (shadow/secure_stream.h; issue 13 allows
# at most 10 %). Runs bench/migration_bench.sh and bench/network_relay_bench.sh twice
# in the same run, once with the default encrypted links and once with both shadowd
# started with --insecure-plaintext-links (MIG_BENCH_SHADOWD_ARGS), ROUNDS times
# (which goes first alternates), and prints the median of each figure, encrypted beside plaintext:
# image transfer, forwarded 64-byte write to a home file, forwarded 1 MiB writes,
# relayed 64-byte TCP round trip, relayed TCP throughput both ways.
# usage: bench/encryption_bench.sh [MIB] [NET_MIB] [ROUNDS]   (defaults 256, 128, 1)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mib=${1:-256}
net_mib=${2:-128}
rounds=${3:-1}
out=$(mktemp -d /tmp/mig-cryptbench.XXXXXX)
trap 'rm -rf "$out"' EXIT
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

declare -A fig  # fig[MODE.NAME] = space-separated values, one per round
add() { fig[$1.$2]="${fig[$1.$2]-} $3"; }
run() {  # run MODE ROUND
  local mode=$1 r=$2 args="" m n
  [ "$mode" = plaintext ] && args=--insecure-plaintext-links
  m=$out/mig.$mode.$r n=$out/net.$mode.$r
  MIG_BENCH_SHADOWD_ARGS=$args "$here/migration_bench.sh" "$mib" >"$m" 2>&1 ||
    { echo "encryption_bench: migration_bench.sh ($mode) failed:" >&2; tail -20 "$m" >&2; exit 1; }
  MIG_BENCH_SHADOWD_ARGS=$args "$here/network_relay_bench.sh" "$net_mib" 2000 >"$n" 2>&1 ||
    { echo "encryption_bench: network_relay_bench.sh ($mode) failed:" >&2; tail -20 "$n" >&2; exit 1; }
  add "$mode" image "$(awk '/image transfer/ { print $4 }' "$m")"
  add "$mode" write64 "$(awk '/forwarded, direct link/ { print $5; exit }' "$m")"
  add "$mode" write1m "$(awk '/forwarded, direct link/ { n++; if (n == 2) { print $5; exit } }' "$m")"
  add "$mode" rtt "$(awk '/64-byte round trip/ { print $(NF-4) }' "$n")"
  add "$mode" up "$(awk '/client -> server/ { print $(NF-4) }' "$n")"
  add "$mode" down "$(awk '/server -> client/ { print $(NF-4) }' "$n")"
}
load=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
  # Which goes first alternates, so that neither always gets the quieter moment.
  if [ $((r % 2)) = 1 ]; then run encrypted "$r"; run plaintext "$r"; else run plaintext "$r"; run encrypted "$r"; fi
done

row() {  # row LABEL NAME UNIT higher|lower
  local e p cost
  # shellcheck disable=SC2086
  e=$(median ${fig[encrypted.$2]}) p=$(median ${fig[plaintext.$2]})
  if [ "$4" = higher ]; then cost=$(echo "100 * ($p - $e) / $p" | bc -l); else cost=$(echo "100 * ($e - $p) / $p" | bc -l); fi
  printf '  %-44s %10.1f %-5s %10.1f %-5s %6.1f %%\n' "$1" "$e" "$3" "$p" "$3" "$cost"
  # Every round's figure: on a busy machine the spread says more than one median.
  printf '  %-44s %s | %s\n' "    (each round: encrypted | plaintext)" "${fig[encrypted.$2]# }" "${fig[plaintext.$2]# }"
}
printf 'encrypted links (default) beside --insecure-plaintext-links, loopback, median of %d round(s):\n' "$rounds"
printf '  %-44s %16s %16s %8s\n' "" "encrypted" "plaintext" "cost"
row "image transfer ($mib MiB process)" image MiB/s higher
row "forwarded 64-byte write to a home file" write64 ns lower
row "forwarded 1 MiB writes to a home file" write1m MB/s higher
row "relayed TCP 64-byte round trip" rtt us lower
row "relayed TCP client -> server, $net_mib MiB" up MB/s higher
row "relayed TCP server -> client, $net_mib MiB" down MB/s higher
printf '  (cost: how much worse encrypted is, in %% of plaintext; the issue allows 10 %%)\n'
printf '  (load average at the start: %s on %d CPUs; each round: %s)\n' "$load" "$(nproc)" "encrypted and plaintext, in turn first"
