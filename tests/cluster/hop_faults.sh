#!/bin/bash
# hop_faults.sh: exactly one live copy of a job, whichever side of a hop crashes at
# whichever step (the hop's two-phase commit, docs/design.md "One hop"). shadowd's
# fault switch MIG_FAULT=hop:STEP:crash (shadow/hop_fault.h) kills, with SIGKILL, the
# process that runs STEP: a sender step kills the hop's sender on a (the process that
# holds the frozen job), a receiver step kills b's shadowd.
#
# Before the commit (every step up to send-prepared), for each step in turn, one
# counter job is migrated a -> b under the crash: migctl migrate exits non-zero with
# one line saying the job stays where it was; the job is still the program on a and
# prints new STEP lines; nothing of it runs on b and b's spool holds no image (at
# once, or after the transfer timeout, or once b's crashed shadowd is started again);
# a's spool holds none either.
# The deputy's start from home (shadow/deputy_start.h): deputy-start:crash (its trial
# start before the freeze killed) and deputy-exec:error (the job's exec of its deputy
# at the commit fails): one line, the job runs on at a, nothing of it on b.
# deputy-exec:crash (the job's process killed as it execs its deputy), a third job:
# home ends it on b, one line saying so (exit 4), its parent gets 137.
# At recv-commit (b's shadowd dies between the commit and the release), a second job
# is lost: migctl migrate exits 4 with one line saying b did not confirm that it
# runs, no copy runs anywhere (the gap docs/design.md names), and its parent gets
# status 137 once b, started again, says it has no such job.
# After the commit: send-committed (the sender dies having given the job up) and
# recv-released:error (b released the job but failed to say so: a crash there would
# also end the relay its calls go through, which is the direct link's part, issue 13).
# In both the sender's shadowd commits the hop itself: migctl migrate exits 0 and says
# so, the job runs at the destination only (a's PID is the deputy), the source's spool
# is empty and the destination's holds the running job's image.
# A hop home (c -> a) whose restart fails at home-restart:error (a's check of the
# deputy's restart, before the commit), then ones that fail after the commit (c kept
# the job frozen, the deputy comes back) at each step of the deputy's restart:
# home-restore (before it changes the process), home-files (the job's fds made),
# home-exec (the restorer's exec) and home-restorer (inside the restorer): each one
# line, the job runs on at c. A python3 job with a child born on b fails its hop home
# at home-restorer too: it runs on at b with its child, which never ran at a (no CHILD
# line printed twice, no process or zombie of it at a), and later comes home with it,
# its output the undisturbed run's. Then hops home whose commit gets no answer (a's shadowd
# killed at it, and started again): at recv-commit c asks a again and resumes the job;
# with a's shadowd started again without a fault the job comes home; moved out again,
# at recv-become (the deputy went to become the job) c hears that home took it and
# ends its copy. The job finishes with the output and status of an
# undisturbed run (its parent at home gets its status).
# Last (while the counter jobs finish), a python3 tree (a child forked at home, which
# starts a child of its own on b) moved a -> b fails its hop home in the root's
# restorer, then in its restart: all or none, the three run on at b, nothing at a; then
# the tree comes home whole with the child born on b, exact.
#
# usage: hop_faults.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-hop-faults' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features counter
TRANSFER_TIMEOUT=4
SHADOWD_ARGS=(--transfer-timeout "$TRANSFER_TIMEOUT")
cluster_up a b c

# restart_shadowd HOST [FAULT]: HOST's shadowd killed (if it runs) and started again,
# with MIG_FAULT=FAULT when given; its earlier log kept beside the new one.
NSTART=0
restart_shadowd() {
  local h=$1 fault=${2-}
  NSTART=$((NSTART + 1))
  if [[ -n ${SD[$h]-} ]] && kill -0 "${SD[$h]}" 2>/dev/null; then
    kill -KILL "${SD[$h]}"
    wait_until 10 eval '! kill -0 "${SD[$h]}" 2>/dev/null'
  fi
  [[ -f $T/shadowd-$h.log ]] && mv "$T/shadowd-$h.log" "$T/shadowd-$h.$NSTART.log"
  SD[$h]=$(mh spawn "$C" "$h" "$T/shadowd-$h.log" -- env ${fault:+MIG_FAULT=$fault} MIG_DEPUTY="$DEPUTY" \
    MIG_MIGCTL="$MIGCTL" "$SHADOWD" --listen "${ADDR[$h]}:$PORT" --cluster-key "$T/key" --nodes "$T/nodes" \
    "${SHADOWD_ARGS[@]}")
  if ! wait_until 20 shadowd_ready "$h"; then
    fail "shadowd on $h did not come back${fault:+ with MIG_FAULT=$fault}"
    shadowd_logs "$h"
    return 1
  fi
}
# set_fault HOST [FAULT]: HOST's shadowd runs with MIG_FAULT=FAULT (none when not
# given), restarted only when it does not already (or is gone).
declare -A FAULT_OF
set_fault() {
  local h=$1 fault=${2-}
  if [[ ${FAULT_OF[$h]-} == "$fault" ]] && kill -0 "${SD[$h]}" 2>/dev/null; then return 0; fi
  FAULT_OF[$h]=$fault
  restart_shadowd "$h" "$fault"
}
images_on() { compgen -G "$(hp "$1" "$SPOOL")/job-*.img" >/dev/null; }
n_images_on() { compgen -G "$(hp "$1" "$SPOOL")/job-*.img" | wc -l; }
# The job's processes on a host (its restore or the restored job): none but init and shadowd.
job_on() { [[ -n $(others_on "$1") ]]; }

