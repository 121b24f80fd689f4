# Shared set-up of the benchmarks that move a job between two shadowd on loopback
# (sourced, not run): a private directory, a fresh cluster key, shadowd A and B on
# free ports with their sockets ready, and the helpers every such bench uses.
#   source "$(dirname "$0")/lib.sh"; bench_two_shadowds NAME
# sets root, build, dir, pids (killed with -9 at exit, with what outlives them, then dir
# removed), pa, pb
# (the ports) and defines A (migctl at A), wait_for FILE TEXT, median VALUES..., end_job
# PID and end_restored LOG SEEN.
# MIG_BENCH_SHADOWD_ARGS: more shadowd options for both (bench/encryption_bench.sh
# sets --insecure-plaintext-links for its plaintext figures).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MIG_BUILD:-$root/build}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
A() { MIG_SHADOWD_SOCKET=$dir/a/sock "$build/migctl/migctl" "$@"; }
wait_for() { for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $2 in $1" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
# end_job PID: ends a job this bench started (SIGKILL), reaps it (no "Killed" line) and
# drops it from pids: a reaped PID may be someone else's by the time bench_end runs.
end_job() {
  local i
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for i in "${!pids[@]}"; do [ "${pids[$i]}" != "$1" ] || unset "pids[$i]"; done
}
# end_restored LOG SEEN: ends what the hop restored on B: the PIDs B's shadowd LOG says
# it runs after its first SEEN lines (those of this hop only; an older one's PID may be
# another process's now).
end_restored() {
  local p
  for p in $(tail -n +"$(($2 + 1))" "$1" | sed -n 's/.*runs here as PID \([0-9]*\)$/\1/p'); do
    kill -9 "$p" 2>/dev/null || true
  done
}

# At exit: the shadowds, and what outlives their SIGKILL: a job's link process on B
# (named by its socket in $dir), the job restored under it, and a lazy restore's page server.
bench_end() {
  local p
  kill -9 "${pids[@]}" 2>/dev/null || true
  for p in $(pgrep -f -- "$dir/"); do
    [ "$p" = $$ ] && continue
    pkill -9 -P "$p" 2>/dev/null || true  # none: the bench (set -e) must not fail here
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null
  rm -rf "$dir"
}

bench_two_shadowds() {  # bench_two_shadowds NAME
  dir=$(mktemp -d "/tmp/mig-$1.XXXXXX")
  pids=()
  trap bench_end EXIT
  head -c 32 /dev/urandom > "$dir/key"; chmod 600 "$dir/key"
  pa=$(port) pb=$(port)
  local extra s
  read -r -a extra <<<"${MIG_BENCH_SHADOWD_ARGS-}"
  "$build/shadow/shadowd" --listen 127.0.0.1:$pa --cluster-key "$dir/key" --socket "$dir/a/sock" --log "$dir/a.log" ${extra[@]+"${extra[@]}"} & pids+=($!)
  "$build/shadow/shadowd" --listen 127.0.0.1:$pb --cluster-key "$dir/key" --socket "$dir/b/sock" --log "$dir/b.log" ${extra[@]+"${extra[@]}"} & pids+=($!)
  for s in a b; do
    for _ in $(seq 1 100); do [ -S "$dir/$s/sock" ] && break; sleep 0.05; done
    [ -S "$dir/$s/sock" ] || { echo "bench: shadowd $s did not start; its log:" >&2; cat "$dir/$s.log" >&2; exit 1; }
  done
}
