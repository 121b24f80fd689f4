#!/bin/bash
# The command lines of migctl and shadowd, as a user meets them: --help (and -h) on
# every command and subcommand prints its generated usage and options and exits 0;
# bad input (an unknown option, a missing or extra argument, a bad number, a value
# missing) is one line on stderr that says what is wrong and names the command's
# --help, exit status 2, nothing on stdout; `migctl run` hands its program's own
# options to the program.
# Args: MIGCTL SHADOWD
set -u
migctl=$1 shadowd=$2
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup cli

# help CMD...: exit 0, a "Usage: CMD" line and an Options section on stdout.
help() {
  local out rc
  out=$("$@" 2>&1); rc=$?
  local name="${*:1:$#-1}"
  name=${name/#$migctl/migctl}; name=${name/#$shadowd/shadowd}
  if [ $rc -eq 0 ] && grep -q "^Usage: $name " <<<"$out" && grep -q "^Options:" <<<"$out"; then
    ok "${*/#$migctl/migctl}: its usage and options"
  else bad "${*/#$migctl/migctl} (exit $rc): $(head -3 <<<"$out")"; fi
}
for c in "" run checkpoint restart image "image info" migrate list nodes drain undrain; do
  # shellcheck disable=SC2086  # words
  help "$migctl" $c --help
done
help "$migctl" checkpoint -h
help "$shadowd" --help
help "$shadowd" -h
out=$("$migctl" help migrate); [[ $out == *"--anywhere"* && $out == *"--json"* ]] &&
  ok "migctl help migrate: names --anywhere and --json" || bad "migctl help migrate: $out"

# usage WANT_LINE CMD...: exit 2, exactly WANT_LINE on stderr, nothing on stdout.
usage() {
  local want=$1 err out rc
  shift
  out=$("$@" 2>"$dir/err"); rc=$?
  err=$(cat "$dir/err")
  if [ $rc -eq 2 ] && [ "$err" = "$want" ] && [ -z "$out" ]; then ok "$want"
  else bad "${*/#$migctl/migctl} (exit $rc): stderr '$err', stdout '$out' (want '$want')"; fi
}
usage "migctl: missing command (try 'migctl --help')" "$migctl"
usage "migctl: frobnicate: unknown command (try 'migctl --help')" "$migctl" frobnicate
usage "migctl checkpoint: --bogus: unrecognized option (try 'migctl checkpoint --help')" "$migctl" checkpoint 1 -o x --bogus
usage "migctl checkpoint: --timeout=0: takes a whole number from 1 to 86400, not '0' (try 'migctl checkpoint --help')" \
  "$migctl" checkpoint 1 -o x --timeout 0
usage "migctl checkpoint: -o: missing argument (try 'migctl checkpoint --help')" "$migctl" checkpoint 1 -o
usage "migctl checkpoint: no output file given (-o FILE) (try 'migctl checkpoint --help')" "$migctl" checkpoint 1
usage "migctl migrate: no destination given (--to NODE or --anywhere) (try 'migctl migrate --help')" "$migctl" migrate 1
usage "migctl migrate: --to and --anywhere exclude each other: choose one (try 'migctl migrate --help')" \
  "$migctl" migrate 1 --to b --anywhere
usage "migctl migrate: --rebind: --local-net and --rebind exclude each other: choose one (try 'migctl migrate --help')" \
  "$migctl" migrate 1 --to b --local-net --rebind
usage "migctl list: extra: too many arguments (try 'migctl list --help')" "$migctl" list extra
usage "migctl nodes: --socket: missing argument (try 'migctl nodes --help')" "$migctl" nodes --socket
usage "migctl image info: --plan has no JSON form: use one or the other (try 'migctl image info --help')" \
  "$migctl" image info x --plan --json
usage "migctl image: missing command (try 'migctl image --help')" "$migctl" image
usage "migctl run: missing argument PROGRAM (try 'migctl run --help')" "$migctl" run
usage "migctl restart: --network=sideways: takes local or rebind, not 'sideways' (try 'migctl restart --help')" \
  "$migctl" restart x --network sideways
usage "migctl restart: --realtime-offset-ns=1x: needs a number of nanoseconds, not '1x' (try 'migctl restart --help')" \
  "$migctl" restart x --realtime-offset-ns 1x
usage "shadowd: --bogus: unrecognized option (try 'shadowd --help')" "$shadowd" --bogus
usage "shadowd: extra: too many arguments (try 'shadowd --help')" "$shadowd" extra
usage "shadowd: --transfer-timeout=0: takes a number of seconds > 0, not '0' (try 'shadowd --help')" \
  "$shadowd" --transfer-timeout 0
usage "shadowd: --max-pending-logins=x: takes a whole number from 1 to 100000, not 'x' (try 'shadowd --help')" \
  "$shadowd" --max-pending-logins x
usage "shadowd: --nodes=/nonexistent/nodes: cannot read the nodes file /nonexistent/nodes: No such file or directory (try 'shadowd --help')" \
  "$shadowd" --nodes /nonexistent/nodes
usage "shadowd: refusing to listen on a non-loopback address without --cluster-key FILE (try 'shadowd --help')" \
  "$shadowd" --listen 10.9.9.9:7070
usage "migctl drain: --time-limit=0: takes a number of seconds > 0, not '0' (try 'migctl drain --help')" \
  "$migctl" drain b --time-limit 0
usage "migctl drain: c: too many arguments (try 'migctl drain --help')" "$migctl" drain b c
usage "migctl undrain: --all: unrecognized option (try 'migctl undrain --help')" "$migctl" undrain --all
# A policy file (docs/policies.md) with an unknown key, a bad number, a wrong type: its
# line and the reason, before shadowd starts anything.
pol=$dir/policy.toml
printf '[owner_returns]\nenabled = true\nthreshhold = 2\n' >"$pol"
usage "shadowd: --policy=$pol: $pol:3:1: unknown key 'owner_returns.threshhold' (known in [owner_returns]: enabled, threshold, sustain_seconds, sample_seconds) (try 'shadowd --help')" \
  "$shadowd" --policy "$pol"
printf '[drain]\ntime_limit_seconds = -5\n' >"$pol"
usage "shadowd: --policy=$pol: $pol:2:22: 'drain.time_limit_seconds' = -5 is out of range: it must be above 0 and at most 86400 (try 'shadowd --help')" \
  "$shadowd" --policy "$pol"
printf '[owner_returns]\nenabled = 1\n' >"$pol"
usage "shadowd: --policy=$pol: $pol:2:11: 'owner_returns.enabled' must be true or false (try 'shadowd --help')" \
  "$shadowd" --policy "$pol"

# A negative --realtime-offset-ns (shadowd passes it as two words) is a value, not an
# option: the command gets as far as the image (none here).
out=$("$migctl" restart /nonexistent.img --realtime-offset-ns -5 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $out == "migctl: cannot open image /nonexistent.img"* ]] &&
  ok "restart --realtime-offset-ns -5: a negative value is taken" || bad "restart with a negative offset (exit $rc): $out"

# migctl run: the program's options are the program's (here -h and --help); it runs
# under the libmig.so migctl finds beside itself.
out=$("$migctl" run /bin/echo -h --help 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$out" = "-h --help" ] && ok "migctl run PROGRAM -h --help: the options go to the program" ||
  bad "migctl run /bin/echo -h --help (exit $rc): $out"

[ "$fails" -eq 0 ]