# failed_hop WHAT HOST [WHY]: the hop migctl migrate just tried failed and the job stays
# at HOST: one line on migctl's stderr saying so (matching WHY when given), and the job
# runs on at HOST, printing new STEP lines: listed there, and the program on a when HOST
# is a, else a's PID its deputy and a process of it on HOST.
failed_hop() {
  local what=$1 at=$2 why=${3-} home=no want=no
  if one_line_reason && { [[ -z $why ]] || grep -q "$why" "$MIG_ERR"; }; then
    ok "$what: migctl migrate exited $MIG_RC: $(cat "$MIG_ERR")"
  else
    fail "$what: migctl migrate exited $MIG_RC without the one line saying the job stays where it was${why:+ ($why)}"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a b c
  fi
  local k=$(( $(last_step job) + 2 ))
  job_at_home job "${FEATURE[counter]}" && home=yes
  [[ $at == a ]] && want=yes
  if [[ $home == "$want" && $(host_of "$(where job)") == "$at" ]] && wait_step job "$k" 20 &&
     { [[ $at == a ]] || job_on "$at"; }; then
    ok "$what: the job runs on at $at (listed there, the program on a: $home, STEP $k printed)"
  else
    fail "$what: the job does not run on at $at: listed at '$(where job)', the program on a: $home, last STEP $(last_step job)"
    detail "$(jfile job err)" "its stderr"
    shadowd_logs a b c
  fi
}

STEPS=600   # 60 s: the jobs outlive every fault below (they take about 45 s, 55 s at load 30)
start_job ref plain "${FEATURE[counter]}" "$STEPS"
start_job lost mig "${FEATURE[counter]}" "$STEPS"
start_job died mig "${FEATURE[counter]}" "$STEPS"
if ! start_job job mig "${FEATURE[counter]}" "$STEPS" || ! wait_step job 3 30; then
  fail "the counter job did not get to STEP 3 on a"
  cluster_end
fi

# --- before the commit: the job stays on a ----------------------------------------------------
for step in send-login recv-ticket recv-image send-frozen recv-done recv-prepared send-prepared; do
  side=a other=b
  [[ $step == recv-* ]] && side=b other=a
  set_fault "$other" && set_fault "$side" "hop:$step:crash" || continue
  k=$(( $(last_step job) + 2 ))
  wait_step job "$k" 20
  migrate job b 60
  what="crash at $step ($( [[ $side == a ]] && echo "a's sender" || echo "b's shadowd") killed)"
  failed_hop "$what" a
  # b forgets the hop by itself (the sink dropped, or no commit within the transfer
  # timeout); a crashed shadowd's partial image goes when it starts again.
  [[ $side == b ]] && set_fault b
  if wait_until $((TRANSFER_TIMEOUT + 10)) eval '! images_on b && ! job_on b'; then
    ok "$what: nothing of the job on b: spool '$(spool_of b)', no process of it"
  else
    fail "$what: b still has the job: spool '$(spool_of b)'; processes: $(others_on b | tr '\n' ';')"
    shadowd_logs b
  fi
  if images_on a; then fail "$what: a's spool holds an image: $(spool_of a)"; fi
done

# --- the deputy's start (shadow/deputy_start.h) ------------------------------------------------
# deputy-start: a's deputy cannot start (its trial start killed before it reaches
# shadowd): refused before the freeze. deputy-exec:error: the job's exec of its deputy
# at the commit fails (the program is not there): the hop is aborted and the job goes
# on at home. Either way one line, the job runs on at a, nothing of it on b.
for fault in deputy-start:crash deputy-exec:error; do
  step=${fault%%:*}
  set_fault b && set_fault a "hop:$fault" || continue
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job b 60
  what="${fault/:/ }"
  failed_hop "$what" a "$( [[ $step == deputy-start ]] && echo "deputy would not start here" || echo "the deputy could not start")"
  if wait_until $((TRANSFER_TIMEOUT + 10)) eval '! images_on b && ! job_on b' && ! images_on a; then
    ok "$what: nothing of the job on b (spool '$(spool_of b)', no process of it), none in a's spool"
  else
    fail "$what: b: spool '$(spool_of b)', processes: $(others_on b | tr '\n' ';'); a's spool: '$(spool_of a)'"
    shadowd_logs a b
  fi
