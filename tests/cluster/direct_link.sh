#!/bin/bash
# direct_link.sh: a migrated job's calls home go over a link of its own, straight from
# the relay on the host it runs on to its deputy at home (shadow/direct_link.h), not
# through the home shadowd; that relay is the job's link process on that host (mig-link,
# shadow/link_process.h), not that host's shadowd; that link is encrypted; and the job
# notices neither its home shadowd nor the shadowd of the host it runs on being killed
# with SIGKILL.
# The job (jobs/marker_job.c) appends "MARKER N" to a home file and sends the same line
# to a TCP server at home every step. It is moved a -> b; b's log must name the direct
# link (a's address, the deputy's port). A capture of that port on the simulated bridge
# must carry the job's traffic and hold neither the marker nor a half of it. Then a's
# shadowd is killed with SIGKILL: the job goes on writing from b; then b's shadowd is
# killed with SIGKILL too: the job goes on writing (its link process carries its calls).
# A SIGUSR1 sent to its PID at home now is held by its deputy. b's shadowd is started
# again and learns the job back from its link process, which announces it (home being
# down, on the local proof alone): `migctl list` on b shows it as a guest. a's shadowd
# is started again and learns the job back from its deputy, which registers again: the
# held SIGUSR1 reaches the job (it prints "SIGUSR1 1") and `migctl list` on a shows it
# at b. b's shadowd is killed and started again once more (home up: home checks the
# job's token); a second SIGUSR1 from home reaches the job; it is moved on b -> c by
# `migctl migrate` at home (b's list no longer has it), is told to stop, ends with
# status 0 for its parent at home (a shell), a's log names its end once, and the home
# file and the home server each have every line exactly once, in order.
#
# usage: direct_link.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-direct-link' (suite cluster) with `--feature marker PATH`.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features marker
command -v tcpdump >/dev/null || { echo "SKIP: no tcpdump (tests/lib/setup.sh installs it)"; exit 77; }
RECORDER=$(abspath "$CLUSTER_LIB_DIR/recorder.py")
cluster_up a b c
MARKER=mig-direct-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
HALF1=${MARKER:0:20} HALF2=${MARKER:20}
occurrences() { grep -aoF -- "$1" "$2" | wc -l; }

rpid=$(mh spawn "$C" a "$T/job.recorder" -- python3 "$RECORDER" 7303 "$T/job.received")
bg_pids+=("$rpid")
wait_until 20 grep -q '^listening' "$T/job.recorder" || { fail "the TCP server on a did not start"; cluster_end; }
start_job job mig "${FEATURE[marker]}" @DIR@ 7303 "$MARKER" || cluster_end
wait_step job 3 30 || { fail "no STEP 3 on a within 30 s"; detail "$(jfile job err)" "its stderr"; cluster_end; }
hop job a b || cluster_end

