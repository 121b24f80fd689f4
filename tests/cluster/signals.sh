#!/bin/bash
# signals.sh: signals and the terminal through the deputy, the job (sigjob,
# jobs/sigjob.c) migrated a -> b. kill -TERM to the job's PID on a runs its handler
# on b (status 42 for the parent on a); Ctrl-C on its terminal on a (a pty made by
# script(1)) runs its SIGINT handler on b (status 43); kill -TERM sent while the
# migration is in flight (a 512 MiB job, during the transfer) runs the handler
# exactly once; kill -KILL of the deputy on a ends the job on b. Every signal
# (sigjob --all): three RTMIN+1 queued with values (kill -q), ALRM, PIPE and USR1
# sent on a reach the job on b, the realtime ones in order with SI_QUEUE and their
# values; kill -TSTP on a stops the job on b and the deputy on a (state T), kill
# -CONT continues both; so do kill -STOP (seen by shadowd on a at once, through the
# deputy's traced stop-watch thread, not by a look at its state) and -CONT; the job
# counts on to its end. A process tree with a process group of its own (jobs/group_job.py)
# moves a -> b: its members' group signals reach each member there once, setpgid
# between members works, and kill -TERM -PGID on a ends the group's members, with the
# output and statuses of an undisturbed run; a member's group signal on b reaches its
# grandchild born there. A tree with a session and a pty of its own (jobs/session_job.py)
# moves a -> b: tcsetpgrp there chooses which group Ctrl-C on the pty reaches, and
# waitid(P_PGID, 0) and a waitid without a siginfo get the members' ends while a child
# born on b runs, as in an undisturbed run.
#
# usage: signals.sh OPTIONS (below); meson runs it as test 'migration-signals'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG SIGJOB
cluster_up a b

# sigjob_output_ok NAME SIG FILE: "sigjob: pid P", ticks 1..n each once with
# their STEP lines, the handler's line for SIG with the same pid, last.
sigjob_output_ok() {
  local pid=$1 sig=$2 file=$3
  tr -d '\r' <"$file" | sed 's/^\^C//' | awk -v pid="$pid" -v sig="$sig" '
    NR == 1 { if ($0 != "sigjob: pid " pid) exit 1; next }
    /^handler: / { if ($0 != "handler: " sig ", pid " pid) exit 1; h++; next }
    h { exit 1 }
    /^tick / { if ($2 != ++n) exit 1; next }
    /^STEP / { if ($2 != n) exit 1; next }
    { exit 1 }
    END { exit !(h == 1 && n > 0) }'
}

# --- kill -TERM on a ----------------------------------------------------------------------------
if start_job sigterm mig "$SIGJOB" 300 && hop sigterm a b; then
  k=$(( $(last_step sigterm) + 2 ))
  if wait_step sigterm "$k" 20; then
    hx a kill -TERM "${PID[sigterm]}"
    if wait_job sigterm 30 && [[ $STATUS == 42 ]] && sigjob_output_ok "${PID[sigterm]}" SIGTERM "$(jfile sigterm out)"; then
      ok "sigterm: kill -TERM ${PID[sigterm]} on a ran the job's SIGTERM handler on b (its line in the output on a, same pid); the parent on a got status 42"
    else
      fail "sigterm: after kill -TERM ${PID[sigterm]} on a: status $STATUS (want 42), output ok: $(sigjob_output_ok "${PID[sigterm]}" SIGTERM "$(jfile sigterm out)" && echo yes || echo no)"
      detail "$(jfile sigterm out)" "its stdout"
      detail "$(jfile sigterm err)" "its stderr"
      shadowd_logs a b
    fi
  else
    fail "sigterm: its output stopped coming home after a -> b (last: STEP $(last_step sigterm))"
    detail "$(jfile sigterm err)" "its stderr"
  fi
fi
kill_job sigterm

