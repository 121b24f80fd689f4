#!/bin/bash
# signals.sh: signals and the terminal through the deputy, the job (sigjob,
# jobs/sigjob.c) migrated a -> b. kill -TERM to the job's PID on a runs its handler
# on b (status 42 for the parent on a); Ctrl-C on its terminal on a (a pty made by
# script(1)) runs its SIGINT handler on b (status 43); kill -TERM sent while the
# migration is in flight (a 512 MiB job, during the transfer) runs the handler
# exactly once; kill -KILL of the deputy on a ends the job on b.
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

cluster_end
