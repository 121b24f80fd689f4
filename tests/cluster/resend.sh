#!/bin/bash
# resend.sh: a broken link home is resumed, and nothing runs twice or is lost
# (docs/design.md "Exactly-once after a broken link"; shadow/direct_link.h,
# shadow/job_calls.h, deputy/answered.h). Two jobs (jobs/marker_job.c: each 50 ms step
# appends "MARKER N" to a home file and sends the same line to a TCP server at home)
# are moved a -> b. Then b is cut off for --partition S seconds (default 20, long
# enough that TCP's retransmission backoff would keep a connection from coming back
# quickly; run it by hand with `--partition 60` for the issue's 60 s): first only a's
# packets to b are dropped (a blackhole route on a), so the calls b sends still run at
# home but their answers are lost; once b's link process has found its link broken,
# b's port on the simulated bridge goes down too.
#  - job "kept" (home's limit, shadowd's default 90 s): once b is back it runs on
#    (its resumed link named in b's log), the calls that ran at home but whose answers
#    were lost come again and are answered from their run (its deputy's MIG_LOG says
#    so), it is told to stop, ends with status 0 for its parent at home, and the home
#    file and the home server each have every line exactly once, in order. Before it
#    is told to stop, its link's TCP connection is reset from b (ss -K): it is resumed
#    again and the job runs on.
#  - job "lost" (MIG_LINK_LOST_AFTER=3 in its environment: its own limit, 3 s): while
#    b is still cut off, `migctl list` at a shows it "lost", a's log says so, and its
#    deputy exits with status 87, which its parent (a shell at home) gets; b kills its
#    process there. a's shadowd, restarted later, still lists it "lost" (kept in its
#    spool, shadow/lost_jobs.h).
#  - job "relayed", moved a -> c, where shadowd runs with --no-direct-link (its calls go
#    through a's shadowd): c is cut off with b, the same way; after the heal its
#    connection to a's shadowd is reset on c (ss -K), then a's shadowd is killed
#    (SIGKILL) and started again. Each time its link process's log says its link
#    through home's shadowd was resumed and the job runs on; it ends with status 0 and
#    every line is in the home file and at the home server exactly once.
#  - job "rlost", relayed through a's shadowd too, with MIG_LINK_LOST_AFTER=3: given up
#    at home as "lost" is (a's shadowd watches its login: shadow/relayed_link.cc), status
#    87 for its parent while c is still cut off, and its process killed on c.
#  - job "first" (python3, waiting in signal.pause() after one line), moved a -> b and
#    silent since: no link home made yet. When a's shadowd is killed for "relayed", it
#    is woken on b (SIGUSR1 from b) and prints its second line: the call waits for home
#    (b's log says so) instead of failing EIO, and once a's shadowd is back the line
#    reaches the home file exactly once and the parent gets status 0.
#
# usage: resend.sh [--partition S] OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-resend' (suite cluster) with `--feature marker PATH`.
PARTITION=20
args=()
while (( $# )); do
  if [[ $1 == --partition ]]; then
    [[ ${2-} =~ ^[0-9]+$ ]] || { echo "resend.sh: --partition needs a number of seconds" >&2; exit 2; }
    PARTITION=$2
    shift 2
  else
    args+=("$1")
    shift
  fi
done
set -- ${args[@]+"${args[@]}"}
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features marker
RECORDER=$(abspath "$CLUSTER_LIB_DIR/recorder.py")
LOST_AFTER=3
cluster_up a b c
SWITCH=mig-$C   # the simulated hosts' bridge (tests/harness/mig-hosts): a host's port is mig-pN
link_bc() { ip -n "$SWITCH" link set "mig-p${ADDR[b]##*.}" "$1" && ip -n "$SWITCH" link set "mig-p${ADDR[c]##*.}" "$1"; }
cut=0 blackhole=0
heal() {
  (( cut )) && link_bc up && cut=0
  (( blackhole )) && hx a ip route del blackhole "${ADDR[b]}/32" && hx a ip route del blackhole "${ADDR[c]}/32" && blackhole=0
  return 0
}
MIGLOG=/var/tmp/mig-resend-test.$$.log   # /var/tmp: every simulated host's (the shim on a and b, the deputy)
trap 'heal; rm -f "$MIGLOG"; cleanup' EXIT
# c's shadowd relays its guests' calls through their homes' shadowds.
kill -TERM "${SD[c]}"
wait_until 20 eval '! kill -0 "${SD[c]}" 2>/dev/null' || fail "c's shadowd did not stop on SIGTERM"
shadowd_args=(${SHADOWD_ARGS[@]+"${SHADOWD_ARGS[@]}"})
SHADOWD_ARGS+=(--no-direct-link)
start_shadowd c "$T/key"
SHADOWD_ARGS=(${shadowd_args[@]+"${shadowd_args[@]}"})
wait_until 20 eval '(( $(grep -c "listening on" "$T/shadowd-c.log") >= 2 ))' ||
  { fail "c's shadowd did not start again with --no-direct-link"; shadowd_logs c; cluster_end; }

# --- two jobs, each with its home file and home TCP server, moved a -> b ------------------
declare -A MARK RPORT=([kept]=7311 [lost]=7312 [relayed]=7313 [rlost]=7314)
for j in kept lost relayed rlost; do
  MARK[$j]=resend-$j-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
  rpid=$(mh spawn "$C" a "$T/$j.recorder" -- /usr/bin/python3 "$RECORDER" "${RPORT[$j]}" "$T/$j.received")
  bg_pids+=("$rpid")
  wait_until 20 grep -q '^listening' "$T/$j.recorder" || { fail "the TCP server of $j on a did not start"; cluster_end; }
done
start_job kept mig /usr/bin/env MIG_LOG="$MIGLOG" "${FEATURE[marker]}" @DIR@ "${RPORT[kept]}" "${MARK[kept]}" ||
  cluster_end
start_job lost mig /usr/bin/env MIG_LINK_LOST_AFTER=$LOST_AFTER "${FEATURE[marker]}" @DIR@ "${RPORT[lost]}" \
  "${MARK[lost]}" || cluster_end
start_job relayed mig "${FEATURE[marker]}" @DIR@ "${RPORT[relayed]}" "${MARK[relayed]}" || cluster_end
start_job rlost mig /usr/bin/env MIG_LINK_LOST_AFTER=$LOST_AFTER "${FEATURE[marker]}" @DIR@ "${RPORT[rlost]}" \
  "${MARK[rlost]}" || cluster_end
FIRST_MARK=resend-first-$$
start_job first mig /usr/bin/python3 -c 'import signal, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
print("waiting", flush=True)
signal.pause()
print("woken", flush=True)' "$FIRST_MARK" || cluster_end
declare -A TO=([kept]=b [lost]=b [relayed]=c [rlost]=c)
for j in kept lost relayed rlost; do
  wait_step "$j" 3 30 || { fail "$j: no STEP 3 on a within 30 s"; detail "$(jfile "$j" err)" "its stderr"; cluster_end; }
  hop "$j" a "${TO[$j]}" || cluster_end
done
for j in kept lost relayed rlost; do
  k=$(( $(last_step "$j") + 5 ))
  wait_step "$j" "$k" 30 || { fail "$j: no STEP $k at b within 30 s"; shadowd_logs b; cluster_end; }
done
# Moved before any call home: its link home is made only at its next call.
if wait_until 20 grep -qx waiting "$(jfile first out)" && migrate first b 40; then
  ok "first: a -> b while it waits in signal.pause(): $(migrated_line)"
else
  fail "first: no 'waiting' line, or migctl migrate a -> b exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
  cluster_end
fi
links=$(grep -c "mig-link: job [0-9]*: direct link to its deputy at ${ADDR[a]}:" "$T/shadowd-b.log")
(( links == 2 )) || fail "b's log names $links direct links to a's deputies (want 2)"
grep -q "mig-link: job [0-9]*: its calls go through home's shadowd" "$T/shadowd-c.log" ||
  fail "c's log does not say the relayed job's calls go through home's shadowd"

# --- b cut off ------------------------------------------------------------------------------
at_cut=$(last_step kept) relayed_at_cut=$(last_step relayed)
hx a ip route add blackhole "${ADDR[b]}/32" && hx a ip route add blackhole "${ADDR[c]}/32" && blackhole=1
cut_at=$SECONDS
broke() {
  (( $(grep -c "mig-link: job [0-9]*: its direct link home broke; resuming it" "$T/shadowd-b.log") >= 2 )) &&
    (( $(grep -c "mig-link: job [0-9]*: its link home through its shadowd broke; resuming it" "$T/shadowd-c.log") >= 2 ))
}
if wait_until 15 broke; then
  link_bc down && cut=1
  ok "b and c cut off from a at STEP $at_cut of kept: a's packets to them dropped, then (the four links found broken on b and c, $(( SECONDS - cut_at )) s later) their ports down; for $PARTITION s in all"
else
  fail "b's and c's logs do not say the four jobs' links broke within 15 s of the cut"
  shadowd_logs b
  shadowd_logs c
  link_bc down && cut=1
fi

# The lost jobs (direct and relayed): given up at home while b and c are still cut off.
row() { hm a list 2>/dev/null | awk -v p="${PID[$1]}" '$1 == p'; }
for j in lost rlost; do
  if wait_job "$j" $(( PARTITION - (SECONDS - cut_at) > 5 ? PARTITION - (SECONDS - cut_at) - 2 : 5 )) &&
    [[ $STATUS == 87 ]]; then
    ok "$j: with its link down past its ${LOST_AFTER} s limit its deputy exited and its parent at home got status 87 ($(( SECONDS - cut_at )) s after the cut)"
  else
    fail "$j: its parent at home did not get status 87 while ${TO[$j]} was cut off (status ${STATUS:-none})"
    shadowd_logs a
  fi
  r=$(row "$j")
  if [[ $r == *" lost "* ]] && grep -q "job [0-9]* (PID ${PID[$j]}) is lost: its link from" "$T/shadowd-a.log"; then
    ok "$j: migctl list at a shows it lost ($(echo "$r" | tr -s ' ')), and a's log says why"
  else
    fail "$j: migctl list at a shows '${r:-no row}' (want state lost), or a's log has no line for it"
    detail "$T/shadowd-a.log" "a's log"
  fi
done
(( cut )) || fail "b was healed before the lost jobs' checks ended (partition too short)"

# The rest of the partition: its length is the scenario's, not a moment to wait for.
left=$(( PARTITION - (SECONDS - cut_at) ))
(( left > 0 )) && sleep "$left"
at_heal=$(last_step kept)
heal
healed_at=$EPOCHREALTIME
ok "b back after $(( SECONDS - cut_at )) s; kept was at STEP $at_heal"
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# --- the kept job resumes, nothing twice, nothing lost ---------------------------------------
k=$(( at_heal + 5 ))
if wait_step kept $(( at_heal + 1 )) 60 && first=$(since "$healed_at") && wait_step kept "$k" 30; then
  ok "kept: runs on after the heal: STEP $(( at_heal + 1 )) ${first} s after b came back, STEP $k after it"
else
  fail "kept: no STEP $k within 60 s of the heal (last: STEP $(last_step kept))"
  detail "$(jfile kept err)" "its stderr"
  shadowd_logs b
fi
if grep -q "mig-link: job [0-9]*: its direct link home resumed after" "$T/shadowd-b.log"; then
  ok "kept: its link process resumed its direct link ($(grep -m1 -o "its direct link home resumed after [0-9.]* s" "$T/shadowd-b.log"))"
else
  fail "b's log does not say the direct link was resumed"
  shadowd_logs b
fi
again=$(grep -c "came again: answered from its run" "$MIGLOG")
if (( again > 0 )); then
  ok "kept: $again call(s) that ran at home before the cut, their answers lost, came again on the resumed link and were answered from their run ($(grep -m1 -o "call [0-9]* (thread [0-9]*, seq [0-9]*) came again" "$MIGLOG"))"
else
  fail "kept: its deputy's MIG_LOG shows no call answered again from its run (the answers of calls run during the cut were lost)"
  grep -a "mig-deputy\|deputy" "$MIGLOG" | tail -20 | sed 's/^/#   /'
fi
# --- its link's TCP connection reset on b: resumed again ------------------------------------
# resumed_again JOB COUNT HOST BEFORE AT WHAT: JOB's link resumed once more (COUNT, a function
# counting HOST's log lines, passed BEFORE) and JOB went 5 steps past AT.
resumed_again() {
  local job=$1 count=$2 host=$3 before=$4 at=$5
  if wait_until 30 eval '(( $('"$count"') > before ))' && wait_step "$job" $(( at + 5 )) 30; then
    ok "$job: $6 at STEP $at: its link resumed, STEP $(( at + 5 )) reached"
  else
    fail "$job: $6 at STEP $at: no resumption, or no STEP $(( at + 5 )) (last: STEP $(last_step "$job"))"
    detail "$(jfile "$job" err)" "its stderr"
    shadowd_logs "$host"
  fi
}
resumed() { grep -c "mig-link: job [0-9]*: its direct link home resumed after" "$T/shadowd-b.log"; }
before=$(resumed) at=$(last_step kept)
hx b ss -K dst "${ADDR[a]}" and not dport = ":$PORT" >"$T/ss.out" 2>&1
resumed_again kept resumed b "$before" "$at" "its link's TCP connection reset on b (ss -K)"
touch "$(jfile kept data/stop)"
if wait_job kept 30 && [[ $STATUS == 0 ]]; then
  ok "kept: told to stop, it ended and its parent at home got status 0"
else
  fail "kept: did not end with status 0 after it was told to stop (status ${STATUS:-none})"
  detail "$(jfile kept err)" "its stderr"
  shadowd_logs b
fi
if marker_lines_once kept "${MARK[kept]}"; then
  ok "kept: $MARKED lines, each exactly once and in order, in the home file and at the home TCP server ($((at_heal - at_cut)) steps done while b was cut off, $((MARKED - at_heal)) after)"
else
  fail "kept: the home file or the home server does not have lines 1..${MARKED:-?} exactly once"
fi

# --- the relayed job resumes too: after the cut, a reset, a's shadowd restarted -----------------
relayed_resumed() { grep -c "mig-link: job [0-9]*: its link home through its shadowd resumed after" "$T/shadowd-c.log"; }
k=$(( $(last_step relayed) + 5 ))
if wait_step relayed "$k" 60 && (( $(relayed_resumed) >= 1 )); then
  ok "relayed: runs on after the heal (STEP $k; STEP $relayed_at_cut at the cut), its link through a's shadowd resumed ($(grep -m1 -o "its link home through its shadowd resumed after [0-9.]* s" "$T/shadowd-c.log"))"
else
  fail "relayed: no STEP $k within 60 s of the heal (last: STEP $(last_step relayed)), or c's log does not say its link was resumed"
  detail "$(jfile relayed err)" "its stderr"
  shadowd_logs c
fi
# Its connection to a's shadowd reset on c, then a's shadowd killed and started again
# (it learns the job back from its deputy; the link process logs in to the new one).
before=$(relayed_resumed) at=$(last_step relayed)
hx c ss -K dst "${ADDR[a]}" and dport = ":$PORT" >"$T/ss.out" 2>&1
resumed_again relayed relayed_resumed c "$before" "$at" "its connection to a's shadowd reset on c (ss -K)"
before=$(relayed_resumed) at=$(last_step relayed)
kill -KILL "${SD[a]}"
wait_until 10 eval '! kill -0 "${SD[a]}" 2>/dev/null' || fail "a's shadowd did not die of SIGKILL"
# first's line goes home now, with no shadowd there: it waits for the one started next.
hx b kill -USR1 "$(others_on b | awk -v m="$FIRST_MARK" '$NF == m { print $1; exit }')"
if wait_until 20 grep -q "mig-link: job [0-9]*: its home cannot be reached before its first link" "$T/shadowd-b.log"; then
  ok "first: woken on b with a's shadowd down, its call home waits ($(grep -m1 -o "its home cannot be reached before its first link.*" "$T/shadowd-b.log"))"
else
  fail "first: woken on b with a's shadowd down, b's log does not say its call waits for home"
  detail "$(jfile first err)" "its stderr"
  shadowd_logs b
fi
start_shadowd a "$T/key"
wait_until 20 eval '(( $(grep -c "listening on" "$T/shadowd-a.log") >= 2 ))' || { fail "a's shadowd did not start again"; shadowd_logs a; }
resumed_again relayed relayed_resumed c "$before" "$at" "a's shadowd killed (SIGKILL) and started again"
touch "$(jfile relayed data/stop)"
if wait_job relayed 30 && [[ $STATUS == 0 ]] && marker_lines_once relayed "${MARK[relayed]}"; then
  ok "relayed: told to stop, it ended with status 0 for its parent at home; $MARKED lines, each exactly once and in order, in the home file and at the home TCP server"
else
  fail "relayed: status ${STATUS:-none} (want 0), or the home file or the home server does not have lines 1..${MARKED:-?} exactly once"
  detail "$(jfile relayed err)" "its stderr"
  shadowd_logs c
fi
if wait_job first 40 && [[ $STATUS == 0 && $(cat "$(jfile first out)") == $'waiting\nwoken' ]]; then
  ok "first: with a's shadowd back its line reached the home file once, and its parent got status 0"
else
  fail "first: status ${STATUS:-none} (want 0), or its output is not 'waiting', 'woken' once each: $(tr '\n' '|' <"$(jfile first out)")"
  detail "$(jfile first err)" "its stderr"
  shadowd_logs b
fi
# The lost job outlives a's shadowd too (kept in its spool, shadow/lost_jobs.h).
if wait_until 10 eval '[[ $(row lost) == *" lost "* ]]'; then
  ok "lost: a's restarted shadowd still lists it lost ($(row lost | tr -s ' ')): $(grep -m1 -o "[0-9]* lost job(s) listed again.*" "$T/shadowd-a.log")"
else
  fail "lost: a's restarted shadowd lists it as '$(row lost)' (want state lost)"
  shadowd_logs a
fi

# --- and the lost ones are gone from b and c -----------------------------------------------------
for j in lost rlost; do
  h=${TO[$j]}
  if wait_until 20 eval '! others_on "$h" | grep -qF -- "${MARK[$j]}"'; then
    ok "$j: no process of it left on $h ($(grep -c "the job is lost; killing it here" "$T/shadowd-$h.log") kill logged there)"
  else
    fail "$j: its process still runs on $h: $(others_on "$h" | grep -F -- "${MARK[$j]}")"
    shadowd_logs "$h"
  fi
done
kill_job kept
kill_job first
kill_job relayed

cluster_end