done
# deputy-exec:crash: the job's process is killed as it execs its deputy (as the OOM
# killer might), once the exec is under way: the hop goes through, and home's shadowd,
# which watches that process, ends the job on b (nobody at home would serve it);
# migctl says so in one line (exit 4), and the parent gets that end (137).
if set_fault b && set_fault a "hop:deputy-exec:crash"; then
  wait_step died $(( $(last_step died) + 2 )) 20
  migrate died b 60
  what="deputy-exec crash (the job's process killed as it became its deputy)"
  if (( MIG_RC == 4 )) && [[ $(wc -l < "$MIG_ERR") == 1 ]] && grep -q "ended as it became its deputy" "$MIG_ERR"; then
    ok "$what: migctl migrate exited 4: $(cat "$MIG_ERR")"
  else
    fail "$what: migctl migrate exited $MIG_RC without the one line saying the job ended as its deputy started"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a b
  fi
  # (Its link process on b may stay a while, telling its end home: not the job.)
  if wait_job died 20 && [[ $STATUS == 137 ]] &&
     wait_until $((TRANSFER_TIMEOUT + 10)) eval '[[ -z $(others_on b | awk '"'"'$2 !~ /mig-link$/'"'"') ]]' &&
     [[ -z $(where died) ]]; then
    ok "$what: its parent got 137, the job ended on b, not listed"
  else
    fail "$what: parent's status '$STATUS' (want 137), b's processes: $(others_on b | tr '\n' ';'), listed at '$(where died)'"
    kill_job died
  fi
fi

# --- the gap that is left: b's shadowd dies between the commit and the release -------------
# The job is given up on a and never released on b: it is lost (docs/design.md, "One
# hop"). What must hold: migctl says so (exit 4, one line), nothing of it runs or is
# left on b, a has only the deputy, and once b says it has no such job the deputy
# ends as if the job was killed, so the parent's wait returns (137).
if set_fault a && set_fault b "hop:recv-commit:crash"; then
  wait_step lost $(( $(last_step lost) + 2 )) 20
  migrate lost b 60
  if (( MIG_RC == 4 )) && [[ $(wc -l < "$MIG_ERR") == 1 ]] && grep -q "did not confirm that it runs" "$MIG_ERR"; then
    ok "crash at recv-commit (b's shadowd killed): migctl migrate exited 4: $(cat "$MIG_ERR")"
  else
    fail "crash at recv-commit (b's shadowd killed): migctl migrate exited $MIG_RC without the one line saying b did not confirm"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a b
  fi
  set_fault b
  if wait_until 20 eval '! images_on b && ! job_on b' && ! job_at_home lost "${FEATURE[counter]}"; then
    ok "crash at recv-commit: no copy runs (b: spool '$(spool_of b)', no process; a: the deputy only), the job is lost as said"
  else
    fail "crash at recv-commit: b spool '$(spool_of b)', processes: $(others_on b | tr '\n' ';'); still the program on a: $(job_at_home lost "${FEATURE[counter]}" && echo yes || echo no)"
  fi
  # Home asks b again, hears it has no such job, and ends the deputy as if the job was
  # killed: the parent's wait returns 128+9.
  if wait_job lost 30 && [[ $STATUS == 137 ]] && grep -q "is lost: given up here" "$T/shadowd-a.log"; then
    ok "crash at recv-commit: the lost job's parent on a got status 137 (as killed); a logged: $(grep -m1 'is lost' "$T/shadowd-a.log" | cut -d' ' -f3-)"
  else
    fail "crash at recv-commit: the lost job's parent got status $STATUS (want 137 within 30 s)"
    shadowd_logs a
    kill_job lost
  fi
fi

# --- after the commit: the job runs at the destination only -------------------------------------
# post_commit WHAT FROM TO: the hop succeeded through its sender's shadowd.
post_commit() {
  local what=$1 from=$2 to=$3 w
  if (( MIG_RC == 0 )) && grep -q "shadowd committed the move" "$MIG_OUT"; then
    ok "$what: migctl migrate exited 0: $(grep -m1 '^migrated' "$MIG_OUT")"
  else
    fail "$what: migctl migrate exited $MIG_RC without saying shadowd committed the move"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a "$from" "$to"
  fi
  local k=$(( $(last_step job) + 2 ))
  w=$(where job)
  if [[ $(host_of "$w") == "$to" ]] && ! job_at_home job "${FEATURE[counter]}" && wait_step job "$k" 20 &&
     job_on "$to" && [[ $(n_images_on "$to") == 1 ]]; then
    ok "$what: the job runs on $to only (listed there, a's PID is its deputy, STEP $k printed; $to's spool: $(spool_of "$to"))"
  else
    fail "$what: listed at '$w', still the program on a: $(job_at_home job "${FEATURE[counter]}" && echo yes || echo no), last STEP $(last_step job), $to's spool '$(spool_of "$to")'"
    shadowd_logs a "$from" "$to"
  fi
  if [[ $from != a ]] && ! wait_until 20 eval '! images_on "$from" && ! job_on "$from"'; then
    fail "$what: $from still has the job: spool '$(spool_of "$from")'; processes: $(others_on "$from" | tr '\n' ';')"
  fi
}
if set_fault b && set_fault a "hop:send-committed:crash"; then
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job b 60
  post_commit "crash at send-committed (a's sender killed having given the job up)" a b
