#!/bin/bash
# drain.sh: `migctl drain`. Three jobs started on a are moved to b; `migctl drain b` on a
# makes b refuse new jobs and moves all three off b (each to the least loaded host that
# accepts it, a or c), one line per job saying where it went and its freeze time (also
# in b's migctl history); each then finishes with exactly the output of an undisturbed
# run. `migctl nodes` shows b drained (also in --json); a migrate to b is refused with
# the one line "b is drained"; `migctl undrain` (on b) takes jobs again and a job moves
# to b once more. Then `migctl drain --all` on a drains a itself: the jobs there, also
# one that never moved (at home), leave for b or c. A process tree (a root and two
# children in a group of their own) on b is drained whole, to one host; once its root
# runs alone on c, a drain of b leaves its children there, saying why; the tree ends as
# an undisturbed run does, its group signalled on the way.
#
# usage: drain.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-drain' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b c

# The undisturbed run: its GO file is there from the start.
mkdir -p "$(jfile ref data)"
touch "$(jfile ref data)/go"
start_job ref plain "$CPU_JOB" @DIR@/go idle || cluster_end
jobs=(j1 j2 j3)
for j in "${jobs[@]}"; do
  start_job "$j" mig "$CPU_JOB" @DIR@/go idle || cluster_end
done
for j in "${jobs[@]}"; do
  if wait_step "$j" 3 30 && migrate "$j" b && [[ $(host_of "$(where "$j")") == b ]]; then
    ok "$j: moved a -> b: $(migrated_line)"
  else
    fail "$j: could not move it to b at STEP 3 (last: STEP $(last_step "$j"); migctl: ${MIG_RC-not run} $(cat "${MIG_ERR-/dev/null}" 2>/dev/null | tr "\n" " "))"
    detail "$(jfile "$j" err)" "its stderr"
    shadowd_logs a b
    for k in "${jobs[@]}"; do kill_job "$k"; done
    cluster_end
  fi
done

# --- migctl drain b, asked on a ---------------------------------------------------------------
timeout -k 5 120 "$HOSTS" exec "$C" a -- "$MIGCTL" drain b --time-limit 90 >"$T/drain.out" 2>"$T/drain.err"
rc=$?
moved=$(grep -cE '^PID [0-9]+ of a \(.*\): moved to [ac], frozen [0-9.]+ ms$' "$T/drain.out")
if (( rc == 0 )) && [[ $(head -n 1 "$T/drain.out") == "b is drained: it takes no new jobs; 3 job(s) to move" ]] &&
   (( moved == 3 )) && [[ $(wc -l <"$T/drain.out") == 4 ]]; then
  ok "migctl drain b: three lines, one per job: $(tail -n 3 "$T/drain.out" | sed 's/ (.*)//' | tr '\n' ';')"
else
  fail "migctl drain b: exit $rc, $moved job(s) reported moved"
  detail "$T/drain.out" "its output"
  detail "$T/drain.err" "its stderr"
  shadowd_logs a b c
fi
bad=""
for j in "${jobs[@]}"; do
  w=$(host_of "$(where "$j")")
  [[ $w == a || $w == c ]] || bad+=" $j:$w"
  grep -qE "^PID ${PID[$j]} of a .*: moved to $w, frozen" "$T/drain.out" || bad+=" $j(not reported at $w)"
done
if [[ -z $bad ]]; then
  ok "after the drain, migctl list on a shows each job where the drain said, none on b"
else
  fail "after the drain:$bad"
  sed 's/^/#     /' "$T/list.last"
fi

# The drain's moves are in b's history (migctl history), as b's own.
hm b history --json >"$T/history.json" 2>&1
if python3 -c 'import json,sys
m=[x for x in json.load(open(sys.argv[1]))["moves"] if x["from"] == "b"]
sys.exit(0 if len(m) == 3 and all(x["ok"] and x["to"] in ("a", "c") and x["freezeMs"] > 0 for x in m) else 1)' "$T/history.json"; then
  ok "migctl history on b lists the drain's three moves, from b to a or c, with their freeze times"
else
  fail "migctl history on b does not list the drain's three moves"
  detail "$T/history.json" "migctl history --json on b"
fi

# --- b is drained: nodes says so, and refuses a job -----------------------------------------
hm a nodes >"$T/nodes.1" 2>&1
hm a nodes --json >"$T/nodes.json" 2>&1
if [[ $(awk '$1 == "b" { print $3 }' "$T/nodes.1") == drained && $(awk '$1 == "c" { print $3 }' "$T/nodes.1") == up ]] &&
   python3 -c 'import json,sys; n={x["name"]: x for x in json.load(open(sys.argv[1]))["nodes"]}