# --- the direct link is there, and where --------------------------------------------------
line=$(grep -m1 "mig-link: job [0-9]*: direct link to its deputy at" "$T/shadowd-b.log")
LINK_PORT=${line##*:}
if [[ $line == *"at ${ADDR[a]}:"* && $LINK_PORT =~ ^[0-9]+$ && $LINK_PORT != "$PORT" ]]; then
  ok "the job's link process on b reaches its deputy directly: ${line#* mig-link: }"
else
  fail "b's log does not name a direct link to a's deputy (line: '${line:-none}')"
  shadowd_logs a b
  kill_job job
  cluster_end
fi

# --- it is encrypted ------------------------------------------------------------------------
CAP=$T/direct.pcap
: >"$T/direct.tcpdump"
ip netns exec "mig-$C" tcpdump -i any -U -s 0 -w "$CAP" "tcp port $LINK_PORT" 2>"$T/direct.tcpdump" & cap_pid=$!
bg_pids+=("$cap_pid")
wait_until 10 grep -q "listening on" "$T/direct.tcpdump" || fail "tcpdump did not start: $(cat "$T/direct.tcpdump")"
k=$(( $(last_step job) + 20 ))
wait_step job "$k" 30 || fail "no STEP $k on b within 30 s"
kill -INT "$cap_pid" 2>/dev/null
wait_until 10 eval '! kill -0 "$cap_pid" 2>/dev/null'
size=$(stat -c %s "$CAP")
full=$(occurrences "$MARKER" "$CAP") h1=$(occurrences "$HALF1" "$CAP") h2=$(occurrences "$HALF2" "$CAP")
# 20 steps: 20 writes and 20 sends of a 60-byte line, each at least a record each way.
if (( size > 4096 && full == 0 && h1 == 0 && h2 == 0 )); then
  ok "a capture of the direct link ($size bytes over port $LINK_PORT in 20 steps) holds no '$MARKER', nor either half"
else
  fail "the capture of port $LINK_PORT ($size bytes, want > 4096) holds '$MARKER' $full times, '$HALF1' $h1, '$HALF2' $h2 (want none)"
fi

# --- a's shadowd killed: the job does not notice ------------------------------------------
kill -KILL "${SD[a]}"
wait_until 10 eval '! kill -0 "${SD[a]}" 2>/dev/null' || fail "a's shadowd did not die of SIGKILL"
at_kill=$(last_step job)
k=$(( at_kill + 20 ))
if wait_step job "$k" 30; then
  ok "with a's shadowd killed (SIGKILL) at STEP $at_kill, the job runs on at b: STEP $k"
else
  fail "with a's shadowd killed at STEP $at_kill, no STEP $k within 30 s (last: $(last_step job))"
  detail "$(jfile job err)" "its stderr"
fi
# --- b's shadowd killed too: the job's link process carries on -----------------------------
kill -KILL "${SD[b]}"
wait_until 10 eval '! kill -0 "${SD[b]}" 2>/dev/null' || fail "b's shadowd did not die of SIGKILL"
at_kill_b=$(last_step job)
k=$(( at_kill_b + 20 ))
if wait_step job "$k" 30; then
  ok "with b's shadowd killed (SIGKILL) at STEP $at_kill_b too, the job runs on at b: STEP $k"
else
  fail "with b's shadowd killed at STEP $at_kill_b, no STEP $k within 30 s (last: $(last_step job))"
  detail "$(jfile job err)" "its stderr"
  shadowd_logs b
fi

# --- a signal sent at home while both are away: the deputy holds it ------------------------
hx a kill -USR1 "${PID[job]}"
k=$(( $(last_step job) + 10 ))
wait_step job "$k" 30
if grep -q '^SIGUSR1' "$(jfile job out)"; then
  fail "a SIGUSR1 sent at home reached the job with a's shadowd down (it cannot have gone through it)"
else
  ok "a SIGUSR1 sent to PID ${PID[job]} at home with both shadowds down is held (not in the job's output by STEP $k)"
fi

# --- b restarted first, home still down: it learns its guest back on the local proof --------
listening() { grep -c "listening on" "$T/shadowd-$1.log"; }
learned_b() { grep -c "(PID ${PID[job]} of ${ADDR[a]}:$PORT): learned back from its link process" "$T/shadowd-b.log"; }
restarted() {  # restarted HOST N: its shadowd started again, the Nth time it listens
  start_shadowd "$1" "$T/key"
  if wait_until 20 eval '(( $(listening '"$1"') >= '"$2"' ))'; then
    ok "$1's shadowd started again"
  else
    fail "$1's shadowd did not start again"
    shadowd_logs "$1"
  fi
}
guest_on_b() {  # migctl list on b has the job as its guest
  hm b list >"$T/list.b" 2>&1
  local row
  row=$(awk -v p="${PID[job]}" '$1 == p' "$T/list.b")
  if [[ $row == *"${ADDR[a]}:$PORT"*"${ADDR[b]}:$PORT"*"running (migrated in)"* ]]; then
    ok "migctl list on b shows the job as its guest: $(tr -s ' ' <<<"$row")"
  else
    fail "migctl list on b has no guest row for PID ${PID[job]} of a"
    sed 's/^/#     /' "$T/list.b"
  fi
}
restarted b 2
if wait_until 30 eval '(( $(learned_b) >= 1 ))'; then
  line=$(grep -m1 "(PID ${PID[job]} of ${ADDR[a]}:$PORT): learned back from its link process" "$T/shadowd-b.log")
  JOB_ID=$(sed -n 's/.*shadowd: job \([0-9]*\) .*/\1/p' <<<"$line")
  ok "b's restarted shadowd learned its guest back from its link process, home down: ${line#* shadowd: }"
else
  fail "b's restarted shadowd did not learn the job (PID ${PID[job]}) back from its link process within 30 s"
  shadowd_logs b
fi
guest_on_b

# --- a restarted: it learns the job back from its deputy, and the held signal goes on -------
restarted a 2
if wait_until 30 grep -q "(PID ${PID[job]}): learned back from its deputy; it runs on ${ADDR[b]}:$PORT" "$T/shadowd-a.log"; then
  ok "a's restarted shadowd learned the job back from its deputy: $(grep -m1 -o "job [0-9]* (PID ${PID[job]}): learned back.*" "$T/shadowd-a.log")"
else
  fail "a's restarted shadowd did not learn the job (PID ${PID[job]}) back from its deputy within 30 s"
  shadowd_logs a
fi
if wait_until 20 grep -qx "SIGUSR1 1" "$(jfile job out)"; then
  ok "the held SIGUSR1 reached the job on b once a's shadowd was back (it printed 'SIGUSR1 1')"
else
  fail "the SIGUSR1 held while a's shadowd was down did not reach the job within 20 s of its return"
  shadowd_logs a b
fi
w=$(where job)
if [[ $(host_of "$w") == b ]]; then
  ok "migctl list on a shows PID ${PID[job]} at b"
else
  fail "migctl list on a shows PID ${PID[job]} at '${w:-no row}', not at b"
  sed 's/^/#     /' "$T/list.last"
fi

# --- b killed and restarted again, home up: home checks the token -----------------------------
kill -KILL "${SD[b]}"
wait_until 10 eval '! kill -0 "${SD[b]}" 2>/dev/null' || fail "b's shadowd did not die of SIGKILL"
restarted b 3
if wait_until 30 eval '(( $(learned_b) >= 2 ))'; then
  line=$(grep "(PID ${PID[job]} of ${ADDR[a]}:$PORT): learned back from its link process" "$T/shadowd-b.log" | tail -n 1)
  if [[ $line == *"not reached"* ]]; then
    fail "b learned its guest back again, but without home's word: ${line#* shadowd: }"
  else
    ok "b's shadowd, restarted again, learned its guest back with home's word on its token"
  fi
else
  fail "b's shadowd, restarted again, did not learn the job back within 30 s"
  shadowd_logs b
fi
guest_on_b

# --- a signal sent at home reaches it --------------------------------------------------------
hx a kill -USR1 "${PID[job]}"
if wait_until 20 grep -qx "SIGUSR1 2" "$(jfile job out)"; then
  ok "a SIGUSR1 sent to PID ${PID[job]} at home reached the job on b (it printed 'SIGUSR1 2')"
else
  fail "the SIGUSR1 sent to PID ${PID[job]} at home did not reach the job on b within 20 s"
  shadowd_logs a b
fi

# --- moved on b -> c from home -----------------------------------------------------------------
if hop job b c; then
  k=$(( $(last_step job) + 20 ))
  if wait_step job "$k" 30; then
    ok "the job runs on at c: STEP $k"
  else
    fail "no STEP $k on c within 30 s (last: $(last_step job))"
    shadowd_logs c
  fi
  if wait_until 10 eval '! hm b list 2>/dev/null | awk -v p="${PID[job]}" '"'"'$1 == p { f = 1 } END { exit !f }'"'"; then
    ok "migctl list on b no longer has the job"
  else
    fail "migctl list on b still has the job after it moved to c"
    hm b list | sed 's/^/#     /'
  fi
fi

touch "$(jfile job data/stop)"
if wait_job job 30 && [[ $STATUS == 0 ]]; then
  ok "told to stop, the job ended and its parent at home got status 0"
else
  fail "the job did not end with status 0 after it was told to stop (status ${STATUS:-none})"
  detail "$(jfile job err)" "its stderr"
  shadowd_logs a b c
fi
ends=$(grep -c "job ${JOB_ID:-none} (PID ${PID[job]}) ended" "$T/shadowd-a.log")
if [[ $ends == 1 ]]; then
  ok "a's log names the job's end once: $(grep -m1 -o "job ${JOB_ID:-none} (PID ${PID[job]}) ended.*" "$T/shadowd-a.log")"
else
  fail "a's log names the end of job ${JOB_ID:-?} (PID ${PID[job]}) $ends times (want 1)"
  shadowd_logs a
fi
if marker_lines_once job "$MARKER"; then
  ok "$MARKED lines, each once and in order, in the home file and at the home TCP server ($((MARKED - at_kill)) written after a's shadowd was killed, $((MARKED - at_kill_b)) after b's)"
else
  fail "the home file or the home server lacks lines (done ${MARKED:-?})"
fi
kill_job job
cluster_end
