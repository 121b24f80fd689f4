#!/bin/bash
# loopback_history.sh: `migctl history` shows the moves asked of a shadowd, made or
# not, with the right outcome. Three shadowd on loopback (no root): a and b share a
# cluster key, c has another. A job started on a (it prints a step every 100 ms) is
# moved a -> b (it moves), then b -> c (c refuses b's login: another key). history on a
# shows both, in order, in its table and in --json (fields as docs/json.md documents
# them under "migctl history").
#
# usage: loopback_history.sh SHADOWD MIGCTL LIBMIG MIGRATING_JOB JSON_DOC
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") jobexe=$(realpath "$4") doc=$(realpath "$5")
source "$(dirname "$0")/lib/loopback_lib.sh" history
trap 'kill_restored migrating_job; cleanup' EXIT

new_key "$dir/key"
new_key "$dir/other.key"
pa=$(port) pb=$(port) pc=$(port)
printf 'a 127.0.0.1:%s\nb 127.0.0.1:%s\nc 127.0.0.1:%s\n' "$pa" "$pb" "$pc" > "$dir/nodes"
for n in a b c; do
  p=$pa key=$dir/key
  [ $n = b ] && p=$pb
  [ $n = c ] && p=$pc key=$dir/other.key
  "$shadowd" --listen "127.0.0.1:$p" --cluster-key "$key" --nodes "$dir/nodes" --socket "$dir/$n/sock" \
    --log "$dir/$n.log" &
  pids+=($!)
done
wait_shadowds a b c

A history > "$dir/h0.txt" 2> "$dir/h0.err"; rc=$?
if [ $rc -eq 0 ] && [ "$(wc -l < "$dir/h0.txt")" -eq 1 ] && grep -q '^TIME (UTC) ' "$dir/h0.txt"; then
  ok "history before any move: only its heading"
else bad "history before any move (exit $rc)" "$dir/h0.txt" "$dir/h0.err"; fi

cd "$dir" || exit 1
LD_PRELOAD=$libmig "$jobexe" 100000 "$dir/raw" > "$dir/out.txt" 2> "$dir/err.txt" &
job=$!
pids+=("$job")
wait_line "$dir/out.txt" '^step 2 ' || bad "the job started" "$dir/out.txt" "$dir/err.txt"

A migrate "$job" --to b > "$dir/m1.out" 2> "$dir/m1.err" && ok "a -> b: moved" ||
  bad "a -> b did not move" "$dir/m1.out" "$dir/m1.err" "$dir/a.log" "$dir/b.log"
A migrate "$job" --to c > "$dir/m2.out" 2> "$dir/m2.err" && bad "b -> c moved, but c has another key" "$dir/m2.err" ||
  ok "b -> c refused: $(cat "$dir/m2.err")"

A history > "$dir/h.txt" 2> "$dir/h.err"; rc=$?
# Heading, then one row per move: TIME(2 words) PID FROM TO MODE FROZEN(2 words) OUTCOME...
if python3 - "$dir/h.txt" "$job" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
job = sys.argv[2]
assert len(lines) == 3, f"{len(lines)} lines, want a heading and 2 moves"
first, second = lines[1].split(), lines[2].split()
assert first[2:6] == [job, "a", "b", "home"] and first[7] == "ms" and float(first[6]) > 0 and first[8] == "moved", first
assert second[2:6] == [job, "b", "c", "home"] and second[6] == "-" and second[7] == "failed:", second
assert "key" in lines[2], "the refusal's reason does not name the key"
PY
then ok "history: a -> b moved, then b -> c failed with the reason (exit $rc)"; sed 's/^/      /' "$dir/h.txt"
else bad "history's table (exit $rc)" "$dir/h.txt" "$dir/h.err"; fi

A history --json > "$dir/h.json" 2> "$dir/h.json.err"; rc=$?
if why=$(python3 - "$dir/h.json" "$doc" "$job" "$pb" "$pc" 2>&1 <<'PY'
import json, re, sys
path, doc, job, pb, pc = sys.argv[1:]
lines = open(path).read().splitlines()
assert len(lines) == 1, f"{len(lines)} lines of output, want 1"
moves = json.loads(lines[0])["moves"]
want, inside = set(), False
for line in open(doc):
    if line.startswith("## "):
        inside = line.startswith("## `migctl history")
    elif inside:
        m = re.match(r"\| `moves\[\]\.([^`]+)` \|", line)
        if m:
            want.add(m.group(1))
assert want, "docs/json.md documents no moves[] fields under '## `migctl history'"
assert len(moves) == 2, f"{len(moves)} moves, want 2"
for m in moves:
    assert set(m) == want, f"fields differ from docs/json.md: undocumented {sorted(set(m) - want)}, missing {sorted(want - set(m))}"
a, b = moves
assert a["pid"] == int(job) and a["from"] == "a" and a["to"] == "b" and a["ok"] and a["outcome"] == "moved", a
assert a["freezeMs"] > 0 and a["error"] == "" and a["mode"] == "home" and int(a["jobId"]) > 0, a
assert "migrating_job" in a["command"] and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", a["time"]), a
assert b["pid"] == int(job) and b["from"] == "b" and b["to"] == "c" and not b["ok"] and b["outcome"] == "failed", b
assert "key" in b["error"] and b["freezeMs"] == 0 and b["jobId"] == a["jobId"], b
assert a["unixTime"] <= b["unixTime"], "not oldest first"
PY
); then ok "history --json: both moves, documented fields, right outcomes (exit $rc)"
else bad "history --json: $why" "$dir/h.json" "$dir/h.json.err"; fi

# The job went on on b after the refused move.
before=$(grep -c '^step ' "$dir/out.txt")
wait_until 10 bash -c "[ \$(grep -c '^step ' '$dir/out.txt') -gt $before ]" && ok "the job goes on after the refused move" ||
  bad "the job stopped printing after the refused move" "$dir/out.txt" "$dir/b.log"

[ "$failures" -eq 0 ]
