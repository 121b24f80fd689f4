#!/bin/bash
# completion_test.sh: migctl's bash completion (completion.bash) driven as bash drives
# it: COMP_WORDS and COMP_CWORD set, _migctl called, COMPREPLY checked. Commands and
# options come from migctl's --help; the PIDs a PID argument offers are the jobs
# `migctl list` shows (a job run under libmig.so here, with a shadowd on loopback), the
# names --to offers those of `migctl nodes`; without a shadowd, checkpoint still offers
# the job, found by its shim's socket.
#
# usage: completion_test.sh MIGCTL SHADOWD LIBMIG COMPLETION.BASH
set -u
migctl=$(realpath "$1") shadowd=$(realpath "$2") libmig=$(realpath "$3") script=$(realpath "$4")
failures=0
ok() { echo "ok    $1"; }
bad() { echo "FAIL  $1"; failures=$((failures + 1)); }
dir=$(mktemp -d /tmp/mig-completion.XXXXXX)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

# shellcheck source=completion.bash
source "$script"

# complete WORDS...: completes the last word (may be "") of `WORDS`; COMPREPLY, one per line.
complete_words() {
  COMP_WORDS=("$migctl" "$@")
  COMP_CWORD=$(($# ))
  COMP_LINE="${COMP_WORDS[*]}"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _migctl
  printf '%s\n' "${COMPREPLY[@]}"
}
# expect WHAT "WORDS..." WANTED...: every WANTED word is offered.
expect() {
  local what=$1 words=$2 got w missing=()
  shift 2
  # shellcheck disable=SC2086
  got=$(complete_words $words)
  [ "${words: -1}" = " " ] && got=$(complete_words $words "")
  for w in "$@"; do grep -qxF -- "$w" <<<"$got" || missing+=("$w"); done
  if [ ${#missing[@]} -eq 0 ]; then ok "$what: offers $*"
  else bad "$what: '$words<TAB>' does not offer ${missing[*]}; offers: $(tr '\n' ' ' <<<"$got")"; fi
}
# expect_only WHAT "WORDS..." WANTED...: exactly these are offered.
expect_only() {
  local what=$1 words=$2 got
  shift 2
  # shellcheck disable=SC2086
  got=$(complete_words $words | sort | tr '\n' ' ')
  [ "${words: -1}" = " " ] && got=$(complete_words $words "" | sort | tr '\n' ' ')
  local want
  want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
  if [ "$got" = "$want" ]; then ok "$what: offers exactly $*"
  else bad "$what: '$words<TAB>' offers '$got', want '$want'"; fi
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'here 127.0.0.1:%s\nthere 127.0.0.1:%s\n' "$port" "$port" > "$dir/nodes"
head -c 32 /dev/urandom > "$dir/key"
chmod 600 "$dir/key"
"$shadowd" --listen "127.0.0.1:$port" --cluster-key "$dir/key" --nodes "$dir/nodes" --socket "$dir/sock" --log "$dir/shadowd.log" &
pids+=($!)
LD_PRELOAD=$libmig sleep 120 &
job=$!
pids+=("$job")
export MIG_SHADOWD_SOCKET=$dir/sock
# Bounded wait (10 s) until shadowd answers and lists the job.
for _ in $(seq 200); do
  "$migctl" list 2>/dev/null | awk '{print $1}' | grep -qx "$job" && break
  sleep 0.05
done
"$migctl" list 2>/dev/null | awk '{print $1}' | grep -qx "$job" || bad "migctl list never showed the job $job: $(cat "$dir/shadowd.log")"

expect "commands" " " run checkpoint restart image migrate list nodes history
expect_only "a command's prefix" "mi" migrate
expect_only "history's prefix" "hi" history
expect "migrate's options" "migrate --" --to --anywhere --json --socket --local-net --rebind --help
expect "checkpoint's options" "checkpoint --" --output --stop --timeout --json
expect_only "image's sub-command" "image " info merge
expect "image info's options" "image info --" --verify --plan --json
expect "history's options" "history --" --json --socket
expect "migrate's PID: the job from migctl list" "migrate " "$job"
expect_only "--to: the names from migctl nodes" "migrate $job --to " here there
expect_only "--to after --socket PATH on the line" "migrate --socket $dir/sock $job --to th" there
expect "checkpoint's PID" "checkpoint -o $dir/x.img " "$job"
touch "$dir/image-file.img"
expect_only "restart's FILE: files" "restart $dir/image-f" "$dir/image-file.img"
expect "run's PROGRAM: commands" "run slee" sleep
n=$(complete_words migrate "$job" --to here "" | grep -c .)
[ "$n" -eq 0 ] && ok "after migrate's PID and destination: nothing offered" ||
  bad "after 'migrate $job --to here <TAB>': $n offered, want none"

# Without shadowd: checkpoint's PID from the shim's socket.
MIG_SHADOWD_SOCKET=$dir/none expect "checkpoint's PID without a shadowd" "checkpoint " "$job"

[ "$failures" -eq 0 ]
