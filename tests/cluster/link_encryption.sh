#!/bin/bash
# link_encryption.sh: nothing a job sends between hosts is readable on the wire
# (shadow/secure_stream.h). A job (jobs/marker_job.c) holds a random marker in its
# memory and, every step, appends "MARKER N" to a home file and sends it over a TCP
# connection to a server at home; it is migrated a -> b while tcpdump captures on the
# simulated bridge, and goes on writing from b until told to stop. The file and the
# server get every line exactly once, and the capture (image transfer, forwarded
# writes and sends) holds neither the marker nor either half of it.
# A peer without the cluster key (lib/keyless_peer.py) is dropped at the handshake,
# with one line in b's log. a restarted with --insecure-plaintext-links cannot move a
# job to b (encrypting): one line says why, and the job runs on at home. With b
# restarted the same way, the same job moves a -> b, and this time the capture holds
# the marker: the check above can fail.
#
# usage: link_encryption.sh OPTIONS (below); meson runs it as test
# 'migration-link-encryption' (suite cluster) with every path filled in and
# `--feature marker PATH` for jobs/marker_job.c.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features marker
command -v tcpdump >/dev/null || { echo "SKIP: no tcpdump (tests/lib/setup.sh installs it)"; exit 77; }
RECORDER=$(abspath "$CLUSTER_LIB_DIR/recorder.py")
KEYLESS=$(abspath "$CLUSTER_LIB_DIR/keyless_peer.py")
cluster_up a b
MARKER=mig-marker-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
HALF1=${MARKER:0:20} HALF2=${MARKER:20}

# capture_start NAME: tcpdump on every port of the cluster's switch, to T/NAME.pcap,
# running when this returns. capture_stop: SIGINT, and wait for it to write its end.
capture_start() {
  CAP_FILE=$T/$1.pcap
  : >"$T/$1.tcpdump"
  ip netns exec "mig-$C" tcpdump -i any -U -s 0 -w "$CAP_FILE" 2>"$T/$1.tcpdump" & CAP_PID=$!
  bg_pids+=("$CAP_PID")
  wait_until 10 grep -q "listening on" "$T/$1.tcpdump"
}
capture_stop() {
  kill -INT "$CAP_PID" 2>/dev/null
  wait_until 10 eval '! kill -0 "$CAP_PID" 2>/dev/null'
}
occurrences() { grep -aoF -- "$1" "$2" | wc -l; }   # occurrences FIXED FILE

# start_marker NAME PORT: its recorder on a, then the job; 0 once it printed STEP 3.
start_marker() {
  local pid
  pid=$(mh spawn "$C" a "$T/$1.recorder" -- python3 "$RECORDER" "$2" "$T/$1.received")
  bg_pids+=("$pid")
  wait_until 20 grep -q '^listening' "$T/$1.recorder" || { fail "$1: its TCP server on a did not start"; return 1; }
  start_job "$1" mig "${FEATURE[marker]}" @DIR@ "$2" "$MARKER" || return 1
  wait_step "$1" 3 30 || { fail "$1: no STEP 3 on a within 30 s"; detail "$(jfile "$1" err)" "its stderr"; return 1; }
}
# finish_marker NAME: once it has run 10 more steps where it is (it was at STEP
# HOP_STEP when it moved), tell it to stop; it
# must end with status 0, and the home file and the home server must each have every
# line "MARKER 1".."MARKER N" once, in order.
finish_marker() {
  local k n want
  k=$(( $(last_step "$1") + 10 ))
  wait_step "$1" "$k" 30 || fail "$1: no STEP $k within 30 s of the hop"
  touch "$(jfile "$1" data/stop)"
  if ! wait_job "$1" 30 || [[ $STATUS != 0 ]]; then
    fail "$1: did not end with status 0 after it was told to stop (status $STATUS)"
    detail "$(jfile "$1" err)" "its stderr"
    return 1
  fi
  n=$(awk '$1 == "done" { print $2 }' "$(jfile "$1" out)")
  want=$(seq 1 "${n:-0}" | sed "s/^/$MARKER /")
  wait_until 10 grep -q '^closed' "$T/$1.recorder"
  if [[ -n $n && $(cat "$(jfile "$1" data/marker.txt)") == "$want" && $(cat "$T/$1.received") == "$want" ]]; then
    ok "$1: $n lines, each once and in order, in the home file and at the home TCP server ($((n - HOP_STEP)) of them written from b)"
  else
    fail "$1: the home file or the home server lacks lines (done ${n:-?})"
    detail "$(jfile "$1" data/marker.txt)" "the home file"
    detail "$T/$1.received" "what the home server got"
    return 1
  fi
}

