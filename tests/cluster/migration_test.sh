#!/bin/bash
# migration_test.sh: live migration between simulated hosts, checked the way a
# user sees it. Makes a cluster (tests/harness/mig-hosts) of hosts a, b, c
# with one shadowd each (same cluster key, a nodes file naming a b c) and a
# host d whose shadowd has another key; every job starts on a, under
# LD_PRELOAD=libmig.so, from a shell on a that waits for it, with its files
# in a's private /tmp/mig-host-a/. Checks, one "ok - ..." / "FAIL - ..." line
# each (details below a FAIL as "#   " lines):
#   features  each feature program (--feature), migrated a -> b -> c mid-run
#             (counter also back home to a): stdout, stderr and exit status
#             those of an undisturbed run on a without mig, seen by the
#             waiting parent on a; its PID unchanged (migctl list on a shows
#             it at each host as soon as migctl migrate returns); nothing of
#             it left on b after b -> c; its files only in a's private
#             directory.
#   rwjob     printf to a redirected file, fgets + fseek/ftell on a file,
#             syscall(SYS_write) appends, a file opened after the migration:
#             contents exact after a -> b; getpid/getppid unchanged.
#   signals   kill -TERM to the job's PID on a runs its handler on b (status 42
#             for the parent on a); Ctrl-C on its terminal on a (a pty made by
#             script(1)) runs its SIGINT handler on b (status 43); kill -TERM
#             sent while the migration is in flight (a 512 MiB job, during
#             the transfer) runs the handler exactly once; kill -KILL of the
#             deputy on a ends the job on b.
#   failures  destination unreachable, destination with another cluster key
#             (nothing restored there), destination shadowd killed during the
#             transfer (a 512 MiB job): migctl migrate exits non-zero with a
#             one-line reason and the job goes on on a, finishing correctly.
#   network   a blocking TCP echo server (--netserver) listening on a's address,
#             migrated a -> b while a client on d talks to it (every echo, in
#             order, no reset), then b -> c while it waits in accept; a client
#             on c is served from b and one on b from c, each at a's address;
#             accept tells each client's own address. An event-loop server
#             (--evserver: non-blocking sockets, epoll) on a's address, migrated
#             a -> b -> c while three clients on d send numbered lines at a
#             steady rate: every echo in order, no reset; a new client to a's
#             address after each hop is served. A job (--latejob) that connects
#             to a listener on d only after its migration to b: d sees a's
#             address, and b's with --local-net. --rebind: the event-loop
#             server's client on d sees a reset, a client to b's address is
#             served by the job on b. A TCP client (--streamer) on a streams
#             200 MiB to a sink on d, migrated a -> b -> c mid-stream: the sink's
#             SHA-256 is an undisturbed run's. `producer | cat | sha256sum` in one
#             shell on a, coreutils' cat migrated a -> b mid-stream: the
#             consumer's output is exact, the pipeline exits 0 0 0.
#             redis-server (Debian's, under libmig) on a, migrated a -> b while a
#             client on d runs SET/GET at a steady rate: every command gets its
#             reply, DBSIZE and a checksum of 1000 known keys are intact, a
#             client that connects during the migration (200 MB in it: a long
#             freeze) is answered, a new redis-cli is served; it shuts down with
#             status 0.
#   migctl    list shows the job and where it runs; nodes shows a b c up, and
#             a host whose shadowd was stopped (SIGTERM) or killed unreachable.
# Every wait is bounded and polls (no sleeps as synchronisation, no timing
# thresholds). Exit status: 0 all passed, 1 a check failed, 77 skipped (not
# root, no namespaces here, or a part of mig not built yet; the reason is
# printed), 2 usage.
#
# usage: migration_test.sh --mig-hosts PATH --host-init PATH --shadowd PATH
#            --deputy PATH --migctl PATH --libmig PATH --rwjob PATH --sigjob PATH
#            [--netserver PATH] [--evserver PATH] [--latejob PATH] [--streamer PATH]
#            [--feature NAME PATH]... [--only GROUP]... [--keep]
#   --feature NAME PATH  a feature program (tests/features): counter, files,
#                        threads, signals or memory; repeatable
#   --only GROUP         run only these groups: features, rwjob, signals,
#                        network, failures (migctl list/nodes checks always run)
#   --keep               keep the work directory (logs) and print its path
# meson runs it as test 'migration' (suite cluster) with every path filled in.
set -uo pipefail

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die_usage() { echo "migration_test.sh: $*" >&2; echo "(see migration_test.sh --help)" >&2; exit 2; }

