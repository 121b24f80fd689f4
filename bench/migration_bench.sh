#!/bin/bash
# Live migration between two shadowd on loopback, each figure beside its baseline
# measured in the same run (DESIGN.md, "Performance targets"):
#   - freeze time and transfer rate of a stop-and-copy migration of a process holding
#     MIB MiB, beside a raw TCP stream of the same bytes over the same loopback;
#   - a 64-byte write(2) to stdout after the migration (forwarded home through the
#     deputy), beside the same write before it (local), and forwarded streaming of
#     1 MiB writes beside local streaming; to a file at home with write-behind and,
#     beside it, synchronous (MIG_SYNC_WRITES=1); each forwarded figure over the job's direct
#     link to its deputy (shadow/direct_link.h) and, beside it, through both shadowds
#     (a third shadowd C run with --no-direct-link, as before issue 13).
# usage: bench/migration_bench.sh [MIB [transfer|big]]   (default 1024; "transfer": the
#        first part only, freeze time and transfer rate beside raw TCP; "big": the 1 MiB
#        writes to a file at home only, forwarded between two local runs)
set -eu
mib=${1:-1024}
only=${2:-}
source "$(dirname "$0")/lib.sh"
bench_two_shadowds migbench
# C: the relayed path, as before the direct link (its figures beside B's).
pc=$(port)
read -r -a extra <<<"${MIG_BENCH_SHADOWD_ARGS-}"
"$build/shadow/shadowd" --listen 127.0.0.1:$pc --cluster-key "$dir/key" --socket "$dir/c/sock" --log "$dir/c.log" --no-direct-link ${extra[@]+"${extra[@]}"} & pids+=($!)
for _ in $(seq 1 100); do [ -S "$dir/c/sock" ] && break; sleep 0.05; done
[ -S "$dir/c/sock" ] || { echo "bench: shadowd c did not start; its log:" >&2; cat "$dir/c.log" >&2; exit 1; }

# The job restored on B outlives the SIGKILL of its deputy and of the shadowds (its link
# process keeps it): it is found by a variable in its environment and killed too, after
# part 1 and at exit.
tag="MIG_BENCH_RUN=$dir"
kill_tagged() {
  local e p
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -qxF "$tag" && kill -9 "$p" 2>/dev/null
  done
  return 0
}
trap 'kill_tagged; kill -9 "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

if [ "$only" != big ]; then
# 1. Freeze time and transfer rate, three hops (A->B, B->A, A->B), beside raw TCP.
env "$tag" LD_PRELOAD=$build/shim/libmig.so "$build/bench/hold_memory" "$mib" > "$dir/hold.out" &
job=$!; pids+=($job)
wait_for "$dir/hold.out" READY
# raw_tcp MIB [FILE]: MiB/s of a plain TCP stream of MIB MiB over loopback; with FILE, the
# receiver also writes every byte to FILE (as the destination's shadowd writes the image
# to its spool, on the same file system here), which it deletes after.
raw_tcp() {
  python3 - "$@" <<'PY'
import os, socket, sys, threading, time
n = int(float(sys.argv[1]) * 1048576)
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if len(sys.argv) > 2 else -1
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def sink():
    c, _ = srv.accept()
    into = bytearray(1 << 20)
    view = memoryview(into)
    while True:
        got = c.recv_into(into)
        if got == 0:
            break
        if out >= 0:
            os.write(out, view[:got])
t = threading.Thread(target=sink); t.start()
s = socket.create_connection(srv.getsockname())
buf = memoryview(b"x" * (1 << 20))  # slices of it are views: no copy besides the kernel's
start = time.monotonic()
left = n
while left > 0:
    s.sendall(buf[:min(left, len(buf))]); left -= min(left, len(buf))
s.close(); t.join()
print(n / 1048576 / (time.monotonic() - start))
if out >= 0:
    os.close(out); os.unlink(sys.argv[2])
PY
}

# cpu_s PID [children]: seconds of CPU PID has used (with "children": and its reaped
# children's, where the sender, `migctl send`, is counted once it exits).
cpu_s() {
  awk -v c="${2:-}" '{ t = $14 + $15; if (c != "") t += $16 + $17; print t / 100 }' "/proc/$1/stat"
}
freezes=() rates=() raws=() files=() sends=() recvs=()
for to in $pb $pa $pb; do
  # The sender's shadowd (with its `migctl send`) and the receiver's own CPU: what each
  # side of the transfer costs (the receiver's restart runs in its children, not counted).
  if [ "$to" = "$pb" ]; then snd=${pids[0]} rcv=${pids[1]}; else snd=${pids[1]} rcv=${pids[0]}; fi
  s0=$(cpu_s "$snd" children) r0=$(cpu_s "$rcv")
  # --stop-and-copy: the figures are of the whole image sent frozen (pre-copy, the
  # default, reports only its last round's time beside every byte of every round).
  line=$(A migrate "$job" --to 127.0.0.1:$to --stop-and-copy | grep -m1 "^migrated")
  sends+=("$(echo "$(cpu_s "$snd" children) - $s0" | bc -l)") recvs+=("$(echo "$(cpu_s "$rcv") - $r0" | bc -l)")
  # "... frozen F ms (image M MiB, captured and sent in T ms, restored in R ms)"
  read -r f m t r <<<"$(sed -E 's/.*frozen ([0-9.]+) ms \(image ([0-9.]+) MiB, captured and sent in ([0-9.]+) ms, restored in ([0-9.]+) ms.*/\1 \2 \3 \4/' <<<"$line")"
  freezes+=("$f")
  rates+=("$(echo "$m / ($t / 1000)" | bc -l)")
  raws+=("$(raw_tcp "$m")")
  files+=("$(raw_tcp "$m" "$dir/raw.bin")")