# --- Ctrl-C on a terminal of a -------------------------------------------------------------------
# script(1) gives the job a pty; its input comes
# from a FIFO we hold open, so writing ^C there is typing Ctrl-C.
mkfifo "$T/ctrlc.in"
exec {ctrlc_in}<>"$T/ctrlc.in"
mkdir -p "$(jfile ctrlc data)"
PID[ctrlc]=""
: >"$T/ctrlc.wrap"
mh spawn "$C" a "$T/ctrlc.wrap" -- bash -c '
  cd "$1" || exit 125
  echo "shell $$"
  script -qec "echo \$\$ >pid; exec env LD_PRELOAD=$3 $4 300" /dev/null <"$2" >tty.out
  echo "status $?"' ctrlc "$(jdir ctrlc)" "$T/ctrlc.in" "$LIBMIG" "$SIGJOB" >/dev/null
if wait_until 20 test -s "$(jfile ctrlc pid)"; then
  PID[ctrlc]=$(cat "$(jfile ctrlc pid)")
  ln -sf tty.out "$(jfile ctrlc out)"   # so that hop and last_step find its steps
  if hop ctrlc a b; then
    k=$(( $(last_step ctrlc) + 2 ))
    if wait_step ctrlc "$k" 20; then
      printf '\003' >&"$ctrlc_in"
      if wait_job ctrlc 30 && [[ $STATUS == 43 ]] && sigjob_output_ok "${PID[ctrlc]}" SIGINT "$(jfile ctrlc tty.out)"; then
        ok "ctrlc: Ctrl-C on the job's terminal on a ran its SIGINT handler on b (its line on that terminal, same pid); script(1) on a got status 43"
      else
        fail "ctrlc: after Ctrl-C on its terminal on a: status $STATUS (want 43), output ok: $(sigjob_output_ok "${PID[ctrlc]}" SIGINT "$(jfile ctrlc tty.out)" && echo yes || echo no)"
        detail "$(jfile ctrlc tty.out)" "its terminal"
        shadowd_logs a b
      fi
    else
      fail "ctrlc: its terminal output stopped coming home after a -> b (last: STEP $(last_step ctrlc))"
    fi
  fi
  kill_job ctrlc
else
  fail "ctrlc: the job did not start under script(1) on a"
  detail "$T/ctrlc.wrap" "its shell"
fi

# --- kill -TERM while the migration is in flight: the handler runs once -------------------------
if start_job inflight mig "$SIGJOB" 300 512M && wait_step inflight 2 60; then
  migrate_in_background inflight b 120
  sent=""
  if migrate_running; then
    hx a kill -TERM "${PID[inflight]}" && sent="$(stat -c %s "$(new_image b)" 2>/dev/null) bytes into the transfer"
  fi
  wait_until 120 eval '! migrate_running'
  wait "$mpid"
  MIG_RC=$?
  wait_job inflight 30
  if [[ -z $sent ]]; then
    fail "inflight: migctl migrate ended (exit $MIG_RC) before the transfer to b started: no signal sent in flight"
  elif [[ $STATUS == 42 ]] && sigjob_output_ok "${PID[inflight]}" SIGTERM "$(jfile inflight out)"; then
    ok "inflight: kill -TERM on a $sent (migctl exited $MIG_RC: $(cat "$MIG_OUT" "$MIG_ERR" | tail -n 1)): the handler ran once, status 42"
  else
    fail "inflight: kill -TERM on a $sent (migctl exited $MIG_RC): status $STATUS (want 42), handler once: $(sigjob_output_ok "${PID[inflight]}" SIGTERM "$(jfile inflight out)" && echo yes || echo no)"
    detail "$MIG_ERR" "migctl stderr"
    detail "$(jfile inflight out)" "its stdout"
    detail "$(jfile inflight err)" "its stderr"
    shadowd_logs a b
  fi
fi
kill_job inflight

# --- kill -KILL of the deputy ends the job on b ------------------------------------------------
if start_job kill9 mig "$SIGJOB" 300 && hop kill9 a b; then
  hx a kill -KILL "${PID[kill9]}"
  wait_job kill9 30
  # The job's row on b: its PID at home, its home a.
  on_b() { hm b list 2>/dev/null | awk -v p="${PID[kill9]}" -v h="${ADDR[a]}:$PORT" '$1 == p && $2 == h' | grep -q .; }
  if [[ $STATUS == 137 ]] && wait_until 20 eval '! on_b'; then
    ok "kill9: kill -KILL of the deputy ${PID[kill9]} on a (status 137 for its parent) ended the job on b"
  else
    fail "kill9: after kill -KILL ${PID[kill9]} on a: its parent got status $STATUS (want 137); the job still runs on b: $(on_b && echo yes || echo no)"
    hm b list 2>&1 | sed 's/^/#     /'
    shadowd_logs a b
  fi