sys.exit(0 if n["b"]["drained"] is True and n["c"]["drained"] is False else 1)' "$T/nodes.json"; then
  ok "migctl nodes on a: b drained, c up (and \"drained\": true for b in --json)"
else
  fail "migctl nodes on a does not show b drained"
  detail "$T/nodes.1" "migctl nodes"
  detail "$T/nodes.json" "migctl nodes --json"
fi
start_job j4 mig "$CPU_JOB" @DIR@/go idle || cluster_end
wait_step j4 3 30
migrate j4 b
if one_line_reason && grep -q ": b is drained (migctl undrain there takes jobs again)$" "$MIG_ERR" && job_at_home j4 "$CPU_JOB"; then
  ok "a migrate to the drained b is refused, the job still on a: $(cat "$MIG_ERR")"
else
  fail "a migrate to the drained b: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
  shadowd_logs a b
fi

# --- undrain: b takes jobs again ----------------------------------------------------------------
hm b undrain >"$T/undrain.out" 2>&1
if [[ $(cat "$T/undrain.out") == "b takes jobs again" ]] && migrate j4 b && [[ $(host_of "$(where j4)") == b ]]; then
  ok "migctl undrain on b: b takes jobs again, j4 moved to it: $(migrated_line)"
else
  fail "after migctl undrain on b ($(cat "$T/undrain.out")): migrate to b exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
fi

# --- a process tree is drained whole; a member whose root runs elsewhere stays ------------------
# jobs/group_job.py: a root and two children in a group of their own, moved a -> b as a
# tree. `migctl drain b` moves the three together (one line each, one host, one freeze);
# after the tree moved back to b and its root alone (--only) to c, a drain of b moves
# neither child (each line says its root runs on c). Then the group is signalled on and
# from a (signals.sh) and the tree ends as an undisturbed run does.
GROUP_JOB=$(readlink -f "$(dirname "$0")/jobs/group_job.py")
tree_pids() { awk '$1 == "children" { print $2, $3 }' "$(jfile "$1" err)"; }
group_end() {  # group_end NAME: go; at STEP 2 kill -TERM -PGID on a
  touch "$(jfile "$1" data)/go"
  wait_step "$1" 2 30 && hx a kill -TERM -- "-$(awk '$1 == "pgid" { print $2 }' "$(jfile "$1" err)")"
}
if start_job gref plain /usr/bin/python3 "$GROUP_JOB" @DIR@ && wait_step gref 1 30 && group_end gref &&
   wait_job gref 30 && [[ $STATUS == 7 ]] &&
   start_job tree mig /usr/bin/python3 "$GROUP_JOB" @DIR@ && wait_step tree 1 30 && migrate tree b; then
  read -r c1 c2 <<<"$(tree_pids tree)"
  timeout -k 5 120 "$HOSTS" exec "$C" a -- "$MIGCTL" drain b --time-limit 60 >"$T/drain-tree.out" 2>&1
  to=$(awk -v p="${PID[tree]}" '$1 == "PID" && $2 == p { sub(/,$/, "", $(NF-3)); print $(NF-3) }' "$T/drain-tree.out")
  frozen=$(grep -E "^PID (${PID[tree]}|$c1|$c2) of a \(.*\): moved to $to, frozen [0-9.]+ ms$" "$T/drain-tree.out" |
           sed 's/.*frozen //' | sort -u | wc -l)
  w=""
  for p in "${PID[tree]}" "$c1" "$c2"; do w+=" $(host_of "$(hm a list 2>/dev/null | awk -v p="$p" '$1 == p { print $3 }')")"; done
  if [[ -n $to && $frozen == 1 && $w == " $to $to $to" ]]; then
    ok "tree: migctl drain b moved the tree whole: its root ${PID[tree]} and children $c1 $c2 to $to, one line each, one freeze"
  else
    fail "tree: migctl drain b: root to '${to}', $frozen distinct freeze time(s) over its lines (want 1), list on a:$w"
    detail "$T/drain-tree.out" "its output"
    shadowd_logs b
  fi
  hm b undrain >/dev/null 2>&1
  if migrate tree b && migrate tree c 40 --only && [[ $(host_of "$(where tree)") == c ]]; then
    timeout -k 5 120 "$HOSTS" exec "$C" a -- "$MIGCTL" drain b --time-limit 60 >"$T/drain-split.out" 2>&1
    rc=$?
    why="could not move: not moved alone: the root of its process tree, PID ${PID[tree]}, runs on c "
    if (( rc == 1 )) && grep -qF "PID $c1 of a (" "$T/drain-split.out" && grep -qF "PID $c2 of a (" "$T/drain-split.out" &&
       [[ $(grep -cF "): $why" "$T/drain-split.out") == 2 ]] &&
       [[ $(host_of "$(hm a list | awk -v p="$c1" '$1 == p { print $3 }')") == b ]]; then
      ok "tree: its root alone on c, migctl drain b (exit 1) left both children on b: $(grep -m1 -F "PID $c1 " "$T/drain-split.out")"
    else
      fail "tree: its root alone on c, migctl drain b: exit $rc"
      detail "$T/drain-split.out" "its output"
    fi
    hm b undrain >/dev/null 2>&1
  else
    fail "tree: moving it back to b, then its root alone to c: exit $MIG_RC: $(tr '\n' ' ' <"$MIG_ERR")"
  fi
  group_end tree
  compare tree gref 7 nostderr