# --- encrypted: the capture holds no marker --------------------------------------------------
if start_marker secret 7301; then
  capture_start encrypted || fail "tcpdump did not start: $(cat "$T/encrypted.tcpdump")"
  hop secret a b
  HOP_STEP=$(last_step secret)
  finish_marker secret
  capture_stop
  size=$(stat -c %s "$CAP_FILE")
  full=$(occurrences "$MARKER" "$CAP_FILE") h1=$(occurrences "$HALF1" "$CAP_FILE") h2=$(occurrences "$HALF2" "$CAP_FILE")
  if (( size > 256 * 1024 && full == 0 && h1 == 0 && h2 == 0 )); then
    ok "the capture on the bridge ($((size / 1024)) KiB: image, forwarded writes and sends) holds no '$MARKER', nor '$HALF1' or '$HALF2'"
  else
    fail "the capture on the bridge ($((size / 1024)) KiB) holds '$MARKER' $full times, '$HALF1' $h1, '$HALF2' $h2 (want a capture > 256 KiB and none)"
  fi
fi

# --- a peer without the key ----------------------------------------------------------------
before=$(grep -c "does not hold this cluster's key" "$T/shadowd-b.log")
hx a timeout 20 python3 "$KEYLESS" "${ADDR[b]}" "$PORT" >"$T/keyless.out" 2>&1
line=$(grep "closed the connection from ${ADDR[a]}:.*does not hold this cluster's key" "$T/shadowd-b.log" | tail -n 1)
after=$(grep -c "does not hold this cluster's key" "$T/shadowd-b.log")
if grep -qx "closed by the server.*" "$T/keyless.out" && (( after == before + 1 )) && [[ -n $line ]]; then
  ok "a peer without the key is dropped at the handshake; b's log: ${line#* shadowd: }"
else
  fail "a peer without the key: $(tr '\n' ' ' <"$T/keyless.out"); lines about it in b's log: $((after - before)) (want 1)"
  shadowd_logs b
fi

# --- plaintext on one side only: refused ----------------------------------------------------
# restart_shadowd HOST: SIGTERM, then start it again with SHADOWD_ARGS; 0 once it listens.
restart_shadowd() {
  local h=$1 n
  n=$(grep -c "listening on" "$T/shadowd-$h.log")
  kill -TERM "${SD[$h]}"
  wait_until 20 eval '! kill -0 "${SD[$h]}" 2>/dev/null' || { fail "shadowd on $h did not stop on SIGTERM"; return 1; }
  start_shadowd "$h" "$T/key"
  wait_until 20 eval '(( $(grep -c "listening on" "$T/shadowd-$h.log") > n )) && shadowd_ready "$h"' ||
    { fail "shadowd on $h did not come back"; shadowd_logs "$h"; return 1; }
}
SHADOWD_ARGS=(--insecure-plaintext-links)
if restart_shadowd a && start_marker clear 7302; then
  if grep -q "WARNING: --insecure-plaintext-links" "$T/shadowd-a.log"; then
    ok "a restarted with --insecure-plaintext-links, and its log says so loudly"
  else
    fail "a's log does not warn about --insecure-plaintext-links"
  fi
  migrate clear b
  if one_line_reason && grep -q "insecure-plaintext-links" "$MIG_ERR" && wait_step clear $(( $(last_step clear) + 3 )) 20; then
    ok "a (plaintext) -> b (encrypted) refused, the job runs on at home: $(cat "$MIG_ERR")"
  else
    fail "a (plaintext) -> b (encrypted): migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
    shadowd_logs a b
  fi

  # --- both plaintext: the same check finds the marker ------------------------------------------
  if restart_shadowd b; then
    capture_start plaintext || fail "tcpdump did not start: $(cat "$T/plaintext.tcpdump")"
    hop clear a b
    HOP_STEP=$(last_step clear)
    finish_marker clear
    capture_stop
    full=$(occurrences "$MARKER" "$CAP_FILE")
    if (( full > 0 )); then
      ok "with --insecure-plaintext-links on both, the same check finds '$MARKER' $full times in the capture"
    else
      fail "with --insecure-plaintext-links on both, the capture ($(stat -c %s "$CAP_FILE") bytes) holds no marker: the check cannot fail"
    fi
  fi
fi
kill_job clear
kill_job secret

cluster_end