fi
if set_fault c "hop:recv-released:error"; then
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job c 60
  post_commit "error at recv-released (c released the job, then failed its answer)" b c
fi

# --- a hop home whose restart fails: the job stays away ----------------------------------------
# home-restart: a's check of the deputy's restart fails in phase one, before the commit.
# home-restore and the steps after it: after the commit, the deputy's restart itself
# fails (c keeps the job frozen for a's answer; the restart, or the restorer, execs the
# deputy again, which registers again, and a answers "failed": c resumes the job). Either way: one line, the
# job runs on at c, its output whole. Then, with a's shadowd started again without the
# fault (the deputy registers again), the job comes home.
home_fault_case() {
  local step=$1 what=$2 why=$3
  # (a's restarted shadowd has learned the job back from its deputy: it lists it at c)
  if ! set_fault a "hop:$step:error" || ! wait_until 20 eval '[[ $(host_of "$(where job)") == c ]]'; then
    fail "$what: a's shadowd, started with the fault, does not list the job at c: '$(where job)'"
    return 1
  fi
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job a 60
  failed_hop "$what" c "$why"
}
home_fault_case home-restart "error at home-restart (the check of the deputy's restart failed)" "injected fault"
# After the commit, each step of the deputy's restart that can fail in turn: before it
# changes the process; with the job's fds made at its numbers; just before the
# restorer's exec; in the restorer, at its last step that can fail (threads cloned, the
# job's signal actions set and its pending signals queued).
for step in home-restore home-files home-exec home-restorer; do
  home_fault_case "$step" "error at $step (the deputy's restart failed after the commit)" \
    "restore at home failed (.*injected fault.*$step"
done
# --- a hop home with a child born away that fails in the restorer ----------------------
# A python3 job moved a -> b alone starts a child there (its stdout the job's: a home
# fd), which prints "CHILD n" lines until END. Its hop home (stop-and-copy, the child
# forked at a with its PID of b) fails at home-restorer: one line, the job and its child
# run on at b, and the child was never released at a: no process at a has its PID, the
# deputy has no child (no zombie either), `migctl list` at a has no row for it, and no
# CHILD line is ever printed twice (a copy released at a would print them again).
# Later, with no fault, the hop home succeeds; the family's output is the undisturbed run's.
PY=/usr/bin/python3
FAMILY_OK=no
if [[ -x $PY ]]; then
  STEPS_PY="import sys; sys.dont_write_bytecode = True; sys.path.insert(0, '$(readlink -f "$(dirname "$0")/jobs")'); from steps import say, steps_until"
  # counting WORD STATUS: a python3 job that says "WORD n" every 0.1 s until END is
  # made, then "WORD done" and exits STATUS.
  counting() {
    printf '%s\nimport os, time\nn = 0\nwhile not os.path.exists("END"):\n    n += 1\n    say("%s", n)\n    time.sleep(0.1)\nsay("%s done")\nos._exit(%s)' \
      "$STEPS_PY" "$1" "$1" "$2"
  }
  CHILD=$(counting CHILD 5)
  FAMILY=$STEPS_PY'
import subprocess, sys
steps_until("MOVED")
p = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
say("REAL", p.pid - 4194304)  # its PID on b
steps_until("END")
say("child born away:", p.pid > 4194304, "status", p.wait())
say("done")'
  mkdir -p "$(jfile fref data)" && touch "$(jfile fref MOVED)" "$(jfile fref END)"
  start_job fref plain "$PY" -c "$FAMILY" "$CHILD"
  what="a hop home with a child born away, failing at home-restorer"
  if start_job family mig "$PY" -c "$FAMILY" "$CHILD" && wait_step family 3 20 && migrate family b 60; then
    # (b's next PIDs far from a's: the child's PID of b must be free at a, born_away.sh)
    hx b bash -c 'echo 20000 >/proc/sys/kernel/ns_last_pid'
    touch "$(jfile family MOVED)"
    wait_until 30 grep -q '^CHILD 3$' "$(jfile family out)"
    real=$(awk '$1 == "REAL" { print $2 }' "$(jfile family out)")
    migrate family a 60
    if one_line_reason && grep -q "restore at home failed (.*injected fault.*home-restorer" "$MIG_ERR" &&
       [[ $(host_of "$(where family)") == b ]]; then
      ok "$what: migctl migrate exited $MIG_RC, the job runs on at b: $(cat "$MIG_ERR")"
    else
      fail "$what: migctl migrate exited $MIG_RC, the job listed at '$(where family)'"
      detail "$MIG_ERR" "migctl stderr"; shadowd_logs a b; restore_log a
    fi
    n=$(grep -ac '^CHILD ' "$(jfile family out)")
    kids=$(hx a ps -o pid=,stat=,args= --ppid "${PID[family]}")
    if wait_until 20 eval '(( $(grep -ac "^CHILD " "$(jfile family out)") >= n + 3 ))' && [[ -n $real ]] &&
       ! hx a kill -0 "$real" 2>/dev/null && [[ -z $kids ]] && ! awk -v p="$real" '$1 == p { f = 1 } END { exit !f }' "$T/list.last" &&
       [[ -z $(grep -a '^CHILD ' "$(jfile family out)" | sort | uniq -d) ]]; then
      ok "$what: its child runs on at b (CHILD lines go on, none twice); nothing of it at a (no PID $real there, the deputy has no child, no row in migctl list)"
      FAMILY_OK=yes
    else
      fail "$what: the child at a: PID $real $(hx a ps -o pid=,ppid=,stat=,args= -p "$real" 2>/dev/null || echo none); the deputy's children: '${kids}'; CHILD lines twice: $(grep -a '^CHILD ' "$(jfile family out)" | sort | uniq -d | tr '\n' ' ')"
      sed 's/^/#     /' "$T/list.last"
    fi
  else
    fail "$what: the family did not move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl stderr"
  fi