fi

# --- every signal, with its siginfo; TSTP and CONT stop and continue the job ---------------------
# all_output_ok FILE: ticks 1..n once each with their STEP lines, "done" last, and
# these signal lines among them: RTMIN+1 (SI_QUEUE, -1) with 11, 12, 13 in this order,
# and ALRM, PIPE, USR1 (SI_USER, 0) once each (standard signals pending together come
# lowest number first, so their order is not checked).
all_output_ok() {
  tr -d '\r' <"$1" | awk -v rt="$RTMIN1" '
    NR == 1 { if ($0 !~ /^sigjob: pid /) exit 1; next }
    /^signal / && $2 == rt { got = got $2 ":" $4 ":" $6 " "; next }
    /^signal / { std[$2 ":" $4 ":" $6]++; nstd++; next }
    d { exit 1 }
    /^tick / { if ($2 != ++n) exit 1; next }
    /^STEP / { if ($2 != n) exit 1; next }
    /^done$/ { d = 1; next }
    { exit 1 }
    END { want = rt ":-1:11 " rt ":-1:12 " rt ":-1:13 "
          if (got != want) { print "realtime: " got "(want " want ")" > "/dev/stderr"; exit 1 }
          if (nstd != 3 || std["14:0:0"] != 1 || std["13:0:0"] != 1 || std["10:0:0"] != 1) {
            print "standard: " nstd " lines, not ALRM, PIPE, USR1 with code 0 once each" > "/dev/stderr"; exit 1 }
          exit !(d && n > 0) }'
}
state_on_a() { hx a awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null; }
job_state_on_b() { hx b ps -e -o stat=,args= | awk -v p="$SIGJOB" '$2 == p && $3 == "--all" { print substr($1, 1, 1); exit }'; }
RTMIN1=$(( $(kill -l RTMIN) + 1 ))
ALL_STEPS=150
if start_job all mig "$SIGJOB" --all "$ALL_STEPS" && hop all a b; then
  p=${PID[all]}
  k=$(( $(last_step all) + 2 ))
  wait_step all "$k" 20
  for v in 11 12 13; do hx a /usr/bin/kill -s RTMIN+1 -q "$v" "$p"; done
  hx a kill -ALRM "$p"; hx a kill -PIPE "$p"; hx a kill -USR1 "$p"
  n_signals() { tr -d '\r' <"$(jfile all out)" | grep -c '^signal '; }
  if wait_until 20 eval '(( $(n_signals) >= 6 ))'; then
    ok "all: RTMIN+1 x3 with values, ALRM, PIPE, USR1 sent to $p on a: $(n_signals) lines from the job on b"
  else
    fail "all: of RTMIN+1 x3, ALRM, PIPE, USR1 sent to $p on a, the job on b printed $(n_signals) within 20 s"
  fi
  hx a kill -TSTP "$p"
  if wait_until 20 eval '[[ $(state_on_a "$p") == T && $(job_state_on_b) == T ]]'; then
    s1=$(last_step all)
    ok "all: kill -TSTP $p on a: the deputy is stopped on a (state T: its parent's waitpid(WUNTRACED) reports it) and the job on b too (state T, at STEP $s1)"
    stopped=yes
  else
    fail "all: after kill -TSTP $p on a: the deputy's state '$(state_on_a "$p")' (want T), the job's on b '$(job_state_on_b)' (want T)"
    shadowd_logs a b
    stopped=no
  fi
  hx a kill -CONT "$p"
  if [[ $stopped == yes ]] && wait_until 20 eval '[[ $(state_on_a "$p") != T && $(last_step all) -gt $s1 ]]'; then
    ok "all: kill -CONT $p on a: the deputy runs again and the job counts on (STEP $(last_step all))"
  elif [[ $stopped == yes ]]; then
    fail "all: after kill -CONT $p on a: the deputy's state '$(state_on_a "$p")', the job at STEP $(last_step all) (stopped at $s1)"
  fi
  # SIGSTOP cannot be caught: shadowd on a hears of it from its stop watch over the
  # deputy (shadow/stop_watch.h) and stops the job.
  hx a kill -STOP "$p"
  if wait_until 20 eval '[[ $(state_on_a "$p") == T && $(job_state_on_b) == T ]]'; then
    s2=$(last_step all)
    hx a kill -CONT "$p"
    # One "was stopped" line in a's log: for this SIGSTOP, none for the TSTP above (the
    # deputy stopped itself then, the job had its TSTP).
    stops_seen=$(grep -c 'was stopped; stopping the job' "$T/shadowd-a.log")
    watched=$(grep -c 'was stopped; stopping the job (seen by its stop watch)' "$T/shadowd-a.log")
    if wait_until 20 eval '[[ $(state_on_a "$p") != T && $(last_step all) -gt $s2 ]]' && [[ $stops_seen == 1 && $watched == 1 ]]; then
      ok "all: kill -STOP $p on a stopped the deputy and the job on b (at STEP $s2), told by the deputy's stop watch; kill -CONT continued both (STEP $(last_step all))"
    else
      fail "all: after kill -STOP, kill -CONT $p on a: the deputy's state '$(state_on_a "$p")', the job at STEP $(last_step all) (stopped at $s2); shadowd on a stopped the job $stops_seen times (want 1), $watched of them told by the stop watch (want 1)"
      shadowd_logs a b
    fi
  else
    fail "all: after kill -STOP $p on a: the deputy's state '$(state_on_a "$p")' (want T), the job's on b '$(job_state_on_b)' (want T)"
    shadowd_logs a b
    hx a kill -CONT "$p"
  fi
  if wait_job all 60 && [[ $STATUS == 0 ]] && all_output_ok "$(jfile all out)" 2>"$T/all.check"; then
    ok "all: the job ended with status 0 after its $ALL_STEPS ticks, each once; the signals arrived, RTMIN+1 in order with SI_QUEUE and values 11 12 13, ALRM, PIPE, USR1 as SI_USER"
  else
    fail "all: status $STATUS (want 0), output ok: $(all_output_ok "$(jfile all out)" 2>&1 >/dev/null || echo no)"
    detail "$(jfile all out)" "its stdout"
    detail "$(jfile all err)" "its stderr"
    shadowd_logs a b
  fi
