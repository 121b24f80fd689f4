#!/bin/bash
# partition.sh: the link between a and b is cut in the middle of a hop a -> b (a
# 512 MiB job, b's switch port taken down once the first bytes of its image are in
# b's spool). With --transfer-timeout 4 on both shadowds: migctl migrate exits
# non-zero with one line saying the hop was aborted because the destination stopped
# answering and that the job runs on at home; the job goes on on a (new STEP lines,
# still the program, not a deputy); b deletes its partial image by itself while the
# link is still down, and logs it. With the link back, the job finishes as an
# undisturbed run without mig does.
#
# usage: partition.sh OPTIONS (below); meson runs it as test 'migration-partition'
# (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features memory
TRANSFER_TIMEOUT=4
SHADOWD_ARGS=(--transfer-timeout "$TRANSFER_TIMEOUT")
cluster_up a b
SWITCH=mig-$C PORT_B=mig-p${ADDR[b]##*.}   # b's port on the simulated hosts' bridge (tests/harness/mig-hosts)
link_b() { ip -n "$SWITCH" link set "$PORT_B" "$1"; }
cut=0
heal() { (( cut )) && link_b up && cut=0; }
trap 'heal; cleanup' EXIT

# 128 steps: the job must outlive the hop, and with pre-copy it runs on during the
# rounds as well as during the 4 s before the abort.
start_job bigmem-ref plain "${FEATURE[memory]}" 512M 128
images_on_b() { compgen -G "$(hp b "$SPOOL")/job-*.img" >/dev/null; }

if start_job bigmem mig "${FEATURE[memory]}" 512M 128 && wait_step bigmem 2 60; then
  mark_spool b
  new_migrate_logs
  run_migrate bigmem b 120 &
  mpid=$!
  bg_pids+=("$mpid")
  # The moment: the first bytes of the image are on b (polled without pause: the whole
  # image takes about a second on these links).
  end=$((SECONDS + 60)) img=""
  until img=$(new_image b) || ! migrate_running || (( SECONDS >= end )); do :; done
  if [[ -n $img ]] && migrate_running && link_b down; then
    cut=1
    at_cut=$(stat -c %s "$img" 2>/dev/null)
    cut_at=$SECONDS
  fi
  wait_until 90 eval '! migrate_running'
  wait "$mpid"
  MIG_RC=$?
  took=$((SECONDS - ${cut_at:-SECONDS}))
  if (( ! cut )); then
    fail "bigmem: could not cut the link during the transfer (migctl migrate exited $MIG_RC first, or no image on b within 60 s)"
    detail "$MIG_ERR" "migctl stderr"
  else
    note "link a-b cut with ${at_cut:-?} bytes of the image on b; migctl migrate ended ${took} s later"
    if one_line_reason && grep -q "stopped answering" "$MIG_ERR" && grep -q "runs on at home" "$MIG_ERR"; then
      ok "bigmem: migctl migrate exited $MIG_RC: $(cat "$MIG_ERR")"
    else
      fail "bigmem: after the cut migctl migrate exited $MIG_RC$( ((MIG_RC == 124)) && echo " (timed out)") without the one line saying the destination stopped answering and the job runs on at home"
      detail "$MIG_OUT" "migctl stdout"
      detail "$MIG_ERR" "migctl stderr"
      shadowd_logs a
    fi
    k=$(( $(last_step bigmem) + 1 ))
    if job_at_home bigmem "${FEATURE[memory]}" && wait_step bigmem "$k" 30; then
      ok "bigmem: runs on at home: still the program on a, printed STEP $k after the abort"
    else
      fail "bigmem: not running on at home after the abort (still the program: $(job_at_home bigmem "${FEATURE[memory]}" && echo yes || echo no); last STEP $(last_step bigmem))"
      detail "$(jfile bigmem err)" "its stderr"
    fi
    # b notices by itself (no progress for the transfer timeout), link still down.
    if wait_until 60 eval '! images_on_b'; then
      ok "b deleted its partial image while the link was still down: spool '$(spool_of b)'; $(grep -m1 'transfer cancelled' "$T/shadowd-b.log" | cut -d' ' -f3-)"
    else
      fail "b's spool still holds an image 60 s after the cut: $(spool_of b)"
      shadowd_logs b
    fi
    heal
  fi
  wait_job bigmem-ref 120
  compare bigmem bigmem-ref "$STATUS"
else
  fail "bigmem: the 512 MiB job did not get to STEP 2 on a"
fi

cluster_end