else
  echo "# ($PY is not installed: the case of a child born away skipped)"
fi
# --- a tree's hop home, all or none (issue 12) -----------------------------------------
# A python3 job with a child forked at home (a member of its tree, not born away) moves
# a -> b whole; there the child starts a child of its own (born away, a python3 printing
# GRAND lines), which comes home with its parent, stop-and-copy. Its hop home fails in
# the root's restorer (home-restorer: a's shadowd gives a tree's hop home its fault in
# the root only), then in the root's restart just before the restorer's exec
# (home-exec): the child's restore at a was ready, and must not run there alone. One line, exit non-zero; both run on at b (listed there, a's PIDs
# their deputies, GRAND lines going on, none twice, the child's deputy with no child).
# Later, with no fault, the tree comes home whole, the grandchild with it (a child of
# the child at a); its output and status the undisturbed run's.
# (Before, a tree's members were given up at b at the commit: at home-exec both were
# lost, migctl exit 4; and a member's child born away refused the tree's hop home.)
TREE_OK=no
tree_home_fault() {
  [[ -x $PY ]] || { echo "# ($PY is not installed: the tree's hop home skipped)"; return 0; }
  TREE=$STEPS_PY'
import os, subprocess, sys, time
kid = os.fork()
if kid == 0:
    while not os.path.exists("MOVED"):
        time.sleep(0.05)
    grand = subprocess.Popen([sys.executable, "-c", sys.argv[1]])  # born on b
    n = 0
    while not os.path.exists("END"):
        n += 1
        say("KID", n)
        time.sleep(0.1)
    say("grandchild status", grand.wait())
    os._exit(3)
say("KIDPID", kid)
steps_until("END")
_, st = os.waitpid(kid, 0)
say("kid status", os.waitstatus_to_exitcode(st))
say("done")'
  GRAND=$(counting GRAND 4)
  mkdir -p "$(jfile tref data)" && touch "$(jfile tref MOVED)" "$(jfile tref END)"
  start_job tref plain "$PY" -c "$TREE" "$GRAND"
  local what="a tree's move a -> b"
  set_fault a "hop:home-restorer:error"  # (before the move: its hops home only)
  if ! start_job tree mig "$PY" -c "$TREE" "$GRAND" || ! wait_step tree 3 20 || ! migrate tree b 60; then
    fail "$what: the tree did not move a -> b: exit $MIG_RC"; detail "$MIG_ERR" "migctl stderr"
    return 0
  fi
  # (b's next PIDs far from a's: the grandchild's PID of b must be free at a, born_away.sh)
  hx b bash -c 'echo 40000 >/proc/sys/kernel/ns_last_pid'
  touch "$(jfile tree MOVED)"
  wait_until 30 grep -q '^GRAND 3$' "$(jfile tree out)"
  TREE_KID=$(awk '$1 == "KIDPID" { print $2 }' "$(jfile tree out)")
  TREE_OK=yes
  tree_home_fails home-restorer && set_fault a "hop:home-exec:error" && tree_home_fails home-exec || TREE_OK=no
}
# tree_home_fails STEP: the tree's hop home fails at STEP (a's shadowd has the fault).
tree_home_fails() {
  local step=$1 what="a tree's hop home failing at $1 in its root" kidAt n k
  wait_until 20 eval '[[ $(host_of "$(where tree)") == b ]]'  # (a's shadowd learned it back)
  wait_step tree $(( $(last_step tree) + 3 )) 20
  migrate tree a 60
  hm a list >"$T/list.last" 2>/dev/null
  kidAt=$(awk -v p="$TREE_KID" '$1 == p { print $3; exit }' "$T/list.last")
  if one_line_reason && grep -q "restore at home failed (.*injected fault.*$step" "$MIG_ERR" &&
     [[ $(host_of "$(where tree)") == b && $(host_of "$kidAt") == b ]]; then
    ok "$what: migctl migrate exited $MIG_RC, the root and its child run on at b: $(cat "$MIG_ERR")"
  else
    fail "$what: migctl migrate exited $MIG_RC, the root listed at '$(where tree)', its child ($TREE_KID) at '$kidAt'"
    detail "$MIG_ERR" "migctl stderr"; shadowd_logs a b; restore_log a
    return 1
  fi
  n=$(grep -ac '^GRAND ' "$(jfile tree out)")
  k=$(( $(last_step tree) + 3 ))
  if wait_step tree "$k" 20 && wait_until 20 eval '(( $(grep -ac "^GRAND " "$(jfile tree out)") >= n + 3 ))' &&
     [[ $(hx a readlink "/proc/${PID[tree]}/exe") == *mig-deputy* && $(hx a readlink "/proc/$TREE_KID/exe") == *mig-deputy* ]] &&
     [[ -z $(grep -a '^KID \|^GRAND ' "$(jfile tree out)" | sort | uniq -d) && -z $(hx a ps -o pid= --ppid "$TREE_KID") ]]; then
    ok "$what: both run on at b with the child's child born there (STEP $k and new GRAND lines, no KID or GRAND line twice), a's PIDs their deputies, the child's with no child"
  else
    fail "$what: the tree does not run on at b: last STEP $(last_step tree), lines twice: $(grep -a '^KID \|^GRAND ' "$(jfile tree out)" | sort | uniq -d | tr '\n' ' '), at a: $(hx a ps -o pid=,ppid=,stat=,args= -p "${PID[tree]},$TREE_KID" --ppid "$TREE_KID" | tr '\n' ';')"
    shadowd_logs a b
    return 1
  fi
}
# tree_home_after: a's shadowd has no fault now: the tree comes home whole and ends exact.
tree_home_after() {
  [[ $TREE_OK == yes ]] || { kill_job tree; return 0; }
  local what="the tree's hop home after the fault"
  wait_until 20 eval '[[ $(host_of "$(where tree)") == b ]]'  # (a's shadowd learned it back)
  if migrate tree a 60 && [[ $(host_of "$(where tree)") == a ]] &&
     [[ $(hx a readlink "/proc/${PID[tree]}/exe") != *mig-deputy* && $(hx a readlink "/proc/$TREE_KID/exe") != *mig-deputy* ]] &&
     [[ -n $(hx a ps -o pid= --ppid "$TREE_KID") ]]; then
    ok "$what: the root and its child run at a, not deputies, the child's child born on b with them: $(migrated_line)"
  else
    fail "$what: migctl migrate exited $MIG_RC, listed at '$(where tree)'"; detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a b
  fi
  local n
  n=$(grep -ac '^GRAND ' "$(jfile tree out)")
  wait_until 20 eval '(( $(grep -ac "^GRAND " "$(jfile tree out)") >= n + 3 ))'  # (at a now)
  touch "$(jfile tree END)"
  wait_job tree 30
  local got want
  got=$(grep -av '^STEP \|^KID \|^KIDPID \|^GRAND ' "$(jfile tree out)")
  want=$(grep -av '^STEP \|^KID \|^KIDPID \|^GRAND ' "$(jfile tref out)")
  if [[ $STATUS == 0 && $got == "$want" && ! -s $(jfile tree err) && -z $(grep -a '^KID \|^GRAND ' "$(jfile tree out)" | sort | uniq -d) ]]; then
    ok "tree: output the undisturbed run's (statuses 4 and 3), no KID or GRAND line twice, nothing on stderr, status 0"
  else
    fail "tree: status $STATUS, output not the undisturbed run's"
    diff <(echo "$want") <(echo "$got") | head -n 12 | sed 's/^/#     /'
    detail "$(jfile tree err)" "its stderr"
  fi
  kill_job tree
}
# --- a hop home whose commit gets no answer: a's shadowd dies at the commit -----------
# c keeps the job frozen and stopped; a's shadowd, started again, learns the job back
# from its deputy (which was never told to become the job); c, asking a again, hears
# that the deputy serves the job away and resumes it.
what="crash of a's shadowd at the hop home's commit (recv-commit)"
if set_fault a "hop:recv-commit:crash" && wait_until 20 eval '[[ $(host_of "$(where job)") == c ]]'; then
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job a 60
  if (( MIG_RC != 0 )) && [[ $(wc -l < "$MIG_ERR") == 1 ]]; then
    ok "$what: migctl migrate exited $MIG_RC: $(cat "$MIG_ERR")"
  else
    fail "$what: migctl migrate exited $MIG_RC without one line"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
  fi
  set_fault a
  k=$(( $(last_step job) + 2 ))
  if wait_until 30 eval '[[ $(host_of "$(where job)") == c ]]' && wait_step job "$k" 30 && job_on c &&
     ! job_at_home job "${FEATURE[counter]}" && grep -q "resumed here" "$T/shadowd-c.log"; then
    ok "$what: c asked a's restarted shadowd again and resumed the job (listed at c, STEP $k printed): $(grep -m1 'resumed here' "$T/shadowd-c.log" | cut -d' ' -f3-)"
  else
    fail "$what: the job was not resumed at c: listed at '$(where job)', last STEP $(last_step job), the program on a: $(job_at_home job "${FEATURE[counter]}" && echo yes || echo no)"
    shadowd_logs a c
  fi