fi
kill_job all

# --- a process group of a tree: signals between members and from home ------------------------
# jobs/group_job.py: a root and two children it puts into a group of their own; the
# tree moves a -> b; on b the root signals the group, a child leaves the group, joins
# it again and signals its own group; then kill -TERM -PGID on a ends both children
# (each once: its handler's status). Output and statuses as an undisturbed run's.
GROUP_JOB=$(readlink -f "$(dirname "$0")/jobs/group_job.py")
# group_steps NAME: after STEP 1 (and the caller's move) the go file; at STEP 2 kill -TERM -PGID on a.
group_steps() {
  local name=$1 pg
  touch "$(jfile "$name" data)/go"
  wait_step "$name" 2 30 || return 1
  pg=$(awk '$1 == "pgid" { print $2 }' "$(jfile "$name" err)")
  [[ -n $pg ]] && hx a kill -TERM -- "-$pg"
}
if [[ -x /usr/bin/python3 ]] && start_job gref plain /usr/bin/python3 "$GROUP_JOB" @DIR@; then
  wait_step gref 1 30 && group_steps gref
  if wait_job gref 60 && [[ $STATUS == 7 ]] && start_job group mig /usr/bin/python3 "$GROUP_JOB" @DIR@ &&
     wait_step group 1 30; then
    migrate group b
    if (( MIG_RC == 0 )) && [[ $(host_of "$(where group)") == b ]]; then
      ok "group: the tree (a root, two children in a group of their own) moved a -> b: $(migrated_line)"
      if group_steps group; then
        compare group gref 7 nostderr
      else
        fail "group: no STEP 2 after the move (group signals between members on b): $(tail -n 2 "$(jfile group out)" | tr '\n' ' ')"
        detail "$(jfile group err)" "its stderr"
        shadowd_logs a b
      fi
    else
      fail "group: migrate a -> b: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
    fi
  else
    fail "group: the undisturbed run or the start under mig failed: status $STATUS"
    detail "$(jfile gref out)" "its stdout"
    detail "$(jfile gref err)" "its stderr"
  fi
