#!/bin/bash
# failure_cases.sh: a migration that cannot complete leaves the job on a. Destination
# unreachable, destination a itself (refused: it already runs there), destination d with another cluster key (nothing restored there, the
# reason names the key), destination shadowd killed during the transfer (a 512 MiB
# job): migctl migrate exits non-zero with a one-line reason and the job goes on on
# a, finishing as an undisturbed run without mig does (counter and memory, feature
# programs of tests/features).
#
# usage: failure_cases.sh OPTIONS (below); meson runs it as test
# 'migration-failure-cases' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features counter
cluster_up a b d

# --- reference runs, undisturbed, without mig, beside the migrated ones ---------------------------
refs=()
start_job counter-ref plain "${FEATURE[counter]}" 100 && refs+=(counter-ref)
[[ -z ${FEATURE[memory]-} ]] ||
  { start_job bigmem-ref plain "${FEATURE[memory]}" 512M 40 && refs+=(bigmem-ref); }
wait_refs "${refs[@]}"

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

  migrate stay a
  stays_home stay "${FEATURE[counter]}" "to a, where it runs"
  grep -q "already runs on a" "$MIG_ERR" && ok "stay: the reason says it already runs on a" ||
    fail "stay: migrating to its own host: the reason does not say it already runs there: $(cat "$MIG_ERR")"

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
  migrate_in_background bigmem b 120
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

cluster_end
