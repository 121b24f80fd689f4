#!/bin/bash
# network_stream.sh: streams through sockets and pipes that stay on a, with the job
# migrated mid-stream. A TCP client (--streamer, jobs/stream_client.c) on a streams
# 200 MiB to a sink on d (lib/sink.py), migrated a -> b -> c mid-stream (at the
# "at MiB" lines it prints): the sink's SHA-256 is an undisturbed run's.
# `producer | cat | sha256sum` in one shell on a (lib/producer.py), coreutils' cat
# migrated a -> b mid-stream (once the producer says it is 50000 lines in): the
# consumer's output is exact, the pipeline exits 0 0 0.
#
# usage: network_stream.sh OPTIONS (below); meson runs it as test
# 'migration-network-stream' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b c d

# --- a TCP client streaming 200 MiB to a sink on d, migrated a -> b -> c mid-stream -----------
sink_on_d() {  # sink_on_d PORT OUT: a one-connection sink on d, listening when this returns
  hx d python3 "$CLUSTER_LIB_DIR/sink.py" "${ADDR[d]}" "$1" >"$2" 2>&1 & bg_pids+=($!)
  wait_until 20 grep -q '^listening' "$2"
}
if [[ -n $STREAMER ]]; then
  sink_on_d 7201 "$T/sink1.out"
  hx a "$STREAMER" 7201 200 "${ADDR[d]}" >"$T/stream1.out" 2>/dev/null
  sink_on_d 7202 "$T/sink2.out"
  if start_job streamer mig "$STREAMER" 7202 200 "${ADDR[d]}" && wait_until 30 grep -qx 'at MiB 20' "$(jfile streamer err)"; then
    migrate streamer b && ok "streamer: a -> b mid-stream: $(migrated_line)" ||
      { fail "streamer: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    n=$(grep -c '^at MiB' "$(jfile streamer err)")
    wait_until 60 grep -qx "at MiB $(( (n + 3) * 10 ))" "$(jfile streamer err)"
    migrate streamer c && ok "streamer: b -> c mid-stream: $(migrated_line)" ||
      { fail "streamer: b -> c: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b c; }
    wait_job streamer 90
    if [[ $STATUS == 0 ]] && grep -q "^sent 209715200 bytes; the sink says: 209715200 bytes sha256 " "$T/stream1.out" &&
       cmp -s "$T/stream1.out" "$(jfile streamer out)"; then
      ok "streamer: 200 MiB from a job migrated a -> b -> c mid-stream reached the sink on d; its SHA-256 is the undisturbed run's"
    else
      fail "streamer: status $STATUS"
      detail "$T/stream1.out" "the undisturbed run"
      detail "$(jfile streamer out)" "the migrated run"
      detail "$(jfile streamer err)" "its stderr"
      shadowd_logs a b c
    fi
  fi
  kill_job streamer
fi

# --- `producer | cat | sha256sum` in one shell on a, cat a -> b mid-stream ----------------------
# coreutils' cat under libmig goes to b mid-stream (its stdin and stdout are pipes to
# processes that stay on a). The producer says how far it is on stderr (PREFIX.progress).
PIPELINE='python3 "$1" 2>$2.progress | sh -c "echo \$\$ > $2.pid; exec env LD_PRELOAD=$3 cat -" | sha256sum > $2.out
echo "${PIPESTATUS[*]}" > $2.status'
PRODUCER=$CLUSTER_LIB_DIR/producer.py
hx a bash -c "$PIPELINE" pipeline "$PRODUCER" "$T/pipe1" ""
hx a bash -c "$PIPELINE" pipeline "$PRODUCER" "$T/pipe2" "$LIBMIG" & bg_pids+=($!)
wait_until 20 test -s "$T/pipe2.pid"
PID[pipecat]=$(cat "$T/pipe2.pid")
# mid-stream: the producer, about 3 s in all, is 50000 of its 300000 lines in
wait_until 20 grep -qx 'at line 50000' "$T/pipe2.progress" ||
  fail "pipeline: the producer did not get to line 50000 within 20 s: $(tail -n 1 "$T/pipe2.progress" 2>/dev/null)"
migrate pipecat b && ok "pipeline: cat a -> b mid-stream: $(migrated_line)" ||
  { fail "pipeline: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
wait_until 60 test -s "$T/pipe2.status"
if [[ $(cat "$T/pipe2.status" 2>/dev/null) == "0 0 0" && $(cat "$T/pipe1.status") == "0 0 0" ]] &&
   cmp -s "$T/pipe1.out" "$T/pipe2.out"; then
  ok "pipeline: producer | cat | sha256sum on a, cat migrated to b mid-stream: the consumer's output is exact, exit statuses 0 0 0"
else
  fail "pipeline: statuses '$(cat "$T/pipe2.status" 2>/dev/null)', undisturbed '$(cat "$T/pipe1.status" 2>/dev/null)'"
  detail "$T/pipe1.out" "undisturbed"
  detail "$T/pipe2.out" "migrated"
  detail "$T/pipe2.progress" "the producer's progress"
  shadowd_logs a b
fi

cluster_end