done
img=$m
printf 'process of %d MiB (image %.1f MiB), stop-and-copy, three hops on loopback:\n' "$mib" "$img"
printf '  freeze time          : %8.1f ms   (median of %s)\n' "$(median "${freezes[@]}")" "${freezes[*]}"
printf '  image transfer       : %8.1f MiB/s (median of %s; capture + RPC stream + spool write)\n' "$(median "${rates[@]}")" "$(printf '%.0f ' "${rates[@]}")"
printf '  raw TCP, same bytes  : %8.1f MiB/s (median of %s; python sendall and recv_into, 1 MiB buffers)\n' "$(median "${raws[@]}")" "$(printf '%.0f ' "${raws[@]}")"
printf '  ratio                : %8.1f %%     (target >= 80 %%)\n' "$(echo "100 * $(median "${rates[@]}") / $(median "${raws[@]}")" | bc -l)"
printf '  raw TCP into a file  : %8.1f MiB/s (median of %s; the receiver writes each byte to a new file, as the spool is)\n' \
  "$(median "${files[@]}")" "$(printf '%.0f ' "${files[@]}")"
printf '  ratio to that        : %8.1f %%\n' "$(echo "100 * $(median "${rates[@]}") / $(median "${files[@]}")" | bc -l)"
printf '  CPU of each hop      : sender %s s, receiver %s s (shadowd with its migctl send; the receiving shadowd alone)\n' \
  "$(printf '%.2f ' "${sends[@]}" | sed 's/ $//')" "$(printf '%.2f ' "${recvs[@]}" | sed 's/ $//')"
kill -9 "$job" 2>/dev/null || true
kill_tagged
[ "$only" = transfer ] && exit 0
fi

# 2. write(2) to stdout: local (before migrating) and forwarded (after), to a file and
# to a pipe at home. Writes to a pipe are pipelined once forwarded: the write returns
# before home has run it, so for the pipe the end-to-end rate (from the first write
# until the reader at home has every byte) is measured too.
now() { date +%s.%N; }
io() {  # io NAME COUNT SIZE MIGRATE SINK(file|pipe) [VAR=VALUE]: one run; prints "ns MB/s end-to-end-MB/s"
        # MIGRATE: 0 stays home, 1 moves to B (direct link), 2 to C (relayed); VAR=VALUE: in
        # the job's environment (MIG_SYNC_WRITES=1: writes to home files wait, as before
        # write-behind)
  local name=$1 count=$2 size=$3 migrate=$4 sink=$5 setting=${6:-} p runner start
  rm -f "$dir/go"
  if [ "$sink" = pipe ]; then
    ( env ${setting:+"$setting"} LD_PRELOAD=$build/shim/libmig.so "$build/bench/forwarded_io" "$dir/go" "$count" "$size" 2> "$dir/$name.err" |
        cat > "$dir/$name.sink" ) &
  else
    env ${setting:+"$setting"} LD_PRELOAD=$build/shim/libmig.so "$build/bench/forwarded_io" "$dir/go" "$count" "$size" > "$dir/$name.sink" 2> "$dir/$name.err" &
  fi
  runner=$!; pids+=($runner)
  wait_for "$dir/$name.err" READY
  p=$(sed -n 's/^READY //p' "$dir/$name.err"); pids+=($p)
  if [ "$migrate" != 0 ]; then
    local to=$pb; [ "$migrate" = 2 ] && to=$pc
    A migrate "$p" --to 127.0.0.1:$to > "$dir/$name.mig" || { cat "$dir/$name.mig" >&2; exit 1; }
  fi
  start=$(now)
  touch "$dir/go"
  wait "$runner" 2>/dev/null || true
  local end; end=$(now)
  [ "$(stat -c %s "$dir/$name.sink")" -eq $((count * size)) ] || { echo "$name: the sink got $(stat -c %s "$dir/$name.sink") bytes, not $((count * size))" >&2; exit 1; }
  echo "$(sed -n 's/^RESULT //p' "$dir/$name.err") $(echo "$count * $size / ($end - $start) / 1000000" | bc -l)"
}
if [ "$only" = big ]; then
  read -r _ local_mbs local_big_e2e <<<"$(io big-local 1000 1048576 0 file)"
  read -r _ fwd_mbs fwd_big_e2e <<<"$(io big-fwd 500 1048576 1 file)"
  read -r _ local2_mbs local2_big_e2e <<<"$(io big-local2 1000 1048576 0 file)"
  printf '1 MiB writes to stdout (a file at home):\n'
  printf '  local, before          : %8.1f MB/s   end to end %6.1f MB/s\n' "$local_mbs" "$local_big_e2e"
  printf '  forwarded, direct link : %8.1f MB/s   end to end %6.1f MB/s   (%.0f %% of the two locals; target >= 50 %%)\n' \
    "$fwd_mbs" "$fwd_big_e2e" "$(echo "200 * $fwd_big_e2e / ($local_big_e2e + $local2_big_e2e)" | bc -l)"
  printf '  local, after           : %8.1f MB/s   end to end %6.1f MB/s\n' "$local2_mbs" "$local2_big_e2e"
  exit 0