fi
kill_job group
kill_job gref

# --- a session with a terminal, and waits on both hosts ------------------------------------------
# jobs/session_job.py: a member that leads a session with a pty as its terminal gives it
# to another member's group (tcsetpgrp) and back on b, Ctrl-C typed on the pty (at a)
# reaching the foreground group only; the root waits on b for members' ends with
# waitid(P_PGID, 0) and a waitid without a siginfo while a child born on b runs.
SESSION_JOB=$(readlink -f "$(dirname "$0")/jobs/session_job.py")
if [[ -x /usr/bin/python3 ]] && start_job sref plain /usr/bin/python3 "$SESSION_JOB" @DIR@; then
  wait_step sref 1 30 && touch "$(jfile sref data)/go"
  if wait_job sref 60 && [[ $STATUS == 0 ]] && start_job session mig /usr/bin/python3 "$SESSION_JOB" @DIR@ &&
     wait_step session 1 30; then
    migrate session b
    if (( MIG_RC == 0 )) && [[ $(host_of "$(where session)") == b ]]; then
      ok "session: the tree (a root, a session leader with a pty, its child, a child) moved a -> b: $(migrated_line)"
      touch "$(jfile session data)/go"
      compare session sref 0
    else
      fail "session: migrate a -> b: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
    fi
  else
    fail "session: the undisturbed run or the start under mig failed: status $STATUS"
    detail "$(jfile sref out)" "its stdout"
    detail "$(jfile sref err)" "its stderr"
  fi
fi
kill_job session
kill_job sref

# --- a kill(0) on b stays in its job ---------------------------------------------------------------
# Each job restored on b has a session and group of its own there: a process born on b
# without the shim (no forwarding) that runs `kill -TERM 0` signals its own job's group
# there, never shadowd, the link processes or another job (in shadowd's group they did).
BYSTANDER='import time
i = 0
while True:
    print("STEP", i, flush=True); i += 1; time.sleep(0.1)'
KILLER0='import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
i = 0
while not os.path.exists(sys.argv[1] + "/GO"):
    print("STEP", i, flush=True); i += 1; time.sleep(0.1)
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
subprocess.run(["/bin/kill", "-TERM", "0"], env=env)
print("STEP", i, "killed", flush=True)
time.sleep(30)'
start_job bystander mig /usr/bin/python3 -c "$BYSTANDER" || cluster_end
start_job killer0 mig /usr/bin/python3 -c "$KILLER0" @DIR@ || cluster_end
wait_step bystander 1 20 && wait_step killer0 1 20 && migrate bystander b && (( MIG_RC == 0 )) && migrate killer0 b
if (( MIG_RC == 0 )) && [[ $(host_of "$(where killer0)") == b && $(host_of "$(where bystander)") == b ]]; then
  touch "$(jfile killer0 data)/GO"
  if wait_step killer0 '[0-9]+ killed' 20 && k=$(last_step bystander) && wait_step bystander $((k + 5)) 20 &&
     hx b ps -e -o args= | grep -q "^$SHADOWD " && [[ $(host_of "$(where bystander)") == b ]]; then
    ok "kill 0: a process of one job on b ran kill -TERM 0; another job there and b's shadowd went on"
  else
    fail "kill 0: after kill -TERM 0 by a process of one job on b: $(tail -n 1 "$(jfile bystander out)"), where $(where bystander)"
    shadowd_logs b
  fi
else
  fail "kill 0: migrate a -> b: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
fi
kill_job killer0
kill_job bystander

cluster_end
