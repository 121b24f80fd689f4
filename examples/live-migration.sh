#!/bin/bash
# live-migration.sh: the README's demo of mig. Moves a running, unmodified
# program from host to host while it prints, and shows that nothing about it
# changed: same output, same PID, its file still at home.
#
# First installs what is missing (Debian 12, apt-get) and builds build/.
# Then, as root: makes three simulated hosts a, b and c on this machine
# (tests/harness/mig-hosts: Linux namespaces, each host with its own network
# address, /tmp, PID numbers, hostname and clocks), starts shadowd on each,
# starts the example job examples/ticker on a under LD_PRELOAD=libmig.so (its
# lines come to this terminal, the file it appends to is in a's private
# /tmp/mig-host-a/), migrates it a -> b -> c -> a while it prints, showing
# each `migctl migrate` with its freeze time, and at the end compares what it
# printed and wrote with what an undisturbed run prints and writes.
# Without root (or with --loopback): two shadowd on this machine's loopback,
# 127.0.0.1:7071 (home) and 127.0.0.1:7072, and one hop there and back.
# Everything it started is stopped when it ends, also on Ctrl-C.
# Exit status: 0 if every hop worked and the job's output was exact, else 1.
#
# usage: examples/live-migration.sh [--ticks N] [--loopback] [--keep]
#   --ticks N    how many lines (one a second) the job prints; default 16
#   --loopback   two shadowd on loopback even as root
#   --keep       keep the work directory (logs of shadowd, the job's output)
set -u

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
ticks=16 loopback=0 keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --ticks) ticks=${2-}; shift 2 || { echo "live-migration.sh: --ticks needs a number" >&2; exit 2; } ;;
    --loopback) loopback=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "live-migration.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $ticks =~ ^[0-9]+$ ]] && (( ticks >= 12 )) || { echo "live-migration.sh: --ticks must be a number >= 12" >&2; exit 2; }

say() { echo "demo: $*"; }
die() { echo "demo: $*" >&2; exit 1; }

# --- what the demo needs: packages, a build -------------------------------------------
# shellcheck source=../tests/lib/setup.sh
source "$(dirname "$(readlink -f "$0")")/../tests/lib/setup.sh"
mig_install_deps || die "could not install the packages mig needs"
B=$MIG_ROOT/build
SHADOWD=$B/shadow/shadowd MIGCTL=$B/migctl/migctl LIBMIG=$B/shim/libmig.so HOSTS=$B/tests/harness/mig-hosts
if [ -d "$B" ] && [ ! -w "$B" ] && [ -x "$SHADOWD" ] && [ -x "$MIGCTL" ] && [ -e "$LIBMIG" ]; then
  say "$B is not writable for $(id -un): using it as it is"    # e.g. built by root
else
  mig_build "$B" || die "could not build mig in $B"
fi
for f in "$SHADOWD" "$MIGCTL" "$LIBMIG"; do
  [ -e "$f" ] || die "$f is missing after the build"
done