fi
read -r local_ns _ local_e2e <<<"$(io small-local 200000 64 0 file)"
read -r fwd_ns _ fwd_e2e <<<"$(io small-fwd 20000 64 1 file)"
read -r sync_ns _ sync_e2e <<<"$(io small-sync 20000 64 1 file MIG_SYNC_WRITES=1)"
read -r rel_ns _ rel_e2e <<<"$(io small-rel 20000 64 2 file)"
read -r _ local_mbs local_big_e2e <<<"$(io big-local 2000 1048576 0 file)"
read -r _ fwd_mbs fwd_big_e2e <<<"$(io big-fwd 500 1048576 1 file)"
read -r _ sync_mbs sync_big_e2e <<<"$(io big-sync 500 1048576 1 file MIG_SYNC_WRITES=1)"
read -r _ rel_mbs rel_big_e2e <<<"$(io big-rel 500 1048576 2 file)"
read -r plocal_ns _ plocal_e2e <<<"$(io small-local-pipe 200000 64 0 pipe)"
read -r pfwd_ns _ pfwd_e2e <<<"$(io small-fwd-pipe 200000 64 1 pipe)"
read -r prel_ns _ prel_e2e <<<"$(io small-rel-pipe 200000 64 2 pipe)"
read -r _ _ pbig_local_e2e <<<"$(io big-local-pipe 2000 1048576 0 pipe)"
read -r _ _ pbig_fwd_e2e <<<"$(io big-fwd-pipe 1000 1048576 1 pipe)"
read -r _ _ pbig_rel_e2e <<<"$(io big-rel-pipe 1000 1048576 2 pipe)"
printf '64-byte write to stdout (a file at home; behind once forwarded, unless MIG_SYNC_WRITES=1):\n'
printf '  local, before migrating : %8.0f ns   end to end %6.1f MB/s\n' "$local_ns" "$local_e2e"
printf '  forwarded, direct link  : %8.0f ns   end to end %6.1f MB/s   (target <= 30000 ns)\n' "$fwd_ns" "$fwd_e2e"
printf '  the same, synchronous   : %8.0f ns   end to end %6.1f MB/s   (MIG_SYNC_WRITES=1, as before write-behind)\n' "$sync_ns" "$sync_e2e"
printf '  forwarded, via shadowds : %8.0f ns   end to end %6.1f MB/s\n' "$rel_ns" "$rel_e2e"
printf '1 MiB writes to stdout (a file at home):\n'
printf '  local, before migrating : %8.1f MB/s   end to end %6.1f MB/s\n' "$local_mbs" "$local_big_e2e"
printf '  forwarded, direct link  : %8.1f MB/s   end to end %6.1f MB/s   (target >= 50 %% of local)\n' "$fwd_mbs" "$fwd_big_e2e"
printf '  the same, synchronous   : %8.1f MB/s   end to end %6.1f MB/s   (MIG_SYNC_WRITES=1)\n' "$sync_mbs" "$sync_big_e2e"
printf '  forwarded, via shadowds : %8.1f MB/s   end to end %6.1f MB/s\n' "$rel_mbs" "$rel_big_e2e"
printf '64-byte write to stdout (a pipe at home; pipelined once forwarded):\n'
printf '  local, before migrating : %8.0f ns   end to end %6.1f MB/s\n' "$plocal_ns" "$plocal_e2e"
printf '  forwarded, direct link  : %8.0f ns   end to end %6.1f MB/s   (target <= 30000 ns)\n' "$pfwd_ns" "$pfwd_e2e"
printf '  forwarded, via shadowds : %8.0f ns   end to end %6.1f MB/s\n' "$prel_ns" "$prel_e2e"
printf '1 MiB writes to stdout (a pipe at home), end to end:\n'
printf '  local, before migrating : %8.1f MB/s\n' "$pbig_local_e2e"
printf '  forwarded, direct link  : %8.1f MB/s   (target >= 50 %% of local)\n' "$pbig_fwd_e2e"
printf '  forwarded, via shadowds : %8.1f MB/s\n' "$pbig_rel_e2e"
