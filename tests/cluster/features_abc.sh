#!/bin/bash
# features_abc.sh: each feature program (tests/features, --feature), migrated
# a -> b -> c mid-run (counter also back home to a): stdout, stderr and exit status
# those of an undisturbed run on a without mig, seen by the waiting parent on a; its
# PID unchanged (migctl list on a shows it at each host as soon as migctl migrate
# returns); nothing of it left on b after b -> c; its files only in a's private
# directory. The undisturbed runs start first, all at once, and run beside the moves.
#
# usage: features_abc.sh OPTIONS (below): the programs given with --feature; meson runs
# it as tests 'migration-features-process' and 'migration-features-fds' (suite
# cluster), each with half of the programs (tests/cluster/meson.build).
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG

declare -A FARGS=(
  [counter]="100" [files]="@DIR@ 60" [threads]="60" [signals]="60" [memory]="256M 256"
  [avx]="40" [unlinked]="@DIR@ 60" [private_map]="@DIR@ 60" [shared_anon]="60"
  [shared_anon_alias]="60" [malloc_heavy]="40" [pipe_read]="60" [pids]="60"
  [mutex_kinds]="60" [proc_attrs]="@DIR@ 60" [eventfd]="60" [timerfd]="60" [signalfd]="60"
  [epoll]="60" [libuv]="60" [stack_growth]="30" [posix_timers]="60" [file_locks]="@DIR@ 60"
  [fd_numbers]="@DIR@ 24")
declare -A FSTATUS=([counter]=3 [pids]=143)
# counter first: the longest run (100 steps of 100 ms), it ends while the others move
# rather than after them.
features=()
for f in counter "${!FARGS[@]}"; do
  [[ -n ${FEATURE[$f]-} && " ${features[*]} " != *" $f "* ]] && features+=("$f")
done
if (( ${#features[@]} == 0 )); then
  echo "SKIP: no feature program given (--feature NAME PATH)"
  exit 77
fi
# Each program is one process, but for file_locks' checker: a child born before any
# move that must stay at home (it checks the locks from there), so the hops move the
# process alone (--only; without it a process with children is refused).
HOP_ARGS=(--only)
cluster_up a b c

# --- reference runs, undisturbed, without mig, all at once --------------------------------
# Waited for after the moves (below), which need nothing of them.
refs=()
for f in "${features[@]}"; do
  # shellcheck disable=SC2086  # FARGS are words
  start_job "$f-ref" plain "${FEATURE[$f]}" ${FARGS[$f]} && refs+=("$f-ref")
done

# --- each a -> b -> c (counter: -> a), one after the other -----------------------------------
# A job is not waited for after its hops: it runs to its end on c while the next one
# moves (b is empty again by then), and every end is checked below.
moved=()
for f in "${features[@]}"; do
  # shellcheck disable=SC2086
  start_job "$f" mig "${FEATURE[$f]}" ${FARGS[$f]} || continue
  moved+=("$f")
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
done

# --- each as undisturbed, its files on a only ------------------------------------------------
wait_refs "${refs[@]}"
for f in "${moved[@]}"; do
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

cluster_end