W=$(mktemp -d /tmp/mig-demo.XXXXXX) || die "mktemp failed"
chmod 755 "$W"
C=demo$$            # the cluster (root mode)
bg=()               # our background processes
pid=""              # the job's PID on its home host
cleanup() {
  local p
  for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null; done
  if [ "$loopback" = 0 ]; then
    timeout 60 "$HOSTS" down "$C" 2>/dev/null   # every process of the hosts
  else
    # The job (or its deputy) and, should it still run, its restored copy: the
    # processes of this machine whose command line names our work directory.
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    for p in /proc/[0-9]*; do
      [ "${p#/proc/}" != $$ ] && grep -qF "$W/" "$p/cmdline" 2>/dev/null && kill -KILL "${p#/proc/}" 2>/dev/null
    done
  fi
  for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$keep" = 1 ]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 1' INT TERM HUP

# The example job: built by examples/meson.build, or compiled here if the
# build does not have it.
TICKER=$B/examples/ticker
if [ ! -x "$TICKER" ]; then
  TICKER=$W/ticker
  cc -O2 -o "$TICKER" "$MIG_ROOT/examples/ticker.c" || die "cannot compile examples/ticker.c"
fi

if [ "$loopback" = 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "not root: simulated hosts need root (namespaces, a bridge); instead: two shadowd"
    say "on this machine's loopback and one hop there and back"
    loopback=1
  elif ! why=$("$HOSTS" check 2>&1); then
    say "cannot make simulated hosts here (${why#mig-hosts: }); instead: two shadowd on loopback"
    loopback=1
  fi
fi

# wait_until LIMIT_S CMD...: polls CMD until it succeeds; 1 after LIMIT_S seconds.
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.1
  done
}
head -c 32 /dev/urandom >"$W/key"
chmod 600 "$W/key"

# --- the hosts and their shadowd ------------------------------------------------------------
# Both modes define: home_run CMD... (runs CMD on the home host), migctl_home
# ARGS... (migctl on the home host), HOME_FILE (the job's file, as the home
# host names it), hops (the destinations, by node name) and HOSTNAMES.
if [ "$loopback" = 0 ]; then
  share=(--share "$W")
  case $B in /tmp/*) share+=(--share "$B") ;; esac
  case $TICKER in "$W"/*|"$B"/*) ;; /tmp/*) share+=(--share "$(dirname "$TICKER")") ;; esac
  out=$("$HOSTS" up --owner $$ "${share[@]}" "$C" a b c) || die "mig-hosts up failed"
  declare -A ADDR
  while read -r h a; do ADDR[$h]=$a; done <<<"$out"
  for h in a b c; do echo "$h ${ADDR[$h]}:7070"; done >"$W/nodes"
  for h in a b c; do
    "$HOSTS" spawn "$C" "$h" "$W/shadowd-$h.log" -- \
      "$SHADOWD" --listen "${ADDR[$h]}:7070" --cluster-key "$W/key" --nodes "$W/nodes" >/dev/null ||
      die "could not start shadowd on $h"
  done
  sock=/tmp/mig-$(id -u)/shadowd.sock
  for h in a b c; do
    wait_until 20 "$HOSTS" exec "$C" "$h" -- test -S "$sock" ||
      { cat "$W/shadowd-$h.log" >&2; die "shadowd on $h did not start (log above)"; }
  done
  say "three simulated hosts, each running shadowd with the same cluster key:"
  for h in a b c; do say "  $h  ${ADDR[$h]}:7070"; done
  home_run() { "$HOSTS" exec "$C" a -- "$@"; }
  migctl_home() { timeout -k 5 120 "$HOSTS" exec "$C" a -- "$MIGCTL" "$@"; }
  HOME_FILE=/tmp/mig-host-a/ticker.log
  hops=(b c a)
else
  mkdir -m 700 "$W/a" "$W/b"
  printf 'a 127.0.0.1:7071\nb 127.0.0.1:7072\n' >"$W/nodes"
  for h in a b; do
    port=$([ "$h" = a ] && echo 7071 || echo 7072)
    "$SHADOWD" --listen "127.0.0.1:$port" --cluster-key "$W/key" --nodes "$W/nodes" \
      --socket "$W/$h/shadowd.sock" --spool "$W/$h/spool" 2>>"$W/shadowd-$h.log" </dev/null &
    bg+=("$!")
  done
  for h in a b; do
    wait_until 20 test -S "$W/$h/shadowd.sock" ||
      { cat "$W/shadowd-$h.log" >&2; die "shadowd $h did not start (log above; is port 7071 or 7072 taken?)"; }
  done
  say "two shadowd on this machine: a (the job's home) at 127.0.0.1:7071, b at 127.0.0.1:7072"
  home_run() { "$@"; }
  migctl_home() { timeout -k 5 120 "$MIGCTL" "$@" --socket "$W/a/shadowd.sock"; }
  HOME_FILE=$W/ticker.log
  hops=(b a)
fi

# --- the job ---------------------------------------------------------------------------------
# A shell on the home host starts the job and waits for it, as any user's shell
# would; the job's lines go through tee (into W/job.out) to this terminal.
mkfifo "$W/job.fifo"
tee "$W/job.out" <"$W/job.fifo" | sed -u 's/^/        | /' &
tee_pid=$!
bg+=("$tee_pid")
say "starting the job on a: LD_PRELOAD=libmig.so ticker $ticks $HOME_FILE"
home_run bash -c 'LD_PRELOAD=$1 "$2" "$3" "$4" </dev/null & echo $! >"$5"; wait $!' demo \
  "$LIBMIG" "$TICKER" "$ticks" "$HOME_FILE" "$W/pid" >"$W/job.fifo" 2>"$W/job.err" &
job=$!
bg+=("$job")
wait_until 20 test -s "$W/pid" || die "the job did not start"
pid=$(cat "$W/pid")
say "the job runs on a as PID $pid"

lines() { grep -c '^ticker: tick' "$W/job.out" 2>/dev/null; }
at_least() { [ "$(lines)" -ge "$1" ] || ! kill -0 "$job" 2>/dev/null; }
at=a failed=0 n=0 route=a
for to in "${hops[@]}"; do
  n=$((n + 3))
  wait_until 30 at_least "$n" || { say "the job printed nothing for 30 s"; failed=$((failed + 1)); break; }
  kill -0 "$job" 2>/dev/null || { say "the job ended before the hop to $to"; failed=$((failed + 1)); break; }
  say "\$ migctl migrate $pid --to $to        (the job is on $at)"
  out=$(migctl_home migrate "$pid" --to "$to" 2>&1)
  rc=$?
  while IFS= read -r l; do say "  $l"; done <<<"$out"
  if [ "$rc" = 0 ]; then
    at=$to
    f=$(sed -n 's/.*: frozen \([0-9.]* ms\).*/\1/p' <<<"$out")
    route+=" -> $to (frozen ${f:-?})"
  else
    failed=$((failed + 1))
    say "the hop to $to failed: the job goes on where it was ($at)"
  fi
  if [ "$n" = 3 ]; then
    say "\$ migctl list        (on a)"
    migctl_home list 2>&1 | sed 's/^/demo:   /'
  fi
done

# --- the end: what an undisturbed run prints and writes ------------------------------------------
limit=$((ticks + 60))
wait_until "$limit" eval '! kill -0 "$job" 2>/dev/null' || { say "the job did not end within $limit s"; exit 1; }
wait "$job"
status=$?
wait "$tee_pid" 2>/dev/null
for (( k = 1; k <= ticks; k++ )); do
  echo "ticker: tick $k of $ticks, pid $pid, sum of squares 1..$k = $(( k * (k + 1) * (2 * k + 1) / 6 ))"
done >"$W/expected.out"
echo "ticker: done after $ticks ticks, pid $pid" >>"$W/expected.out"
seq -f 'tick %g' "$ticks" >"$W/expected.log"
home_run cat "$HOME_FILE" >"$W/job.log" 2>&1

echo
ok=1
if [ "$status" = 0 ]; then
  say "the job ended with exit status 0, seen by its parent shell on a"
else
  say "the job ended with exit status $status (expected 0)"; ok=0
  [ -s "$W/job.err" ] && sed 's/^/demo:   stderr: /' "$W/job.err"
fi
if diff -u "$W/expected.out" "$W/job.out" >"$W/out.diff"; then
  say "its $((ticks + 1)) lines are exactly those of an undisturbed run, with PID $pid in every one"
else
  say "its output differs from an undisturbed run's:"; sed 's/^/demo:   /' "$W/out.diff" | head -n 20; ok=0
fi
if diff -u "$W/expected.log" "$W/job.log" >"$W/log.diff"; then
  say "its file $HOME_FILE on a has every tick once, in order"
else
  say "its file $HOME_FILE on a is not right:"; sed 's/^/demo:   /' "$W/log.diff" | head -n 20; ok=0
fi
if [ "$loopback" = 0 ]; then
  if "$HOSTS" exec "$C" b -- test ! -e "$HOME_FILE" && "$HOSTS" exec "$C" c -- test ! -e "$HOME_FILE"; then
    say "and that file exists on a only: b and c have no /tmp/mig-host-a/"
  else
    say "that file shows up on b or c too"; ok=0
  fi
fi
if [ "$failed" = 0 ] && [ "$ok" = 1 ]; then
  say "done: the job went $route, and nothing about it changed"
  exit 0
fi
say "$failed hop(s) failed$([ "$ok" = 1 ] || echo ', and the job did not end as it should')"
say "shadowd logs: $W/shadowd-*.log (run with --keep to keep them)"
exit 1
