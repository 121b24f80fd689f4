# Sourced by the scenarios of live migration between simulated hosts
# (tests/cluster/*.sh but the loopback_* ones), each checked the way a user sees it.
# cluster_up makes a cluster (tests/harness/mig-hosts) of hosts a, b, c with one
# shadowd each (same cluster key, a nodes file naming a b c) and, if asked, a host d
# whose shadowd has another key; every job starts on a, under LD_PRELOAD=libmig.so,
# from a shell on a that waits for it, with its files in a's private
# /tmp/mig-host-a/. Every check prints one "ok - ..." / "FAIL - ..." line (details
# below a FAIL as "#   " lines; lib/report.sh); on any failure cluster_end shows
# the end of every shadowd's log and every host's newest restore log.
# Every wait is bounded and polls (no sleeps as synchronisation, no timing
# thresholds). Exit status: 0 all passed, 1 a check failed, 77 skipped (not root,
# no namespaces here, or a part of mig not built yet; the reason is printed), 2 usage.
#
# Options, the same for every scenario (meson passes them all; a scenario says
# which it needs with cluster_require):
#   --mig-hosts PATH --host-init PATH    the harness (required)
#   --shadowd PATH --deputy PATH --migctl PATH --libmig PATH
#   --rwjob PATH --sigjob PATH           jobs/rwjob.c, jobs/sigjob.c
#   --netserver PATH --evserver PATH     jobs/echo_server.c, jobs/epoll_echo_server.c
#   --latejob PATH --streamer PATH       jobs/late_connect.c, jobs/stream_client.c
#   --feature NAME PATH                  a feature program (tests/features); repeatable
#   --keep                               keep the work directory (logs) and print its path
#
# A scenario:
#   source "$(dirname "$0")/lib/cluster_lib.sh"
#   cluster_args "$@"; cluster_require SHADOWD DEPUTY MIGCTL LIBMIG ...; cluster_up a b c [d]
#   ...checks...
#   cluster_end
set -uo pipefail
CLUSTER_LIB_DIR=$(dirname "${BASH_SOURCE[0]}")
source "$CLUSTER_LIB_DIR/report.sh"

SCENARIO=$(basename "$0")
# --help: the scenario's header (its lines 2 up to the source line), then the options.
usage() {
  sed -n '2,/^source /p' "$0" | sed '$d; s/^# \{0,1\}//'
  echo
  sed -n '/^# Options, the same/,/^#   --keep/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
die_usage() { echo "$SCENARIO: $*" >&2; echo "(see $SCENARIO --help)" >&2; exit 2; }
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

# cluster_args "$@": reads the options; skips (77) without root or namespaces.
cluster_args() {
  HOSTS="" HOST_INIT="" SHADOWD="" DEPUTY="" MIGCTL="" LIBMIG="" RWJOB="" SIGJOB="" NETSERVER="" EVSERVER="" LATEJOB="" STREAMER=""
  KEEP=0
  declare -gA FEATURE=()
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
      --keep) KEEP=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die_usage "unknown argument '$1'" ;;
    esac
  done
  [[ -n $HOSTS && -n $HOST_INIT ]] || die_usage "--mig-hosts and --host-init are required"
  if (( EUID != 0 )); then
    echo "SKIP: needs root to make simulated hosts (namespaces, veths, a bridge)"
    exit 77
  fi
  HOSTS=$(abspath "$HOSTS")
  MIG_HOST_INIT=$(abspath "$HOST_INIT")
  export MIG_HOST_INIT
  if ! why=$("$HOSTS" check 2>&1); then
    echo "SKIP: ${why#mig-hosts: }"
    exit 77
  fi
  local f v
  for f in "${!FEATURE[@]}"; do FEATURE[$f]=$(abspath "${FEATURE[$f]}"); done
  for v in SHADOWD DEPUTY MIGCTL LIBMIG RWJOB SIGJOB NETSERVER EVSERVER LATEJOB STREAMER; do
    [[ -n ${!v} ]] && printf -v "$v" '%s' "$(abspath "${!v}")"
  done
}
# cluster_require VAR...: skips (77) unless each of these parts (SHADOWD, RWJOB, ...) is built.
cluster_require() {
  local v p
  for v in "$@"; do
    p=${!v}
    if [[ -z $p || ! -e $p ]]; then
      echo "SKIP: ${v,,} is not built yet (${p:-no path given})"
      exit 77
    fi
  done
}

# cluster_require_features NAME...: skip (77) unless every feature program is given.
cluster_require_features() {
  local f
  for f in "$@"; do
    if [[ -z ${FEATURE[$f]-} ]]; then
      echo "SKIP: the feature program $f is not given (--feature $f PATH)"
      exit 77
    fi
  done
}

# Bounded calls into the hosts; the hosts see T (and build dirs under /tmp) via --share.
mh() { timeout -k 5 60 "$HOSTS" "$@"; }
hx() { local h=$1; shift; timeout -k 5 60 "$HOSTS" exec "$C" "$h" -- "$@"; }
hm() { local h=$1; shift; timeout -k 5 60 "$HOSTS" exec "$C" "$h" -- "$MIGCTL" "$@"; }
hp() { echo "/proc/${INIT[$1]}/root$2"; }    # a host's file, as the machine reaches it

