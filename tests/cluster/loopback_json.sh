#!/bin/bash
# loopback_json.sh: every `migctl ... --json` output parses (python3's json module)
# and has exactly the fields docs/json.md documents for it (read from its tables),
# with values that match what happened. Two shadowd on loopback (no root) with a
# nodes file naming them a and b; a job started on A (it prints a step every 100 ms) is checkpointed, its
# image described, migrated A -> B, listed; then a move to a host that does not
# answer fails with "ok": false.
#
# usage: loopback_json.sh SHADOWD MIGCTL LIBMIG MIGRATING_JOB JSON_DOC
set -u
shadowd=$(realpath "$1") migctl=$(realpath "$2") libmig=$(realpath "$3") jobexe=$(realpath "$4") doc=$(realpath "$5")
source "$(dirname "$0")/lib/loopback_lib.sh" json
trap 'kill_restored migrating_job; cleanup' EXIT

new_key "$dir/key"
pa=$(port) pb=$(port) pdead=$(port)
printf 'a 127.0.0.1:%s\nb 127.0.0.1:%s\n' "$pa" "$pb" > "$dir/nodes"
for n in a b; do
  p=$pa; [ $n = b ] && p=$pb
  "$shadowd" --listen "127.0.0.1:$p" --cluster-key "$dir/key" --nodes "$dir/nodes" --socket "$dir/$n/sock" \
    --log "$dir/$n.log" &
  pids+=($!)
done
wait_shadowds a b

# check NAME SECTION FILE PYTHON_CHECK: FILE holds one line of JSON whose fields are
# exactly those of docs/json.md's section whose heading starts with SECTION, and
# PYTHON_CHECK (an expression over `j`) is true.
check() {
  local name=$1 section=$2 file=$3 expr=$4 why
  if why=$(python3 - "$doc" "$section" "$file" "$expr" 2>&1 <<'PY'
import json, re, sys
doc, section, path, expr = sys.argv[1:]
text = open(path).read()
lines = text.splitlines()
if len(lines) != 1:
    sys.exit(f"{len(lines)} lines of output, want 1: {text[:300]!r}")
j = json.loads(lines[0])
want, inside = set(), False
for line in open(doc):
    if line.startswith("## "):
        inside = line.startswith("## `" + section)
    elif inside:
        m = re.match(r"\| `([^`]+)` \|", line)
        if m:
            want.add(m.group(1))
def keys(v, prefix=""):
    out = set()
    for k, x in v.items():
        name = prefix + k
        if isinstance(x, list):
            out.add(name + "[]")
            for e in x:
                if isinstance(e, dict):
                    out |= keys(e, name + "[].")
        else:
            out.add(name)
    return out
got = keys(j)
# An empty list cannot show its elements' fields.
want_here = {w for w in want if not any(w.startswith(l + ".") for l in got if l.endswith("[]") and not j.get(l[:-2]))}
if not want:
    sys.exit(f"no fields documented under '## `{section}' in {doc}")
if got != want_here:
    sys.exit(f"fields differ from docs/json.md: undocumented {sorted(got - want_here)}, missing {sorted(want_here - got)}")
if not eval(expr, {"j": j}):
    sys.exit(f"check failed: {expr}: {lines[0][:400]}")
PY
  ); then ok "$name"
  else bad "$name: $why" "$file"; fi
}

cd "$dir"
LD_PRELOAD=$libmig "$jobexe" 100000 "$dir/raw" > "$dir/out.txt" 2> "$dir/err.txt" &
job=$!
pids+=($job)
wait_line "$dir/out.txt" '^step 2 ' || bad "the job started" "$dir/out.txt" "$dir/err.txt"

A nodes --json > "$dir/nodes.json" 2> "$dir/nodes.err"
check "nodes --json: a and b, both reachable" "migctl nodes" "$dir/nodes.json" \
  "sorted(n['name'] for n in j['nodes']) == ['a', 'b'] and all(n['reachable'] and n['error'] == '' and n['hostname'] for n in j['nodes'])"

A checkpoint "$job" -o "$dir/job.img" --json > "$dir/ckpt.json" 2> "$dir/ckpt.err"
size=$(stat -c %s "$dir/job.img" 2>/dev/null || echo 0)
check "checkpoint --json: the image's size, threads and fds" "migctl checkpoint" "$dir/ckpt.json" \
  "j['pid'] == $job and j['file'] == '$dir/job.img' and j['imageBytes'] == $size and j['threads'] >= 1 and j['fds'] >= 3 and j['pages'] > 0 and not j['stopped']"

A image info "$dir/job.img" --verify --json > "$dir/info.json" 2> "$dir/info.err"
check "image info --verify --json: header and sections of that image" "migctl image info" "$dir/info.json" \
  "j['pid'] == $job and j['fileBytes'] == $size and j['verified'] and j['restorableHere'] and j['sections'][0]['type'] == 'header' and j['sections'][-1]['type'] == 'end' and 'migrating_job' in j['command']"

A migrate "$job" --to b --json > "$dir/m1.json" 2> "$dir/m1.err"; rc=$?
check "migrate --json: moved to b (exit $rc)" "migctl migrate" "$dir/m1.json" \
  "$rc == 0 and j['ok'] and j['pid'] == $job and j['requested'] == 'b' and j['destination'] == '127.0.0.1:$pb' and j['freezeMs'] > 0 and j['imageBytes'] > 0 and j['error'] == ''"

A list --json > "$dir/list.json" 2> "$dir/list.err"
check "list --json: the job, at home on a, running on b" "migctl list" "$dir/list.json" \
  "any(x['pid'] == $job and x['location'] == '127.0.0.1:$pb' and int(x['jobId']) > 0 and 'migrating_job' in x['command'] for x in j['jobs'])"

A migrate "$job" --to "127.0.0.1:$pdead" --json > "$dir/m2.json" 2> "$dir/m2.err"; rc=$?
check "migrate --json to a host that does not answer: ok false, the reason, exit 1 (exit $rc)" "migctl migrate" "$dir/m2.json" \
  "$rc == 1 and not j['ok'] and j['error'] != '' and j['requested'] == '127.0.0.1:$pdead'"
if [ "$(wc -l < "$dir/m2.err")" -eq 1 ]; then ok "... and one line on stderr: $(cat "$dir/m2.err")"
else bad "the failed move's stderr is not one line" "$dir/m2.err"; fi

[ "$failures" -eq 0 ]
