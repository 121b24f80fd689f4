#!/bin/bash
# metrics.sh: `shadowd --metrics-port` (docs/metrics.md). Hosts a and b, each shadowd
# serving metrics on 127.0.0.1:9464 of its own host. A job started on a is moved to b
# and then writes its output from there (its calls go home); a move to a host that does
# not exist fails. Scraped with Python's urllib (a real HTTP client) from inside each
# host: the content type of the Prometheus text format; on a the job away and the
# moves by outcome (one ok, one failed) with the freeze-time histogram; on b the job
# migrated in, then the calls and bytes it forwarded home; link reconnects 0 (no link
# broke); an unknown path is a 404; another host cannot reach the port.
#
# usage: metrics.sh CPU_JOB OPTIONS (lib/cluster_lib.sh); meson runs it as test
# 'migration-metrics' (suite cluster) with every path filled in.
CPU_JOB=$(realpath "$1")
shift
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
SHADOWD_ARGS=(--metrics-port 9464)
cluster_up a b

# scrape HOST [PATH]: the HTTP status, the content type, then the body, into T/scrape.HOST
scrape() {
  hx "$1" /usr/bin/python3 -c 'import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:9464" + sys.argv[1], timeout=10)
except urllib.error.HTTPError as e:
    r = e
print(r.status)
print(r.headers["Content-Type"])
sys.stdout.write(r.read().decode())' "${2:-/metrics}" >"$T/scrape.$1" 2>&1
}
# value HOST 'NAME{LABELS}': the sample's value in the last scrape of HOST
value() { awk -v n="$2" '$1 == n { print $2; found = 1 } END { if (!found) print "missing" }' "$T/scrape.$1"; }

scrape a
if [[ $(sed -n 1p "$T/scrape.a") == 200 && $(sed -n 2p "$T/scrape.a") == "text/plain; version=0.0.4; charset=utf-8" ]] &&
   grep -q '^# TYPE mig_freeze_seconds histogram$' "$T/scrape.a" && [[ $(value a 'mig_link_reconnects_total') == 0 ]]; then
  ok "a's metrics answer over HTTP: Prometheus text format, $(grep -c '^mig_' "$T/scrape.a") samples"
else
  fail "a's metrics: not the expected answer"
  detail "$T/scrape.a" "the scrape"
fi

mkdir -p "$(jfile job data)"
start_job job mig "$CPU_JOB" @DIR@/go idle || cluster_end
if ! wait_step job 3 60 || ! migrate job b; then
  fail "job: could not move it to b (migctl: ${MIG_RC-not run} $(cat "${MIG_ERR-/dev/null}" 2>/dev/null | tr '\n' ' '))"
  kill_job job
  cluster_end
fi
migrate job 127.0.0.1:1  # nothing listens there: the move fails
scrape a
scrape b
bad=""
[[ $(value a 'mig_jobs{state="away"}') == 1 ]] || bad+=" a:away=$(value a 'mig_jobs{state="away"}')"
[[ $(value a 'mig_moves_total{outcome="ok"}') == 1 ]] || bad+=" a:ok=$(value a 'mig_moves_total{outcome="ok"}')"
[[ $(value a 'mig_moves_total{outcome="failed"}') == 1 ]] || bad+=" a:failed=$(value a 'mig_moves_total{outcome="failed"}')"
[[ $(value a 'mig_freeze_seconds_count') == 1 && $(value a 'mig_freeze_seconds_bucket{le="+Inf"}') == 1 ]] ||
  bad+=" a:freeze_count=$(value a 'mig_freeze_seconds_count')"
/usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$(value a 'mig_freeze_seconds_sum')" 2>/dev/null ||
  bad+=" a:freeze_sum=$(value a 'mig_freeze_seconds_sum')"
[[ $(value b 'mig_jobs{state="migrated_in"}') == 1 ]] || bad+=" b:migrated_in=$(value b 'mig_jobs{state="migrated_in"}')"
if [[ -z $bad ]]; then
  ok "after one move a -> b and one failed move: a shows the job away, 1 ok and 1 failed move, frozen $(value a 'mig_freeze_seconds_sum') s; b the job migrated in"
else
  fail "metrics after the moves:$bad"
  detail "$T/scrape.a" "a's scrape"
  detail "$T/scrape.b" "b's scrape"
fi

# Its calls while it waits for "go" (access() of a home path) are counted as they go,
# not only at its end (its link process reports every second).
running_calls() { scrape b; local c; c=$(value b 'mig_forwarded_calls_total'); [[ $c =~ ^[0-9]+$ ]] && (( c > 0 )); }
if wait_until 20 running_calls; then
  ok "b counts the job's calls home while it runs: $(value b 'mig_forwarded_calls_total') so far"
else
  fail "b's forwarded calls stayed $(value b 'mig_forwarded_calls_total') while the job ran there"
fi
# The job writes its steps from b: those calls go home through b's relay.
calls_before=$(value b 'mig_forwarded_calls_total')
touch "$(jfile job data)/go"
if wait_job job 60 && [[ $STATUS == 0 ]]; then
  scrape b
  calls=$(value b 'mig_forwarded_calls_total') out=$(value b 'mig_forwarded_bytes_total{direction="out"}')
  if [[ $calls =~ ^[0-9]+$ && $calls_before =~ ^[0-9]+$ ]] && (( calls > calls_before )) && [[ $out =~ ^[0-9]+$ ]] && (( out > 0 )); then
    ok "b counted the job's calls forwarded home: $calls_before -> $calls calls, $out bytes out"
  else
    fail "b's forwarded calls: before $calls_before, after $calls, bytes out $out"
    detail "$T/scrape.b" "b's scrape"
  fi
else
  fail "job: did not end with status 0 (status $STATUS)"
fi

scrape a /nothing
if [[ $(sed -n 1p "$T/scrape.a") == 404 ]]; then
  ok "an unknown path is a 404"
else
  fail "GET /nothing: $(head -n 1 "$T/scrape.a")"
fi
# Only on loopback: from b, a's address and that port are closed.
if hx b /usr/bin/python3 -c 'import socket, sys
try:
    socket.create_connection((sys.argv[1], 9464), timeout=5)
except OSError:
    sys.exit(0)
sys.exit(1)' "${ADDR[a]}"; then
  ok "the metrics port is not reachable from another host"
else
  fail "b reached a's metrics port at ${ADDR[a]}:9464"
fi
kill_job job
cluster_end