# --- the cluster ----------------------------------------------------------------------
PORT=7070
SD_SOCK=/tmp/mig-$(id -u)/shadowd.sock   # shadowd's default socket, in each host's own /tmp
SPOOL=/tmp/mig-$(id -u)/spool
bg_pids=()                    # our own background processes (machine side)
declare -A ADDR INIT SD PID SHELL_PID
CLUSTER_HOSTS=()
cleanup() {
  local p
  for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [[ -n ${C-} ]] && timeout 60 "$HOSTS" down "$C"
  if (( KEEP )); then echo "# kept $T"; else rm -rf "$T"; fi
}
SHADOWD_ARGS=()               # more shadowd options, set by a scenario before cluster_up
declare -A SHADOWD_ENV        # NAME=VALUE words for one host's shadowd (e.g. SHADOWD_ENV[b]=MIG_LAZY_NO_FILL=1)
CLUSTER_POLICY=""             # a policy file's text: every shadowd of cluster_up gets it (--policy)
start_shadowd() {  # start_shadowd HOST KEYFILE
  SD[$1]=$(mh spawn "$C" "$1" "$T/shadowd-$1.log" -- env MIG_DEPUTY="$DEPUTY" MIG_MIGCTL="$MIGCTL" ${SHADOWD_ENV[$1]-} \
    "$SHADOWD" --listen "${ADDR[$1]}:$PORT" --cluster-key "$2" --nodes "$T/nodes" ${SHADOWD_ARGS[@]+"${SHADOWD_ARGS[@]}"})
}
shadowd_ready() { [[ -S $(hp "$1" "$SD_SOCK") ]] && grep -q "listening on" "$T/shadowd-$1.log"; }
# cluster_up a [b [c]] [d]: the hosts, each with its shadowd listening (d's with
# another cluster key; the nodes file names those of a b c that are up); exits 1 if
# that fails.
cluster_up() {
  local p d h a out share
  CLUSTER_HOSTS=("$@")
  C=migr$$
  T=$(mktemp -d /tmp/mig-migration.XXXXXX) || { echo "FAIL - mktemp"; exit 1; }
  chmod 755 "$T"
  trap cleanup EXIT
  trap 'echo "FAIL - interrupted (test timeout?)"; exit 1' TERM INT HUP
  share=(--share "$T")
  for p in "$SHADOWD" "$DEPUTY" "$MIGCTL" "$LIBMIG" $RWJOB $SIGJOB $NETSERVER $EVSERVER $LATEJOB $STREAMER "${FEATURE[@]}"; do
    d=$(dirname "$(readlink -f "$p")")
    [[ $d == /tmp/* ]] && share+=(--share "$d")
  done
  timeout 60 "$HOSTS" gc
  if ! out=$(mh up --owner $$ "${share[@]}" "$C" "$@" 2>"$T/up.err"); then
    echo "FAIL - mig-hosts up: $(cat "$T/up.err")"
    exit 1
  fi
  while read -r h a; do ADDR[$h]=$a; INIT[$h]=$(mh pid "$C" "$h"); done <<<"$out"
  for h in a b c; do [[ -z ${ADDR[$h]-} ]] || echo "$h ${ADDR[$h]}:$PORT"; done >"$T/nodes"
  head -c 32 /dev/urandom >"$T/key"
  head -c 32 /dev/urandom >"$T/other.key"
  chmod 600 "$T/key" "$T/other.key"
  if [[ -n $CLUSTER_POLICY ]]; then
    printf '%s\n' "$CLUSTER_POLICY" >"$T/policy.toml"
    SHADOWD_ARGS+=(--policy "$T/policy.toml")
  fi
  for h in "$@"; do
    if [[ $h == d ]]; then start_shadowd d "$T/other.key"; else start_shadowd "$h" "$T/key"; fi
  done
  for h in "$@"; do
    if ! wait_until 20 shadowd_ready "$h"; then
      fail "shadowd on $h did not come up (socket $SD_SOCK, 'listening on' in its log)"
      detail "$T/shadowd-$h.log" "shadowd log of $h"
      exit 1
    fi
  done
  local at="" with_d=""
  for h in "$@"; do at+=" ${ADDR[$h]}"; done
  [[ -n ${ADDR[d]-} ]] && with_d=" (d with another cluster key)"
  ok "hosts $* at${at}, shadowd listening on each$with_d"
}
shadowd_logs() {  # the ends of the shadowd logs, under a FAIL
  local h
  for h in "$@"; do detail "$T/shadowd-$h.log" "shadowd log of $h"; done
}
# cluster_end: one summary line and the exit status; on a failure, the logs of every
# process involved: each shadowd's and each host's newest restore log.
cluster_end() {
  local h
  if (( failures )); then
    echo "# the logs of every shadowd and restore, after the failure:"
    for h in "${CLUSTER_HOSTS[@]}"; do
      shadowd_logs "$h"
      restore_log "$h"
    done
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "all checks passed"
  exit 0
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
# undisturbed_cpu_job spin|idle: the undisturbed run of $CPU_JOB (jobs/cpu_job.c) as
# job "ref", its GO file there from the start; waited for; the scenario ends (FAIL)
# if it does not finish.
undisturbed_cpu_job() {
  mkdir -p "$(jfile ref data)"
  touch "$(jfile ref data)/go"
  start_job ref plain "$CPU_JOB" @DIR@/go "$1" || cluster_end
  if ! wait_job ref 120 || ! grep -qx done "$(jfile ref out)"; then
    fail "the undisturbed run did not finish: status $STATUS"
    cluster_end
  fi
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
  for h in "${CLUSTER_HOSTS[@]}"; do [[ $1 == "${ADDR[$h]}:$PORT" ]] && { echo "$h"; return; }; done
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

# hop NAME FROM TO [K]: once the job printed 3 more steps (or STEP K: a job held there
# by MIG_FEATURE_HOLD), migctl migrate it to TO (a host name, by its nodes-file name);
# then `migctl list` on a must show it at TO.
# HOP_ARGS: more migctl migrate options (a scenario's), e.g. --only.
hop() {
  local name=$1 from=$2 to=$3 k=${4:-} r
  [[ -n $k ]] || k=$(( $(last_step "$name") + 3 ))
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
  migrate "$name" "$to" 40 ${HOP_ARGS[@]+"${HOP_ARGS[@]}"}
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
    shadowd_logs "${CLUSTER_HOSTS[@]}"
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

# loop_output_exact NAME WHAT LOGHOST: the job (a loop printing "STEP i" each round
# and "done N" once its STOP file exists) is told to stop, ends with status 0, and
# printed exactly STEP 0 .. N-1 then "done N" and nothing on stderr, as an undisturbed
# run would; WHAT says what the rounds went through. Else LOGHOST's restore log.
loop_output_exact() {
  local name=$1 what=$2 loghost=$3 n want=""
  touch "$(jfile "$name" STOP)"
  if wait_job "$name" 30; then
    n=$(tail -n 1 "$(jfile "$name" out)" | awk '$1 == "done" { print $2 }')
    want=$( (( n > 0 )) && { for ((i = 0; i < n; i++)); do echo "STEP $i"; done; echo "done $n"; })
  fi
  if [[ $STATUS == 0 && -n $want ]] && [[ $(cat "$(jfile "$name" out)") == "$want" && ! -s $(jfile "$name" err) ]]; then
    ok "$name: its $n rounds ($what) printed what an undisturbed run prints, nothing on stderr, status 0"
  else
    fail "$name: status $STATUS, output (or its empty stderr) not the undisturbed run's ($what)"
    diff <(echo "$want") "$(jfile "$name" out)" | head -n 8 | sed 's/^/#     /'; detail "$(jfile "$name" err)" "its stderr"
    restore_log "$loghost"
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

# marker_lines_once JOB MARK: a jobs/marker_job.c run as JOB printed "done N"; the lines
# "MARK 1" .. "MARK N" are, each exactly once and in order, in its home file
# (data/marker.txt) and at its home TCP server ($T/JOB.received, once the recorder says
# "closed"). Sets MARKED to N; on a difference prints the first lines of it and returns 1.
marker_lines_once() {
  local job=$1 mark=$2 want
  MARKED=$(awk '$1 == "done" { print $2 }' "$(jfile "$job" out)")
  want=$(seq 1 "${MARKED:-0}" | sed "s/^/$mark /")
  wait_until 10 grep -q '^closed' "$T/$job.recorder"
  [[ -n $MARKED && $(cat "$(jfile "$job" data/marker.txt)") == "$want" && $(cat "$T/$job.received") == "$want" ]] &&
    return 0
  diff <(echo "$want") "$(jfile "$job" data/marker.txt)" | head -20 | sed 's/^/#   home file: /'
  diff <(echo "$want") "$T/$job.received" | head -20 | sed 's/^/#   home server: /'
  return 1
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
# migrate_in_background NAME TO [LIMIT]: migctl migrate (run_migrate) in the background,
# its PID in mpid; returns once the transfer to TO has started (or the migrate ended:
# migrate_running tells). The moment to act "during the migration".
migrate_in_background() {
  local to=$2
  mark_spool "$to"
  new_migrate_logs
  run_migrate "$@" &
  mpid=$!
  bg_pids+=("$mpid")
  wait_until 60 eval 'spool_growing "$to" || ! migrate_running'
  return 0
}
spool_of() { hx "$1" ls -A "$SPOOL" 2>&1 | tr '\n' ' ' | sed 's/ $//'; }

# wait_refs NAME...: the reference runs (start_job NAME plain ...: undisturbed, without
# mig, all started at once) end with PASS in their output.
wait_refs() {
  local r
  for r in "$@"; do
    if ! wait_job "$r" 120 || ! grep -qx PASS "$(jfile "$r" out)"; then
      fail "reference run $r (without mig) did not pass: status $STATUS"
      detail "$(jfile "$r" err)" "its stderr"
    fi
  done
}