else
  fail "$what: a's shadowd, started with the fault, does not list the job at c: '$(where job)'"
fi

what="a hop home after the faults"
if set_fault a && wait_until 20 eval '[[ $(host_of "$(where job)") == c ]]'; then
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job a 60
  # Back home its /proc/PID/exe names the restorer (as after any restart), not the program.
  k=$(( $(last_step job) + 2 ))
  exe=$(hx a readlink "/proc/${PID[job]}/exe" 2>/dev/null)
  if (( MIG_RC == 0 )) && [[ $(host_of "$(where job)") == a && -n $exe && $exe != *mig-deputy* ]] &&
     wait_step job "$k" 20 && wait_until 20 eval '! images_on c && ! job_on c'; then
    ok "$what: without the fault the job comes home (listed at a, not a deputy, STEP $k printed): $(migrated_line)"
  else
    fail "$what: the hop home without the fault: migctl migrate exited $MIG_RC, listed at '$(where job)', a's PID runs '$exe', c's spool '$(spool_of c)'"
    detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a c
  fi
else
  fail "$what: a's shadowd, started again, does not list the job at c: '$(where job)'"
fi

# The family (above) comes home with its child now, and ends at home as undisturbed.
if [[ $FAMILY_OK == yes ]]; then
  what="the family's hop home after the fault"
  wait_until 20 eval '[[ $(host_of "$(where family)") == b ]]'  # (a's shadowd learned it back)
  if migrate family a 60 && [[ $(host_of "$(where family)") == a ]] &&
     [[ $(hx a cat "/proc/$real/status" 2>/dev/null | awk '$1 == "PPid:" { print $2 }') == "${PID[family]}" ]]; then
    ok "$what: the job comes home, its child runs at a as PID $real (its PID of b), the job's child: $(migrated_line)"
  else
    fail "$what: migctl migrate exited $MIG_RC, listed at '$(where family)'"; detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a b
  fi
  touch "$(jfile family END)"
  wait_job family 30
  got=$(grep -av '^STEP \|^REAL \|^CHILD ' "$(jfile family out)")
  want=$(grep -av '^STEP \|^REAL \|^CHILD ' "$(jfile fref out)")
  if [[ $STATUS == 0 && $got == "${want/born away: False/born away: True}" && ! -s $(jfile family err) &&
        -z $(grep -a '^CHILD ' "$(jfile family out)" | sort | uniq -d) ]]; then
    ok "family: output the undisturbed run's (the child's status 5 at home), no CHILD line twice, nothing on stderr, status 0"
  else
    fail "family: status $STATUS, output not the undisturbed run's"
    diff <(echo "${want/born away: False/born away: True}") <(echo "$got") | head -n 12 | sed 's/^/#     /'
    detail "$(jfile family err)" "its stderr"
  fi