HOSTS="" HOST_INIT="" SHADOWD="" DEPUTY="" MIGCTL="" LIBMIG="" RWJOB="" SIGJOB="" NETSERVER="" EVSERVER="" LATEJOB="" STREAMER=""
KEEP=0
declare -A FEATURE=() ONLY=()
while (( $# )); do
  case $1 in
    --mig-hosts) HOSTS=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --host-init) HOST_INIT=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --shadowd) SHADOWD=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --deputy) DEPUTY=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --migctl) MIGCTL=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --libmig) LIBMIG=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --rwjob) RWJOB=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --sigjob) SIGJOB=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --netserver) NETSERVER=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --evserver) EVSERVER=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --latejob) LATEJOB=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --streamer) STREAMER=${2-}; shift 2 || die_usage "$1 needs a value" ;;
    --feature) (( $# >= 3 )) || die_usage "--feature needs NAME PATH"; FEATURE[$2]=$3; shift 3 ;;
    --only) ONLY[${2-}]=1; shift 2 || die_usage "$1 needs a value" ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
[[ -n $HOSTS && -n $HOST_INIT ]] || die_usage "--mig-hosts and --host-init are required"
want() { (( ${#ONLY[@]} == 0 )) || [[ -n ${ONLY[$1]-} ]]; }

if (( EUID != 0 )); then
  echo "SKIP: needs root to make simulated hosts (namespaces, veths, a bridge)"
  exit 77
fi
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
HOSTS=$(abspath "$HOSTS")
MIG_HOST_INIT=$(abspath "$HOST_INIT")
export MIG_HOST_INIT
if ! why=$("$HOSTS" check 2>&1); then
  echo "SKIP: ${why#mig-hosts: }"
  exit 77
fi
for v in SHADOWD DEPUTY MIGCTL LIBMIG RWJOB SIGJOB; do
  p=${!v}
  if [[ -z $p || ! -e $p ]]; then
    echo "SKIP: ${v,,} is not built yet (${p:-no path given})"
    exit 77
  fi
  printf -v "$v" '%s' "$(abspath "$p")"
done
for f in "${!FEATURE[@]}"; do FEATURE[$f]=$(abspath "${FEATURE[$f]}"); done
[[ -n $NETSERVER ]] && NETSERVER=$(abspath "$NETSERVER")
[[ -n $EVSERVER ]] && EVSERVER=$(abspath "$EVSERVER")
[[ -n $LATEJOB ]] && LATEJOB=$(abspath "$LATEJOB")
[[ -n $STREAMER ]] && STREAMER=$(abspath "$STREAMER")

C=migr$$                      # the cluster
PORT=7070
SD_SOCK=/tmp/mig-$(id -u)/shadowd.sock   # shadowd's default socket, in each host's own /tmp
SPOOL=/tmp/mig-$(id -u)/spool
T=$(mktemp -d /tmp/mig-migration.XXXXXX) || { echo "FAIL - mktemp"; exit 1; }
chmod 755 "$T"
bg_pids=()                    # our own background processes (machine side)

cleanup() {
  local p
  for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  timeout 60 "$HOSTS" down "$C"
  if (( KEEP )); then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'echo "FAIL - interrupted (test timeout?)"; exit 1' TERM INT HUP

failures=0
ok() { echo "ok - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
# detail FILE [TITLE]: the end of FILE under a FAIL line.
detail() {
  local f=$1 title=${2:-$(basename "$1")}
  if [[ -s $f ]]; then
    echo "#   --- $title:"
    tail -n 15 "$f" | tr -d '\r' | sed 's/^/#     /'
  else
    echo "#   --- $title: (empty)"
  fi
}
note() { echo "#   $*"; }

# Bounded calls into the hosts; the hosts see T (and build dirs under /tmp) via --share.
mh() { timeout -k 5 60 "$HOSTS" "$@"; }
hx() { local h=$1; shift; timeout -k 5 60 "$HOSTS" exec "$C" "$h" -- "$@"; }
hm() { local h=$1; shift; timeout -k 5 60 "$HOSTS" exec "$C" "$h" -- "$MIGCTL" "$@"; }
hp() { echo "/proc/${INIT[$1]}/root$2"; }    # a host's file, as the machine reaches it
wait_until() {  # wait_until LIMIT_S CMD...: polls CMD until it succeeds; 1 on timeout
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    (( SECONDS >= end )) && return 1
    sleep 0.05
  done
}

# --- the cluster ----------------------------------------------------------------------
share=(--share "$T")
for p in "$SHADOWD" "$DEPUTY" "$MIGCTL" "$LIBMIG" "$RWJOB" "$SIGJOB" $NETSERVER $EVSERVER $LATEJOB $STREAMER "${FEATURE[@]}"; do
  d=$(dirname "$(readlink -f "$p")")
  [[ $d == /tmp/* ]] && share+=(--share "$d")
done
timeout 60 "$HOSTS" gc
if ! out=$(mh up --owner $$ "${share[@]}" "$C" a b c d 2>"$T/up.err"); then
  echo "FAIL - mig-hosts up: $(cat "$T/up.err")"
  exit 1
fi
declare -A ADDR INIT SD
while read -r h a; do ADDR[$h]=$a; INIT[$h]=$(mh pid "$C" "$h"); done <<<"$out"
for h in a b c; do echo "$h ${ADDR[$h]}:$PORT"; done >"$T/nodes"
head -c 32 /dev/urandom >"$T/key"
head -c 32 /dev/urandom >"$T/other.key"
chmod 600 "$T/key" "$T/other.key"

start_shadowd() {  # start_shadowd HOST KEYFILE
  SD[$1]=$(mh spawn "$C" "$1" "$T/shadowd-$1.log" -- env MIG_DEPUTY="$DEPUTY" MIG_MIGCTL="$MIGCTL" \
    "$SHADOWD" --listen "${ADDR[$1]}:$PORT" --cluster-key "$2" --nodes "$T/nodes")
}
shadowd_ready() { [[ -S $(hp "$1" "$SD_SOCK") ]] && grep -q "listening on" "$T/shadowd-$1.log"; }
for h in a b c; do start_shadowd "$h" "$T/key"; done
start_shadowd d "$T/other.key"
for h in a b c d; do
  if ! wait_until 20 shadowd_ready "$h"; then
    fail "shadowd on $h did not come up (socket $SD_SOCK, 'listening on' in its log)"
    detail "$T/shadowd-$h.log" "shadowd log of $h"
    exit 1
  fi
done
ok "hosts a b c d at ${ADDR[a]} ${ADDR[b]} ${ADDR[c]} ${ADDR[d]}, shadowd listening on each (d with another cluster key)"

shadowd_logs() {  # the ends of the shadowd logs, under a FAIL
  local h
  for h in "$@"; do detail "$T/shadowd-$h.log" "shadowd log of $h"; done
}

# --- jobs on a --------------------------------------------------------------------------
# A job NAME runs in a's /tmp/mig-host-a/NAME/ (stdout to out, stderr to err,
# stdin /dev/null), started by a bash on a that waits for it: the bash prints
# "shell ITS_PID", "pid JOB_PID" and, when `wait` returns, "status N" to
# T/NAME.wrap. MODE mig preloads libmig.so, plain does not.
WRAPPER='cd "$1" || exit 125; shift
p=$MIGTEST_PRELOAD; unset MIGTEST_PRELOAD
echo "shell $$"
if [ -n "$p" ]; then LD_PRELOAD=$p "$@" </dev/null >out 2>err & else "$@" </dev/null >out 2>err & fi
echo "pid $!"
wait $!
echo "status $?"'
declare -A PID SHELL_PID
jdir() { echo "/tmp/mig-host-a/$1"; }       # the job's directory, on a
jfile() { hp a "$(jdir "$1")/$2"; }           # one of its files, from the machine
start_job() {  # start_job NAME MODE PROG ARGS... (@DIR@ in ARGS: the job's dir/data)
  local name=$1 mode=$2 preload="" a args=()
  shift 2
  [[ $mode == mig ]] && preload=$LIBMIG
  mkdir -p "$(jfile "$name" data)"
  for a in "$@"; do args+=("${a//@DIR@/$(jdir "$name")/data}"); done
  : >"$T/$name.wrap"
  mh spawn "$C" a "$T/$name.wrap" -- env MIGTEST_PRELOAD="$preload" bash -c "$WRAPPER" wrapper \
    "$(jdir "$name")" "${args[@]}" >/dev/null
  if ! wait_until 20 grep -q '^pid ' "$T/$name.wrap"; then
    fail "$name: the job did not start on a"
    detail "$T/$name.wrap" "its shell's output"
    return 1
  fi
  PID[$name]=$(awk '$1 == "pid" { print $2 }' "$T/$name.wrap")
  SHELL_PID[$name]=$(awk '$1 == "shell" { print $2 }' "$T/$name.wrap")
}
ended() { grep -q '^status ' "$T/$1.wrap"; }
status_of() { awk '$1 == "status" { print $2 }' "$T/$1.wrap"; }
# (A terminal's output has \r\n line ends: the \r is dropped.)
last_step() { local s; s=$(tr -d '\r' <"$(jfile "$1" out)" 2>/dev/null | grep -a '^STEP ' | tail -n 1); echo "${s#STEP }"; }
# wait_step NAME K LIMIT: 0 once "STEP K" is in its output; 2 if it ended first; 1 on timeout.
wait_step() {
  local end=$((SECONDS + $3))
  until grep -aqxE "STEP $2"$'\r?' "$(jfile "$1" out)" 2>/dev/null; do
    ended "$1" && return 2
    (( SECONDS >= end )) && return 1
    sleep 0.05
  done
}
# wait_job NAME LIMIT: waits for its shell's "status N"; STATUS=N (or "none").
wait_job() {
  STATUS=none
  wait_until "$2" ended "$1" || return 1
  STATUS=$(status_of "$1")
}
# kill_job NAME: SIGKILL to a job that was started and has not ended.
kill_job() { [[ -n ${PID[$1]-} ]] && ! ended "$1" && hx a kill -KILL "${PID[$1]}" 2>/dev/null; return 0; }
# job_at_home NAME: its PID on a is still the program (not the deputy).
job_at_home() { [[ $(hx a readlink "/proc/${PID[$1]}/exe" 2>/dev/null) == "$2" ]]; }
# where NAME: the WHERE column of its row in `migctl list` on a (empty if no row).
where() { hm a list 2>/dev/null | tee "$T/list.last" | awk -v p="${PID[$1]}" '$1 == p { print $3; exit }'; }
host_of() {  # host_of HOST:PORT -> host name
  local h
  for h in a b c d; do [[ $1 == "${ADDR[$h]}:$PORT" ]] && { echo "$h"; return; }; done
  echo "${1:-nowhere}"
}

# migrate NAME TO [LIMIT]: migctl migrate on a; sets MIG_RC, MIG_OUT and MIG_ERR
# (files with its stdout and stderr) and returns MIG_RC. new_migrate_logs picks
# the files first, so that a migrate run in the background writes where we look.
NMIG=0
new_migrate_logs() {
  NMIG=$((NMIG + 1))
  MIG_OUT=$T/migrate.$NMIG.out MIG_ERR=$T/migrate.$NMIG.err
}
run_migrate() {  # run_migrate NAME TO [LIMIT [MIGCTL_OPTION...]]
  timeout -k 5 "${3:-40}" "$HOSTS" exec "$C" a -- "$MIGCTL" migrate "${PID[$1]}" --to "$2" "${@:4}" >"$MIG_OUT" 2>"$MIG_ERR"
  MIG_RC=$?
  return $MIG_RC
}
migrate() { new_migrate_logs; run_migrate "$@"; }
migrated_line() { grep -m1 '^migrated ' "$MIG_OUT"; }
one_line_reason() {  # migctl failed with exactly one line on stderr that says why
  (( MIG_RC != 0 && MIG_RC != 124 && MIG_RC != 137 )) && [[ $(wc -l <"$MIG_ERR") == 1 ]] &&
    grep -q "stays where it was: ." "$MIG_ERR"
}

# hop NAME FROM TO: once the job printed 3 more steps, migctl migrate it to TO
# (a host name, by its nodes-file name); then `migctl list` on a must show it at TO.
hop() {
  local name=$1 from=$2 to=$3 k r
  k=$(( $(last_step "$name") + 3 ))
  wait_step "$name" "$k" 30
  r=$?
  if (( r == 2 )); then
    fail "$name: ended (status $(status_of "$name")) before STEP $k, nothing left to migrate $from -> $to"
    return 1
  elif (( r == 1 )); then
    fail "$name: no STEP $k in its output on a within 30 s (last: STEP $(last_step "$name")) before $from -> $to"
    detail "$(jfile "$name" err)" "its stderr"
    shadowd_logs "$from"
    return 1
  fi
  migrate "$name" "$to"
  if (( MIG_RC != 0 )); then
    fail "$name: migrate $from -> $to at STEP $k: migctl exited $MIG_RC$( ((MIG_RC == 124)) && echo " (timed out)"): $(tr '\n' ' ' <"$MIG_ERR")"
    shadowd_logs "$from" "$to"
    [[ $from == a ]] || shadowd_logs a
    restore_log "$to"
    return 1
  fi
  # Once migctl migrate has returned, migctl list on a must show where the job is.
  local w
  w=$(where "$name")
  cp "$T/list.last" "$T/list.first"
  if [[ $(host_of "$w") == "$to" ]]; then
    ok "$name: $from -> $to at STEP $k, list on a shows PID ${PID[$name]} at $to: $(migrated_line)"
    return 0
  fi
  ok "$name: $from -> $to at STEP $k: $(migrated_line)"
  fail "$name: right after migctl migrate to $to returned, migctl list on a shows PID ${PID[$name]} at '${w:-no row}'$(
    wait_until 10 eval '[[ $(host_of "$(where "$name")") == "$to" ]]' && echo ", at $to only a moment later" ||
    echo " (and still 10 s later)")"
  sed 's/^/#     /' "$T/list.first"
}

# compare NAME REF WANT_STATUS [nostderr]: finished with REF's stdout, stderr
# (unless nostderr: a job that prints its PID there) and status.
compare() {
  local name=$1 ref=$2 want=$3 bad="" what
  if ! wait_job "$name" 60; then
    fail "$name: its shell on a got no exit status within 60 s of the end of the hops (last: STEP $(last_step "$name"))"
    detail "$(jfile "$name" err)" "its stderr"
    shadowd_logs a b c
    return 1
  fi
  cmp -s "$(jfile "$ref" out)" "$(jfile "$name" out)" || bad+=" stdout"
  what="stdout ($(wc -l <"$(jfile "$name" out)") lines) and stderr"
  if [[ ${4-} == nostderr ]]; then
    what="stdout ($(wc -l <"$(jfile "$name" out)") lines)"
  else
    cmp -s "$(jfile "$ref" err)" "$(jfile "$name" err)" || bad+=" stderr"
  fi
  [[ $STATUS == "$want" ]] || bad+=" status"
  if [[ -z $bad ]]; then
    ok "$name: the parent on a waited for PID ${PID[$name]} and got status $STATUS; $what as undisturbed"
  else
    fail "$name: differs from the undisturbed run in:$bad (status $STATUS, undisturbed $want)"
    diff <(tr -d '\r' <"$(jfile "$ref" out)") <(tr -d '\r' <"$(jfile "$name" out)") | head -n 12 | sed 's/^/#     /'
    detail "$(jfile "$name" err)" "its stderr"
    return 1
  fi
}

# only_on_a NAME FILE...: the job's files are in a's private directory, and
# neither that directory nor a file of those names exists on b or c.
only_on_a() {
  local name=$1 h f found="" missing=""
  shift
  for f in "$@"; do [[ -f $(jfile "$name" "$f") ]] || missing+=" $f"; done
  local names=() base
  for f in "$@"; do
    base=$(basename "$f")
    names+=(${names[@]+-o} -name "$base")
  done
  for h in b c; do
    hx "$h" test -e /tmp/mig-host-a && found+=" $h:/tmp/mig-host-a"
    found+=$(hx "$h" find /tmp -path "$T" -prune -o -type f \( "${names[@]}" \) -printf " $h:%p" 2>/dev/null)
  done
  if [[ -z $found$missing ]]; then
    ok "$name: its files ($*) are in a's /tmp/mig-host-a/$name/ only, none on b or c"
  else
    fail "$name: files out of place:${missing:+ missing on a:$missing}${found:+ found elsewhere:$found}"
  fi
}

# restore_log HOST: the newest restore log in HOST's spool (what `migctl restart` said).
restore_log() {
  local f
  f=$(ls -t "$(hp "$1" "$SPOOL")"/*.log 2>/dev/null | head -n 1)
  [[ -n $f ]] && detail "$f" "restore log on $1 ($(basename "$f"))"
}
# A host's processes but its init and shadowd (and the ps that lists them).
others_on() { hx "$1" ps -e -o pid=,args= | awk '$2 !~ /host_init$/ && $2 != "'"$SHADOWD"'" && $2 != "ps" { print }'; }
# A transfer to HOST has started once its spool holds some of a new image:
# mark_spool HOST first, then spool_growing HOST.
mark_spool() { OLD_IMAGES=" $(cd "$(hp "$1" "$SPOOL")" 2>/dev/null && echo *.img) "; }
new_image() {
  local f
  for f in "$(hp "$1" "$SPOOL")"/*.img; do
    [[ -s $f && $OLD_IMAGES != *" ${f##*/} "* ]] && { echo "$f"; return 0; }
  done
  return 1
}
spool_growing() { new_image "$1" >/dev/null; }
migrate_running() { kill -0 "$mpid" 2>/dev/null; }   # the migrate started in the background
spool_of() { hx "$1" ls -A "$SPOOL" 2>&1 | tr '\n' ' ' | sed 's/ $//'; }

# --- migctl nodes, all up ----------------------------------------------------------------
nodes_state() { hm a nodes 2>&1 | awk -v n="$1" '$1 == n { print $3 }'; }
hm a nodes >"$T/nodes.1" 2>&1
bad=""
for h in a b c; do [[ $(awk -v n="$h" '$1 == n { print $3 }' "$T/nodes.1") == up ]] || bad+=" $h"; done
if [[ -z $bad ]]; then
  ok "migctl nodes on a lists a b c up"
else
  fail "migctl nodes on a: not up:$bad"
  detail "$T/nodes.1" "migctl nodes"
fi

# --- reference runs, undisturbed, without mig, all at once --------------------------------
declare -A FARGS=(
  [counter]="100" [files]="@DIR@ 60" [threads]="60" [signals]="60" [memory]="256M 60"
  [avx]="40" [unlinked]="@DIR@ 60" [private_map]="@DIR@ 60" [shared_anon]="60"
  [shared_anon_alias]="60" [malloc_heavy]="40" [pipe_read]="60" [pids]="60"
  [mutex_kinds]="60" [proc_attrs]="@DIR@ 60" [eventfd]="60" [timerfd]="60" [signalfd]="60"
  [epoll]="60" [libuv]="60")
declare -A FSTATUS=([counter]=3 [pids]=143)
features=()
if want features; then
  for f in "${!FARGS[@]}"; do [[ -n ${FEATURE[$f]-} ]] && features+=("$f"); done
fi
refs=()
for f in "${features[@]}"; do
  # shellcheck disable=SC2086  # FARGS are words
  start_job "$f-ref" plain "${FEATURE[$f]}" ${FARGS[$f]} && refs+=("$f-ref")
done
RW_STEPS=60
make_input() {  # make_input NAME: rwjob's input.txt in the job's data dir
  local i
  for (( i = 1; i <= RW_STEPS; i++ )); do
    printf 'input line %03d: %s\n' "$i" "$(printf '%*s' $(( (i * 7) % 40 )) '' | tr ' ' "${i: -1}")"
  done >"$(jfile "$1" data/input.txt)"
}
if want rwjob; then
  mkdir -p "$(jfile rwjob-ref data)" && make_input rwjob-ref
  start_job rwjob-ref plain "$RWJOB" @DIR@ "$RW_STEPS" && refs+=(rwjob-ref)
fi
if want failures; then
  [[ -z ${FEATURE[counter]-} ]] || want features ||
    { start_job counter-ref plain "${FEATURE[counter]}" 100 && refs+=(counter-ref); }
  [[ -z ${FEATURE[memory]-} ]] ||
    { start_job bigmem-ref plain "${FEATURE[memory]}" 512M 40 && refs+=(bigmem-ref); }
fi
for r in "${refs[@]}"; do
  if ! wait_job "$r" 120 || ! grep -qx PASS "$(jfile "$r" out)"; then
    fail "reference run $r (without mig) did not pass: status $STATUS"
    detail "$(jfile "$r" err)" "its stderr"
  fi
done

# --- feature programs a -> b -> c ------------------------------------------------------------
for f in "${features[@]}"; do
  # shellcheck disable=SC2086
  start_job "$f" mig "${FEATURE[$f]}" ${FARGS[$f]} || continue
  procs_before=$(others_on b) spool_before=$(spool_of b)
  if hop "$f" a b && hop "$f" b c; then
    if [[ $f == counter ]]; then
      hop "$f" c a
    else
      # B -> C leaves nothing of the job on b (what was there before does not count).
      left=$(comm -13 <(sort <<<"$procs_before") <(others_on b | sort) | tr '\n' ';')
      spool=$(comm -13 <(tr ' ' '\n' <<<"$spool_before" | sort) <(spool_of b | tr ' ' '\n' | sort) | tr '\n' ' ')
      if [[ -z $left && -z ${spool// /} ]]; then
        ok "$f: nothing of the job left on b after b -> c (no process, empty spool)"
      else
        fail "$f: left on b after b -> c:${left:+ processes: $left}${spool:+ spool: $spool}"
      fi
    fi
  fi
  compare "$f" "$f-ref" "${FSTATUS[$f]:-0}"
  files=(out err)
  [[ $f == files ]] && files+=(data/input.txt data/output.txt data/log.txt data/rw.bin)
  if [[ $f == files ]]; then
    bad=""
    for x in input.txt output.txt log.txt rw.bin; do
      cmp -s "$(jfile files-ref "data/$x")" "$(jfile files "data/$x")" || bad+=" $x"
    done
    if [[ -z $bad ]]; then ok "files: its files on a are byte for byte those of the undisturbed run"
    else fail "files: its files on a differ from the undisturbed run's:$bad"; fi
  fi
  only_on_a "$f" "${files[@]}"
done

# --- home files through printf, fgets/fseek/ftell, syscall(SYS_write) ----------------------------
if want rwjob; then
  mkdir -p "$(jfile rwjob data)" && make_input rwjob
  if start_job rwjob mig "$RWJOB" @DIR@ "$RW_STEPS"; then
    hop rwjob a b
    compare rwjob rwjob-ref 0 nostderr
    bad=""
    for x in append.log late.txt; do
      cmp -s "$(jfile rwjob-ref "data/$x")" "$(jfile rwjob "data/$x")" || bad+=" $x differs from the undisturbed run's;"
    done
    cmp -s <(seq -f 'append %g' "$RW_STEPS") "$(jfile rwjob data/append.log)" ||
      bad+=" append.log is not 'append 1'..'append $RW_STEPS' once each;"
    cmp -s <(seq -f 'late %g' "$RW_STEPS") "$(jfile rwjob data/late.txt)" ||
      bad+=" late.txt is not 'late 1'..'late $RW_STEPS' once each;"
    if [[ -z $bad ]]; then
      ok "rwjob: append.log (syscall(SYS_write)) and late.txt (opened at every step) exact, nothing lost or repeated"
    else
      fail "rwjob:$bad"
      for x in append.log late.txt; do detail "$(jfile rwjob "data/$x")" "$x"; done
    fi
    want_ids=$(printf 'pid %s ppid %s\n' "${PID[rwjob]}" "${SHELL_PID[rwjob]}")
    if [[ $(cat "$(jfile rwjob err)") == "$want_ids"$'\n'"$want_ids" ]]; then
      ok "rwjob: getpid() ${PID[rwjob]} and getppid() ${SHELL_PID[rwjob]} (its shell on a) the same before and after the migration"
    else
      fail "rwjob: getpid()/getppid() not the job's PID ${PID[rwjob]} and its shell's ${SHELL_PID[rwjob]} at both ends"
      detail "$(jfile rwjob err)" "its stderr"
    fi
    only_on_a rwjob out err data/input.txt data/append.log data/late.txt
  fi
fi

# --- a TCP server whose sockets stay on a ---------------------------------------------------------
# steady HOST ADDR PORT N NAME OUT: from HOST, N lines "NAME i" to ADDR:PORT, 20 ms
# apart, each echo checked; OUT gets "N echoes in order" or what went wrong ("reset
# after i echoes" for a reset).
NET_STEADY='import socket, sys, time
addr, port, n, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.create_connection((addr, port), timeout=30); f = s.makefile("rw")
for i in range(n):
    try:
        f.write("%s %d\n" % (name, i)); f.flush()
        got = f.readline()
    except ConnectionResetError:
        print("reset after %d echoes" % i); sys.exit(1)
    if got != "echo %s %d\n" % (name, i): print("bad echo for %d: %r" % (i, got)); sys.exit(1)
    time.sleep(0.02)
s.close(); print("%d echoes in order" % n)'
steady() { hx "$1" python3 -c "$NET_STEADY" "$2" "$3" "$4" "$5" >"$6" 2>&1; }
# net_client HOST PORT N OUT: the same to a's address.
net_client() { steady "$1" "${ADDR[a]}" "$2" "$3" message "$4"; }
if want network && [[ -n $NETSERVER ]]; then
  if start_job netserver mig "$NETSERVER" 3 "${ADDR[a]}" &&
     wait_until 20 grep -q '^port ' "$(jfile netserver out)"; then
    nport=$(awk '$1 == "port" { print $2 }' "$(jfile netserver out)")
    net_client d "$nport" 150 "$T/net1.out" &
    c1=$!; bg_pids+=($c1)
    wait_until 20 grep -q '^client 1 ' "$(jfile netserver out)"  # its 150 messages take 3 s
    migrate netserver b && ok "netserver: a -> b while a client on d talks to it: $(migrated_line)" ||
      { fail "netserver: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    wait "$c1"
    net_client c "$nport" 20 "$T/net2.out"
    wait_until 20 grep -q '^served client 2$' "$(jfile netserver out)"
    migrate netserver c && ok "netserver: b -> c while it waits in accept: $(migrated_line)" ||
      { fail "netserver: b -> c: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b c; }
    net_client b "$nport" 20 "$T/net3.out"
    wait_job netserver 30
    if [[ $STATUS == 0 ]] && grep -qx "150 echoes in order" "$T/net1.out" &&
       grep -qx "20 echoes in order" "$T/net2.out" && grep -qx "20 echoes in order" "$T/net3.out" &&
       grep -qx "client 1 from ${ADDR[d]}, to port $nport" "$(jfile netserver out)" &&
       grep -qx "client 2 from ${ADDR[c]}, to port $nport" "$(jfile netserver out)" &&
       grep -qx "client 3 from ${ADDR[b]}, to port $nport" "$(jfile netserver out)"; then
      ok "netserver: a client on d got its 150 echoes in order across a -> b; clients on c and b were served from b and c at a's address ${ADDR[a]}:$nport, each seen from its own address; status 0 on a"
    else
      fail "netserver: status $STATUS; the clients and the server say:"
      for x in net1 net2 net3; do detail "$T/$x.out" "$x"; done
      detail "$(jfile netserver out)" "the server's output"
      shadowd_logs a b c
    fi
  fi
  kill_job netserver
fi

# An event-loop server (non-blocking sockets, one epoll): three clients on d keep
# talking to it at a's address while it goes a -> b -> c; after each hop a new
# client is served at the same address.
if want network && [[ -n $EVSERVER ]]; then
  if start_job evserver mig "$EVSERVER" 5 "${ADDR[a]}" && wait_until 20 grep -q '^port ' "$(jfile evserver out)"; then
    eport=$(awk '$1 == "port" { print $2 }' "$(jfile evserver out)")
    steadies=()
    for k in 1 2 3; do steady d "${ADDR[a]}" "$eport" 400 "d$k" "$T/ev$k.out" & steadies+=($!); bg_pids+=($!); done
    wait_until 20 grep -q '^client 3 ' "$(jfile evserver out)"
    migrate evserver b && ok "evserver: a -> b while three clients on d talk to it: $(migrated_line)" ||
      { fail "evserver: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    steady c "${ADDR[a]}" "$eport" 20 c "$T/ev4.out"
    migrate evserver c && ok "evserver: b -> c while three clients on d talk to it: $(migrated_line)" ||
      { fail "evserver: b -> c: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b c; }
    steady b "${ADDR[a]}" "$eport" 20 b "$T/ev5.out"
    wait "${steadies[@]}"
    wait_job evserver 30
    if [[ $STATUS == 0 ]] && grep -qx "400 echoes in order" "$T/ev1.out" && grep -qx "400 echoes in order" "$T/ev2.out" &&
       grep -qx "400 echoes in order" "$T/ev3.out" && grep -qx "20 echoes in order" "$T/ev4.out" &&
       grep -qx "20 echoes in order" "$T/ev5.out"; then
      ok "evserver: three clients on d got their 400 echoes each in order across a -> b -> c, clients on c and b were served after each hop at a's address; status 0 on a"
    else
      fail "evserver: status $STATUS; the clients and the server say:"
      for x in ev1 ev2 ev3 ev4 ev5; do detail "$T/$x.out" "$x"; done
      detail "$(jfile evserver out)" "the server's output"
      detail "$(jfile evserver err)" "the server's stderr"
      shadowd_logs a b c
    fi
  fi
  kill_job evserver

  # --rebind: the server's listener is made again on b, its connection reset.
  if start_job rebound mig "$EVSERVER" 2 "${ADDR[a]}" && wait_until 20 grep -q '^port ' "$(jfile rebound out)"; then
    rport=$(awk '$1 == "port" { print $2 }' "$(jfile rebound out)")
    steady d "${ADDR[a]}" "$rport" 1000 r1 "$T/rb1.out" & rb=$!; bg_pids+=($rb)
    wait_until 20 grep -q '^client 1 ' "$(jfile rebound out)"
    migrate rebound b "" --rebind && ok "rebound: a -> b --rebind: $(migrated_line)" ||
      { fail "rebound: a -> b --rebind: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    wait "$rb"
    steady d "${ADDR[b]}" "$rport" 20 r2 "$T/rb2.out"
    wait_job rebound 30
    if [[ $STATUS == 0 ]] && grep -q "^reset after " "$T/rb1.out" && grep -qx "20 echoes in order" "$T/rb2.out" &&
       grep -qx "client 2 from ${ADDR[d]}" "$(jfile rebound out)"; then
      ok "rebound: its client on d saw a reset ($(cat "$T/rb1.out")); a new client to b's address ${ADDR[b]}:$rport was served by the job on b; status 0 on a"
    else
      fail "rebound: status $STATUS; the clients and the server say:"
      for x in rb1 rb2; do detail "$T/$x.out" "$x"; done
      detail "$(jfile rebound out)" "the server's output"
      shadowd_logs a b
    fi
  fi
  kill_job rebound
fi

# A job that connects only once it runs on b: from home's address by default, from
# b's with --local-net.
LISTEN_ONCE='import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1); l.settimeout(60); print("listening", flush=True)
c, peer = l.accept(); c.settimeout(30); c.makefile("r").readline()
c.sendall(b"hello from d\n"); c.close(); print("peer", peer[0])'
if want network && [[ -n $LATEJOB ]]; then
  for policy in home local; do
    lport=$((7100 + ${#policy}))
    hx d python3 -c "$LISTEN_ONCE" "${ADDR[d]}" "$lport" >"$T/late-$policy.out" 2>&1 & lst=$!; bg_pids+=($lst)
    wait_until 20 grep -q '^listening' "$T/late-$policy.out"
    start_job "late$policy" mig "$LATEJOB" @DIR@/go "${ADDR[d]}" "$lport"
    wait_until 20 grep -q '^pid ' "$(jfile "late$policy" out)"
    flag=(); [[ $policy == local ]] && flag=(--local-net)
    migrate "late$policy" b "" "${flag[@]}" ||
      { fail "late$policy: a -> b ${flag[*]}: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    touch "$(jfile "late$policy" data)/go"
    wait_job "late$policy" 30
    wait "$lst"
    want_from=${ADDR[a]}; [[ $policy == local ]] && want_from=${ADDR[b]}
    if [[ $STATUS == 0 ]] && grep -qx "peer $want_from" "$T/late-$policy.out" &&
       grep -qx "reply hello from d" "$(jfile "late$policy" out)"; then
      ok "late$policy: a socket the job made on b ${flag[*]:-(default)} reached d from $want_from"
    else
      fail "late$policy: status $STATUS; d saw '$(cat "$T/late-$policy.out")', wanted peer $want_from"
      detail "$(jfile "late$policy" out)" "the job's output"
      detail "$(jfile "late$policy" err)" "the job's stderr"
      shadowd_logs a b
    fi
    kill_job "late$policy"
  done
fi

# A TCP client streaming 200 MiB to a sink on d, migrated a -> b -> c mid-stream.
SINK='import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(60); print("listening", flush=True)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    h.update(d); n += len(d)
c.sendall(("%d bytes sha256 %s\n" % (n, h.hexdigest())).encode())'
sink_on_d() {  # sink_on_d PORT OUT: a one-connection sink on d, listening when this returns
  hx d python3 -c "$SINK" "${ADDR[d]}" "$1" >"$2" 2>&1 & bg_pids+=($!)
  wait_until 20 grep -q '^listening' "$2"
}
if want network && [[ -n $STREAMER ]]; then
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

# `producer | cat | sha256sum` in one shell on a; coreutils' cat under libmig goes
# to b mid-stream (its stdin and stdout are pipes to processes that stay on a).
PRODUCER='import sys, time
for i in range(300000):
    sys.stdout.write("line %d of the producer\n" % i)
    if i % 10000 == 0: sys.stdout.flush(); time.sleep(0.1)'
PIPELINE='python3 -c "$1" | sh -c "echo \$\$ > $2.pid; exec env LD_PRELOAD=$3 cat -" | sha256sum > $2.out
echo "${PIPESTATUS[*]}" > $2.status'
if want network; then
  hx a bash -c "$PIPELINE" pipeline "$PRODUCER" "$T/pipe1" ""
  hx a bash -c "$PIPELINE" pipeline "$PRODUCER" "$T/pipe2" "$LIBMIG" & bg_pids+=($!)
  wait_until 20 test -s "$T/pipe2.pid"
  PID[pipecat]=$(cat "$T/pipe2.pid")
  sleep 0.5  # mid-stream: the producer takes about 3 s
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
    shadowd_logs a b
  fi
fi

# redis-server, a real event-loop server nobody here wrote, with a client talking to
# it while it moves a -> b. RESP by hand: no Python package needed.
REDIS_CLIENT='import socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((addr, port), timeout=30); f = s.makefile("rb")
def cmd(*args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    line = f.readline()
    if line.startswith(b"$") and line != b"$-1\r\n":
        return f.read(int(line[1:]) + 2)[:-2]
    return line.rstrip(b"\r\n")
for i in range(n):
    k, v = b"steady:%d" % i, b"value %d" % i
    if cmd(b"SET", k, v) != b"+OK" or cmd(b"GET", k) != v: print("bad reply at", i); sys.exit(1)
    time.sleep(0.005)
print("%d SET/GET pairs answered" % n)'
# A client that connects once TRIGGER exists (made while the job is frozen): PING,
# and how long PONG took.
LATE_PING='import os, socket, sys, time
while not os.path.exists(sys.argv[3]): time.sleep(0.005)
t = time.monotonic(); s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
s.sendall(b"PING\r\n"); got = s.recv(100)
print("%s after %d ms" % (got.decode().strip(), (time.monotonic() - t) * 1000))'
redis_cli() { hx d redis-cli -h "${ADDR[a]}" -p 7300 "$@"; }
known_keys() { seq 1 1000 | sed 's/^/GET known:/' | redis_cli | sha256sum | cut -d' ' -f1; }
if want network && command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  if start_job redis mig "$(command -v redis-server)" --port 7300 --bind "${ADDR[a]}" --protected-mode no --save '' --appendonly no \
       --daemonize no && wait_until 20 grep -q 'Ready to accept connections' "$(jfile redis out)"; then
    seq 1 1000 | awk '{ print "SET known:" $1 " value-" $1 "-" $1 * 7919 }' | redis_cli >/dev/null
    redis_cli SETRANGE ballast 199999999 x >/dev/null  # 200 MB: a freeze long enough to connect in
    sum1=$(known_keys) size1=$(redis_cli DBSIZE)
    hx d python3 -c "$REDIS_CLIENT" "${ADDR[a]}" 7300 600 >"$T/redis-steady.out" 2>&1 & rc=$!; bg_pids+=($rc)
    sleep 1  # a second into its ~4 s of commands
    hx d python3 -c "$LATE_PING" "${ADDR[a]}" 7300 "$T/redis-go" >"$T/redis-late.out" 2>&1 & lp=$!; bg_pids+=($lp)
    new_migrate_logs
    run_migrate redis b & mp=$!
    sleep 0.1
    touch "$T/redis-go"  # the new client comes mid-migration
    kill -0 "$mp" 2>/dev/null && inflight=yes || inflight=no
    wait "$lp"
    wait "$mp" && ok "redis: a -> b while a client on d runs SET/GET: $(migrated_line)" ||
      { fail "redis: a -> b: migctl exited $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"; shadowd_logs a b; }
    if [[ $inflight == yes ]] && grep -q '^+PONG after ' "$T/redis-late.out"; then
      ok "redis: a client that connected to a's address during the migration waited in the backlog and was answered ($(cat "$T/redis-late.out"))"
    else
      fail "redis: a client connecting during the migration (migration still running: $inflight): $(cat "$T/redis-late.out")"
    fi
    kill -0 "$rc" 2>/dev/null && during=yes || during=no  # the client was still at it
    wait "$rc"
    sum2=$(known_keys) size2=$(redis_cli DBSIZE)
    redis_cli SHUTDOWN NOSAVE >/dev/null 2>&1
    wait_job redis 30
    if [[ $STATUS == 0 && $during == yes && $size1 == 1001 && $size2 == 1601 && $sum1 == "$sum2" ]] &&
       grep -qx "600 SET/GET pairs answered" "$T/redis-steady.out"; then
      ok "redis: the client on d got all 600 SET/GET replies across a -> b; DBSIZE 1001 + 600, the 1000 known keys' checksum unchanged; redis-cli served on b, SHUTDOWN gives status 0 on a"
    else
      fail "redis: status $STATUS, client still running after the hop: $during, DBSIZE $size1 -> $size2, checksum $sum1 -> $sum2; the client says: $(cat "$T/redis-steady.out")"
      detail "$(jfile redis out)" "redis-server's log"
      shadowd_logs a b
    fi
  fi
  kill_job redis
elif want network; then
  echo "# redis-server or redis-cli not installed: the redis check is skipped"
fi

# --- signals through the deputy -------------------------------------------------------------------
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
if want signals; then
  # kill -TERM on a.
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

  # Ctrl-C on a terminal of a: script(1) gives the job a pty; its input comes
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

  # kill -TERM while the migration is in flight: the handler runs once.
  if start_job inflight mig "$SIGJOB" 300 512M && wait_step inflight 2 60; then
    mark_spool b
    new_migrate_logs
    run_migrate inflight b 120 &
    mpid=$!
    bg_pids+=("$mpid")
    if wait_until 60 eval 'spool_growing b || ! migrate_running'; then :; fi
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

  # kill -KILL of the deputy ends the job on b.
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
fi

# --- failures: the job stays on a ------------------------------------------------------------------
if want failures && [[ -n ${FEATURE[counter]-} ]]; then
  # stays_home NAME EXE WHAT: the migration failed cleanly and the job still runs on a.
  stays_home() {
    local name=$1 exe=$2 what=$3 w
    w=$(where "$name")
    if one_line_reason && job_at_home "$name" "$exe" && [[ $(host_of "$w") == a ]]; then
      ok "$name: $what: migctl exited $MIG_RC, job still running on a: $(cat "$MIG_ERR")"
    else
      fail "$name: $what: migctl exited $MIG_RC; one-line reason: $(one_line_reason && echo yes || echo no); still the program on a: $(job_at_home "$name" "$exe" && echo yes || echo no); list on a shows it at '${w:-no row}'"
      detail "$MIG_OUT" "migctl stdout"
      detail "$MIG_ERR" "migctl stderr"
    fi
  }
  if start_job stay mig "${FEATURE[counter]}" 100 && wait_step stay 3 30; then
    migrate stay "${ADDR[b]}:7999"
    stays_home stay "${FEATURE[counter]}" "to ${ADDR[b]}:7999 where nothing listens"

    procs_before=$(others_on d) spool_before=$(spool_of d)
    migrate stay "${ADDR[d]}:$PORT"
    stays_home stay "${FEATURE[counter]}" "to d (${ADDR[d]}:$PORT), whose shadowd has another cluster key"
    procs_after=$(others_on d) spool_after=$(spool_of d)
    if [[ -z $spool_after && $procs_after == "$procs_before" ]]; then
      ok "stay: nothing restored on d: its spool $SPOOL is empty and no process appeared"
    else
      fail "stay: on d after the refused migration: spool: '${spool_after}' (before: '$spool_before'); processes: '$(tr '\n' ';' <<<"$procs_after")' (before: '$(tr '\n' ';' <<<"$procs_before")')"
      shadowd_logs d
    fi
    if grep -Eiq "key|auth|refus|denied|login" "$MIG_ERR"; then
      ok "stay: the reason names the key/authentication: $(cat "$MIG_ERR")"
    else
      fail "stay: the reason for d's refusal does not say it is the cluster key: $(cat "$MIG_ERR")"
    fi
    compare stay counter-ref 3
  else
    fail "stay: the job did not get to STEP 3 on a"
  fi

  if [[ -n ${FEATURE[memory]-} ]] && start_job bigmem mig "${FEATURE[memory]}" 512M 40 && wait_step bigmem 2 60; then
    mark_spool b
    new_migrate_logs
    run_migrate bigmem b 120 &
    mpid=$!
    bg_pids+=("$mpid")
    if wait_until 60 eval 'spool_growing b || ! migrate_running'; then :; fi
    if migrate_running; then
      kill -KILL "${SD[b]}"
      killed_at="$(stat -c '%s bytes of the image on b' "$(new_image b)" 2>/dev/null)"
      killed_at=${killed_at:-the image on b}
      wait_until 90 eval '! migrate_running'
    else
      killed_at=""
    fi
    wait "$mpid"
    MIG_RC=$?
    if [[ -z $killed_at ]]; then
      fail "bigmem: migctl migrate ended (exit $MIG_RC) before the transfer to b started: could not kill b's shadowd in the middle"
      detail "$MIG_OUT" "migctl stdout"
      detail "$MIG_ERR" "migctl stderr"
    else
      stays_home bigmem "${FEATURE[memory]}" "b's shadowd killed during the transfer ($killed_at)"
    fi
    compare bigmem bigmem-ref 0
  elif [[ -n ${FEATURE[memory]-} ]]; then
    fail "bigmem: the 512 MiB job did not get to STEP 2 on a"
  fi
fi

# --- migctl nodes with a node down ------------------------------------------------------------------
kill -KILL "${SD[b]}" 2>/dev/null   # b's shadowd dies (if the failure cases did not kill it)
kill -TERM "${SD[c]}"
if wait_until 20 eval '! kill -0 "${SD[c]}" 2>/dev/null' && ! grep -q "stopping: " "$T/shadowd-c.log"; then
  ok "shadowd on c stopped on SIGTERM: $(tail -n 1 "$T/shadowd-c.log")"
else
  fail "shadowd on c did not stop cleanly on SIGTERM"
  shadowd_logs c
fi
hm a nodes >"$T/nodes.2" 2>&1
states="a:$(awk '$1 == "a" { print $3 }' "$T/nodes.2") b:$(awk '$1 == "b" { print $3 }' "$T/nodes.2") c:$(awk '$1 == "c" { print $3 }' "$T/nodes.2")"
if [[ $states == "a:up b:unreachable c:unreachable" ]]; then
  ok "migctl nodes on a: a up; b (shadowd killed) and c (shadowd stopped) unreachable"
else
  fail "migctl nodes on a, with b's shadowd killed and c's stopped: $states"
  detail "$T/nodes.2" "migctl nodes"
fi

if (( failures )); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
