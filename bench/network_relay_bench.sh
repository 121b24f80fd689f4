#!/bin/bash
# TCP through the relay, each figure beside its baseline measured in the same run
# (DESIGN.md, "Performance targets"). Two shadowd on loopback (A, B). A blocking TCP
# server (bench/net_peer serve) starts on A under libmig; a client (net_peer, native,
# on A) measures against it:
#   - the round trip of a 64-byte ping-pong message (median of COUNT);
#   - client -> server throughput: MIB MiB into a sink;
#   - server -> client throughput: MIB MiB out of a source.
# First with the server at home (baseline: real sockets, only the shim's interposition),
# then after migrating it A -> B, where its sockets stay at home with the deputy and
# every accept/write goes shim -> the job's link process on B (its relay,
# shadow/link_process.h) -> the job's direct link -> deputy
# (shadow/direct_link.h), and its reads are served on B from bytes pushed there
# (shadow/pushed_reads.h, on by default; B's shadowd has MIG_PUSH_READS=1); then after moving it on B -> D, whose link processes have
# MIG_PUSH_READS=0 (each read one call home, as before pushing: the old path, same
# run); then D -> C, where C runs with --no-direct-link: shim -> C's relay ->
# Cap'n Proto -> A's shadowd -> deputy, as before issue 13 (reads pushed).
# The client runs the same way both times; it connects to the same port on A.
# The server reads and writes with BUF-byte buffers (read(2) may return less).
# MIG_BENCH_STRACE=DIR: strace -f -tt of the deputy, the link process and the job over the
# pushed column's round trips, into DIR/{deputy,link,job}.trace (the path hop by hop; strace
# slows each system call, so read its order and its waits, not its wall times).
# usage: [MIG_BENCH_BUSY=N] [MIG_BENCH_CPU=1] [MIG_BENCH_STRACE=DIR] bench/network_relay_bench.sh [MIB] [COUNT] [BUF]    (defaults 256, 2000, 1048576)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIG_BUILD:-$root/build}
mib=${1:-256}
count=${2:-2000}
buf=${3:-1048576}
dir=$(mktemp -d /tmp/mig-netbench.XXXXXX)
pids=() job_pids=()  # daemons; the job (its deputy at home, its restored process on B)
cleanup() {
  # The job first, so that its link process, its parent there, can reap it (up to 1 s);
  # then the daemons (the link processes end with their jobs). Quietly: bash would report each killed background job.
  local p
  set +e  # a kill of a process already gone must not end the clean-up
  exec 2>/dev/null
  [ ${#job_pids[@]} -gt 0 ] && kill -9 "${job_pids[@]}" 2>/dev/null
  for p in "${job_pids[@]}"; do
    for _ in $(seq 1 20); do [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] || break; sleep 0.05; done
  done
  sleep 0.1
  [ ${#pids[@]} -gt 0 ] && kill -9 "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {  # fail MESSAGE [FILE...]: says why, shows the files, exits 1
  echo "network_relay_bench: $1" >&2; shift
  for f in "$@"; do [ -f "$f" ] && { echo "--- $f (last 20 lines)" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
for f in shadow/shadowd migctl/migctl shim/libmig.so bench/net_peer; do
  [ -x "$build/$f" ] || [ -f "$build/$f" ] || fail "$build/$f is missing: build first (ninja -C $build)"
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c 32 /dev/urandom > "$dir/key"; chmod 600 "$dir/key"
pa=$(port) pb=$(port) pc=$(port) pd=$(port)
# MIG_BENCH_SHADOWD_ARGS: more shadowd options (bench/encryption_bench.sh sets
# --insecure-plaintext-links for its plaintext figures).
read -r -a extra <<<"${MIG_BENCH_SHADOWD_ARGS-}"
"$build/shadow/shadowd" --listen 127.0.0.1:$pa --cluster-key "$dir/key" --socket "$dir/a/sock" --log "$dir/a.log" ${extra[@]+"${extra[@]}"} & pids+=($!)
MIG_PUSH_READS=1 "$build/shadow/shadowd" --listen 127.0.0.1:$pb --cluster-key "$dir/key" --socket "$dir/b/sock" --log "$dir/b.log" ${extra[@]+"${extra[@]}"} & pids+=($!)
"$build/shadow/shadowd" --listen 127.0.0.1:$pc --cluster-key "$dir/key" --socket "$dir/c/sock" --log "$dir/c.log" --no-direct-link ${extra[@]+"${extra[@]}"} & pids+=($!)
MIG_PUSH_READS=0 "$build/shadow/shadowd" --listen 127.0.0.1:$pd --cluster-key "$dir/key" --socket "$dir/d/sock" --log "$dir/d.log" ${extra[@]+"${extra[@]}"} & pids+=($!)
# MIG_BENCH_BUSY=N: N busy loops beside the whole run (the figures under load).
for _ in $(seq 1 "${MIG_BENCH_BUSY:-0}"); do (while :; do :; done) & pids+=($!); done
for s in a b c d; do
  for _ in $(seq 1 100); do [ -S "$dir/$s/sock" ] && break; sleep 0.05; done
  [ -S "$dir/$s/sock" ] || fail "shadowd $s did not start" "$dir/$s.log"
done
A() { MIG_SHADOWD_SOCKET=$dir/a/sock timeout 120 "$build/migctl/migctl" "$@"; }
wait_for() {  # wait_for FILE PATTERN: up to 30 s
  for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "timeout waiting for '$2' in $1" "$1" "$dir/server.err" "$dir/a.log" "$dir/b.log"
}

LD_PRELOAD=$build/shim/libmig.so "$build/bench/net_peer" serve "$buf" > "$dir/server.out" 2> "$dir/server.err" &
server=$!; job_pids+=($server)
wait_for "$dir/server.out" '^port '
sport=$(sed -n 's/^port //p' "$dir/server.out")

client() {  # client NAME MODE ARG: runs net_peer MODE against the server, prints its RESULT
  local served p
  served=$(grep -c '^served' "$dir/server.out" || true)
  timeout 100 "$build/bench/net_peer" "$2" "$sport" "$3" > "$dir/$1.out" 2> "$dir/$1.err" ||
    fail "client $1 ($2 $3) failed (exit $?)" "$dir/$1.out" "$dir/$1.err" "$dir/server.err" "$dir/a.log" "$dir/b.log"
  for p in "${job_pids[@]}"; do
    kill -0 "$p" 2>/dev/null || fail "the server (PID $p) died during $1" "$dir/server.out" "$dir/server.err" "$dir/a.log" "$dir/b.log"
  done
  # the server is done with this client before the next one starts (up to 30 s)
  for _ in $(seq 1 300); do [ "$(grep -c '^served' "$dir/server.out")" -gt "$served" ] && break; sleep 0.1; done
  [ "$(grep -c '^served' "$dir/server.out")" -gt "$served" ] ||
    fail "the server did not finish with client $1" "$dir/server.out" "$dir/server.err" "$dir/b.log"
  grep -q '^RESULT [0-9]' "$dir/$1.out" || fail "client $1 printed no RESULT" "$dir/$1.out" "$dir/$1.err"
  sed -n 's/^RESULT //p' "$dir/$1.out"
}
# MIG_BENCH_CPU=1: the CPU time and context switches of the deputy, the job's link
# process and the job itself (perf stat -p) over each client of the pushed column,
# printed per round trip and per MiB: what the wall times on a loaded VM hide.
cpu_pids=()
perf_start() {  # perf_start NAME: counts cpu_pids until perf_stop
  [ ${#cpu_pids[@]} -gt 0 ] || return 0
  for p in "${cpu_pids[@]}"; do
    perf stat -x, -e task-clock,context-switches -p "$p" -o "$dir/cpu-$1-$p" & perf_pids+=($!)
  done
  sleep 1  # perf attached (a perf stopped before it counted prints n/a)
}
perf_stop() {  # perf_stop NAME UNITS: prints "ms-of-CPU/switches" a unit for each of cpu_pids
  [ ${#cpu_pids[@]} -gt 0 ] || return 0
  kill -INT "${perf_pids[@]}"; wait "${perf_pids[@]}" 2>/dev/null || true; perf_pids=()
  local p out=""
  for p in "${cpu_pids[@]}"; do
    out+=$(awk -F, -v u="$2" '$3=="task-clock"{ms=$1} $3=="context-switches"{cs=$1}
      END{if (ms == "") printf " n/a"; else printf " %.3f/%.1f", ms/u, cs/u}' "$dir/cpu-$1-$p")
  done
  echo "$out"
}
perf_pids=()
strace_pids=() trace_pids=()
measure() {  # measure TAG: sets lat_TAG p10_TAG p90_TAG up_TAG down_TAG (and cpu_*_TAG)
  local l i names=(deputy link job)
  perf_start "ping-$1"
  for i in "${!trace_pids[@]}"; do
    strace -f -tt -o "$MIG_BENCH_STRACE/${names[$i]}.trace" -p "${trace_pids[$i]}" 2>/dev/null & strace_pids+=($!)
  done
  [ ${#strace_pids[@]} -eq 0 ] || sleep 1  # attached
  l=$(client "ping-$1" ping "$count"); read -r "lat_$1" "p10_$1" "p90_$1" <<<"$l"
  [ ${#strace_pids[@]} -eq 0 ] || { kill -INT "${strace_pids[@]}"; wait "${strace_pids[@]}" 2>/dev/null || true; strace_pids=(); }
  printf -v "cpu_ping_$1" '%s' "$(perf_stop "ping-$1" $((count + 100)))"
  perf_start "send-$1"
  l=$(client "send-$1" send "$mib"); read -r "up_$1" <<<"$l"
  printf -v "cpu_send_$1" '%s' "$(perf_stop "send-$1" "$mib")"
  perf_start "recv-$1"
  l=$(client "recv-$1" recv "$mib"); read -r "down_$1" <<<"$l"
  printf -v "cpu_recv_$1" '%s' "$(perf_stop "recv-$1" "$mib")"
}

# hop_to HOST PORT FROM: moves the server from FROM to HOST (logs $dir/HOST.log); its
# process there becomes the job's with its deputy (the one on FROM is gone with the hop).
hop_to() {
  local to=${1^^} from=${3^^} restored
  A migrate "$server" --to 127.0.0.1:$2 > "$dir/migrate-$1.out" 2>&1 ||
    fail "migrate $from -> $to failed" "$dir/migrate-$1.out" "$dir/a.log" "$dir/$3.log" "$dir/$1.log"
  grep -q "^migrated $server to 127.0.0.1:$2" "$dir/migrate-$1.out" ||
    fail "migrate $from -> $to: unexpected output" "$dir/migrate-$1.out"
  restored=$(sed -n 's/.* runs here as PID \([0-9]*\).*/\1/p' "$dir/$1.log" | tail -1)
  [ -n "$restored" ] || fail "no 'runs here as PID' in $to's log" "$dir/$1.log"
  job_pids=("$server" "$restored")
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
measure home
hop_to b $pb a
trio=("$server" "$(ps -o ppid= -p "${job_pids[1]}" | tr -d ' ')" "${job_pids[1]}")  # the deputy (the server's PID at home), the link process, the job
[ "${MIG_BENCH_CPU:-0}" != 1 ] || cpu_pids=("${trio[@]}")
[ -z "${MIG_BENCH_STRACE:-}" ] || { mkdir -p "$MIG_BENCH_STRACE"; trace_pids=("${trio[@]}"); }
measure away
cpu_pids=() trace_pids=()
# The pushed column is only what it says if B served the server's reads from bytes pushed there.
grep -q "reads of its home streams are pushed ahead" "$dir/b.log" || fail "B's log does not say the server's reads were pushed" "$dir/b.log"
hop_to d $pd b
measure called
hop_to c $pc d
measure relayed

ratio() { echo "$1 / $2" | bc -l; }
printf 'TCP on loopback, server (net_peer, blocking, %d-byte buffers) migrated A -> B (direct link, reads pushed), B -> D (direct link, MIG_PUSH_READS=0: reads called), D -> C (--no-direct-link), client native on A (MB = 10^6 bytes):\n' "$buf"
printf '  %-34s %12s %12s %12s %12s %8s\n' "" "at home" "pushed" "called" "via shadowds" "ratio"
us() { echo "$1 / 1000" | bc -l; }
for row in "64-byte round trip, median of $count:lat" "  10th percentile:p10" "  90th percentile:p90"; do
  v=${row##*:}; h=${v}_home a=${v}_away c=${v}_called r=${v}_relayed
  if [ "$v" = lat ]; then
    printf '  %-34s %9.1f us %9.1f us %9.1f us %9.1f us %7.1fx\n' "${row%:*}" "$(us "${!h}")" "$(us "${!a}")" "$(us "${!c}")" \
      "$(us "${!r}")" "$(ratio "${!a}" "${!h}")"
  else
    printf '  %-34s %9.1f us %9.1f us %9.1f us %9.1f us\n' "${row%:*}" "$(us "${!h}")" "$(us "${!a}")" "$(us "${!c}")" "$(us "${!r}")"
  fi
done
printf '  %-34s %7.1f MB/s %7.1f MB/s %7.1f MB/s %7.1f MB/s %7.1f%%\n' "client -> server, $mib MiB" "$up_home" "$up_away" \
  "$up_called" "$up_relayed" "$(echo "100 * $up_away / $up_home" | bc -l)"
printf '  %-34s %7.1f MB/s %7.1f MB/s %7.1f MB/s %7.1f MB/s %7.1f%%\n' "server -> client, $mib MiB" "$down_home" "$down_away" \
  "$down_called" "$down_relayed" "$(echo "100 * $down_away / $down_home" | bc -l)"
printf '  (ratio: pushed against at home; targets: round trip <= 3x, throughput >= 50 %%)\n'
if [ "${MIG_BENCH_CPU:-0}" = 1 ]; then
  printf '  pushed, ms of CPU/context switches (perf stat), deputy, link process, job:\n'
  printf '    a round trip:%s\n    a MiB client -> server:%s\n    a MiB server -> client:%s\n' \
    "$cpu_ping_away" "$cpu_send_away" "$cpu_recv_away"
fi
printf '  (at home: the same server before the migration, its sockets its own; A -> B %s)\n' \
  "$(sed -n 's/.*moved PID .*\(frozen [0-9.]* ms\).*/\1/p' "$dir/a.log" | head -1)"
printf '  (load average at the start: %s on %d CPUs; %d busy loops beside)\n' "$load" "$(nproc)" "${MIG_BENCH_BUSY:-0}"