fi
kill_job family

# --- a hop home whose commit gets no answer, the job home all the same -------------------
# a's shadowd dies once the deputy went to become the job: the restart goes on and the
# job runs at home; c, asking a's shadowd (started again) again, hears that home took
# it and ends the copy it kept. The job finishes at home, exact.
what="crash of a's shadowd once the deputy went to become the job (recv-become)"
migrate job c 60
if (( MIG_RC == 0 )) && set_fault a "hop:recv-become:crash" && wait_until 20 eval '[[ $(host_of "$(where job)") == c ]]'; then
  wait_step job $(( $(last_step job) + 2 )) 20
  migrate job a 60
  set_fault a
  k=$(( $(last_step job) + 2 ))
  exe=$(hx a readlink "/proc/${PID[job]}/exe" 2>/dev/null)
  if (( MIG_RC != 0 )) && wait_until 30 eval '! job_on c' && grep -q "the copy kept here is ended" "$T/shadowd-c.log" &&
     wait_step job "$k" 20 && [[ -n $exe && $exe != *mig-deputy* ]]; then
    ok "$what: c asked a's restarted shadowd again and ended its copy; the job runs at home (STEP $k printed): $(grep -m1 'copy kept here is ended' "$T/shadowd-c.log" | cut -d' ' -f3-)"
  else
    fail "$what: migctl migrate exited $MIG_RC; c's processes: $(others_on c | tr '\n' ';'); a's PID runs '$exe'; last STEP $(last_step job)"
    detail "$MIG_ERR" "migctl stderr"
    shadowd_logs a c
  fi
else
  fail "$what: the job did not move out to c again (migctl migrate exited $MIG_RC), or a's shadowd does not list it there: '$(where job)'"
  detail "$MIG_ERR" "migctl stderr"
fi

# The tree's case (above) last, while the counter jobs finish: they need not outlive it.
tree_home_fault
set_fault a
tree_home_after