else
  fail "tree: the undisturbed run, or the tree's start and move to b: status $STATUS, migrate exit ${MIG_RC-not run}"
  detail "$(jfile gref out)" "the undisturbed run's stdout"
fi
kill_job tree
kill_job gref

# --- migctl drain --all on a (NODE: this host): the jobs at home there leave too --------------
start_job j5 mig "$CPU_JOB" @DIR@/go idle || cluster_end
wait_step j5 3 30
on_a=()
for j in "${jobs[@]}" j4 j5; do [[ $(host_of "$(where "$j")") == a ]] && on_a+=("$j"); done
# A plain drain of a moves no job whose home is a: those back at a (from b's drain) run
# there as at home, like j5, which never moved; they stay unless --all.
hm a drain --time-limit 30 >"$T/drain-plain.out" 2>&1
stayed=""
for j in "${on_a[@]}"; do [[ $(host_of "$(where "$j")") == a ]] || stayed+=" $j:$(host_of "$(where "$j")")"; done
if [[ $(head -n 1 "$T/drain-plain.out") == "a is drained: it takes no new jobs; 0 job(s) to move" && -z $stayed ]]; then
  ok "migctl drain on a (no --all): none of its ${#on_a[@]} jobs at home (${on_a[*]}) moved"
else
  fail "migctl drain on a without --all moved jobs whose home is a:$stayed"
  detail "$T/drain-plain.out" "its output"
fi
hm a undrain >/dev/null 2>&1
timeout -k 5 120 "$HOSTS" exec "$C" a -- "$MIGCTL" drain --all --time-limit 90 >"$T/drain2.out" 2>"$T/drain2.err"
rc=$?
bad=""
for j in "${on_a[@]}"; do
  w=$(host_of "$(where "$j")")
  [[ $w == b || $w == c ]] || bad+=" $j:$w"
  grep -qE "^PID ${PID[$j]} of a \(.*\): moved to $w, frozen [0-9.]+ ms$" "$T/drain2.out" || bad+=" $j(not reported at $w)"
done
if (( rc == 0 )) && [[ -z $bad && $(head -n 1 "$T/drain2.out") == "a is drained: it takes no new jobs; ${#on_a[@]} job(s) to move" ]] &&
   [[ $(wc -l <"$T/drain2.out") == $((${#on_a[@]} + 1)) ]]; then
  ok "migctl drain --all on a: its ${#on_a[@]} jobs (${on_a[*]}, j5 never moved before) left for b or c, one line each"
else
  fail "migctl drain --all on a (jobs there: ${on_a[*]}): exit $rc;$bad"
  detail "$T/drain2.out" "its output"
  detail "$T/drain2.err" "its stderr"
  sed 's/^/#     /' "$T/list.last"
fi
hm a undrain >"$T/undrain2.out" 2>&1
[[ $(cat "$T/undrain2.out") == "a takes jobs again" ]] || fail "migctl undrain on a: $(cat "$T/undrain2.out")"

# --- each job finishes exactly as undisturbed ---------------------------------------------------
wait_refs_ok=1
if ! wait_job ref 60 || ! grep -qx done "$(jfile ref out)"; then
  fail "the undisturbed run did not finish: status $STATUS"
  wait_refs_ok=0
fi
for j in "${jobs[@]}" j4 j5; do touch "$(jfile "$j" data)/go"; done
if (( wait_refs_ok )); then
  for j in "${jobs[@]}" j4 j5; do compare "$j" ref 0; done
fi
for j in "${jobs[@]}" j4 j5; do kill_job "$j"; done
cluster_end