# --- a deputy that starts after the commit: a tree's members', a post-copy job's ---------
# Their exec of the deputy comes after the commit, when the job can no longer go on at
# home: each is proved before the freeze from the job's own processes (shim op
# kOpProbeDeputy). With deputy-exec:error (the program they would exec is not there) a
# python3 tree (root and child) and a post-copy python3 job are each refused in one
# line, nothing frozen, and run on at home as the program (no member a deputy); without
# the fault the next hop of each goes through; at the end each one's output (STEP lines
# aside) and the status its parent at home gets are the undisturbed run's.
# deputy_exec_jobs: the jobs and their undisturbed runs (the runs end at once: END made).
deputy_exec_jobs() {
  TREE_JOB=$STEPS_PY'
import os
from steps import wait_for
c = os.fork()
if c == 0:
    wait_for("END")
    say("child done")
    os._exit(4)
steps_until("END")
pid, st = os.waitpid(c, 0)
say("child", pid == c, "status", os.waitstatus_to_exitcode(st))
os._exit(7)'
  # 32 MiB of private memory that post-copy leaves at home for the page server.
  PC_JOB=$STEPS_PY'
import os
data = bytearray(range(256)) * (1 << 17)
steps_until("END")
say("sum", sum(data[::4096]))
os._exit(3)'
  local j
  for j in dxtree-ref pc-ref; do mkdir -p "$(jfile "$j" data)" && touch "$(jfile "$j" END)"; done
  start_job dxtree-ref plain "$PY" -c "$TREE_JOB"
  start_job pc-ref plain "$PY" -c "$PC_JOB"
  start_job dxtree mig "$PY" -c "$TREE_JOB" && start_job pc mig "$PY" -c "$PC_JOB" && wait_step dxtree 3 20 && wait_step pc 3 20
}
# program_at_home NAME: NAME's process on a and every child of it run the program, none its deputy.
program_at_home() {
  local p exe
  for p in "${PID[$1]}" $(hx a pgrep -P "${PID[$1]}"); do
    exe=$(hx a readlink "/proc/$p/exe" 2>/dev/null)
    [[ -n $exe && $exe != *mig-deputy* ]] || return 1
  done
}
# deputy_exec_refused NAME WHAT [MIGCTL_OPTION]: its hop a -> b under deputy-exec:error.
deputy_exec_refused() {
  local name=$1 what=$2 k
  k=$(( $(last_step "$name") + 2 ))
  migrate "$name" b 60 ${3-}
  if one_line_reason && grep -q "could not start (exec of .*injected-fault" "$MIG_ERR"; then
    ok "$what: migctl migrate exited $MIG_RC: $(cat "$MIG_ERR")"
  else
    fail "$what: migctl migrate exited $MIG_RC without the one line saying the deputy could not start"
    detail "$MIG_OUT" "migctl stdout"; detail "$MIG_ERR" "migctl stderr"; shadowd_logs a b
  fi
  if wait_step "$name" "$k" 20 && program_at_home "$name" && [[ $(host_of "$(where "$name")") == a ]] &&
     wait_until $((TRANSFER_TIMEOUT + 10)) eval '! job_on b'; then
    ok "$what: it runs on at a (the program, no deputy; STEP $k printed), nothing of it on b"
  else
    fail "$what: not running on at a: listed at '$(where "$name")', last STEP $(last_step "$name"), b: $(others_on b | tr '\n' ';')"
    detail "$(jfile "$name" err)" "its stderr"; shadowd_logs a b
  fi
}
# deputy_exec_after NAME REF WANT WHAT [MIGCTL_OPTION]: without the fault its hop a -> b
# goes through; then END: output (STEP lines aside) and status WANT the undisturbed run's.
deputy_exec_after() {
  local name=$1 ref=$2 want=$3 what=$4 got wantout
  if migrate "$name" b 60 ${5-} && [[ $(host_of "$(where "$name")") == b ]]; then
    ok "$what: without the fault the next hop goes through: $(migrated_line)"
  else
    fail "$what: the hop without the fault: migctl migrate exited $MIG_RC, listed at '$(where "$name")'"
    detail "$MIG_ERR" "migctl stderr"; shadowd_logs a b
  fi
  touch "$(jfile "$name" END)"
  wait_job "$ref" 30
  wait_job "$name" 40
  got=$(grep -av '^STEP ' "$(jfile "$name" out)")
  wantout=$(grep -av '^STEP ' "$(jfile "$ref" out)")
  if [[ $STATUS == "$want" && $(status_of "$ref") == "$want" && -n $got && $got == "$wantout" && ! -s $(jfile "$name" err) ]]; then
    ok "$what: output the undisturbed run's, nothing on stderr, its parent at home got status $STATUS"
  else
    fail "$what: status '$STATUS' (undisturbed '$(status_of "$ref")', want $want), output differs or stderr not empty"
    diff <(echo "$wantout") <(echo "$got") | head -n 8 | sed 's/^/#     /'; detail "$(jfile "$name" err)" "its stderr"
    kill_job "$name"
  fi
}
if [[ -x $PY && -n ${STEPS_PY-} ]]; then
  if deputy_exec_jobs && set_fault b && set_fault a "hop:deputy-exec:error"; then
    deputy_exec_refused dxtree "a tree whose member's deputy exec fails"
    deputy_exec_refused pc "a post-copy hop whose deputy exec fails" --postcopy
    set_fault a
    deputy_exec_after dxtree dxtree-ref 7 "the tree"
    deputy_exec_after pc pc-ref 3 "the post-copy job" --postcopy
  else
    fail "the tree and post-copy jobs did not start (or a's shadowd not with the fault)"
  fi
  kill_job dxtree; kill_job pc
fi

wait_job ref 120
compare job ref "$STATUS"
cluster_end
