#!/bin/bash
# postcopy.sh: post-copy migration (migctl migrate --postcopy; shadow/send_command.cc,
# resources/network_page_source.h) between simulated hosts, transfer timeout 5 s.
#  1. the memory feature program (256 MiB, pages written and verified every step)
#     moved a -> c mid-run: the result line says post-copy and the bytes sent while
#     frozen and after; then back c -> a with --postcopy, a hop home (the job goes back
#     into its deputy's process), which goes as pre-copy and says why; it ends with
#     the output and status of an undisturbed run.
#     The counter (nothing big) moved a -> c -> b post-copy (the second sender not at
#     home): nothing after the freeze.
#  2. lazy_syscalls (64 MiB) moved a -> b at STEP 1, b's page server fetching only on
#     fault (MIG_LAZY_NO_FILL=1 in b's shadowd): its write() from, read() into and
#     blocking recv() into pages still at home (its stderr says how many of them were
#     missing: more than 0), a forked child, MADV_DONTNEED and mremap of missing pages:
#     the output of an undisturbed run.
#  3. the memory program moved a -> b (pages only on fault), the link a-b cut once it
#     printed a STEP on b, and the sender's connection reset on a (ss -K: the page link
#     is gone for good, not only paused); once b's shadowd says the job waits on its
#     pages, the link comes back: the sender logs in to b again (Node.resumePages), b
#     asks the waiting pages again, and the job goes on: migctl migrate exits 0 with its
#     post-copy line and the job ends with the output and status of an undisturbed run.
#  4. the memory program moved a -> b (pages only on fault), and the link a-b cut once
#     it printed a STEP on b: the job waits on its pages; within the transfer timeout
#     b's page server kills it with one line (restore log), b's shadowd logs the
#     failure, migctl migrate exits 4 with one line saying its memory could not follow,
#     and the parent at home gets status 137 (killed). Every line it printed is the
#     undisturbed run's (it verifies its pages each step: it never ran on wrong data).
#  5. the sender dies during the background fill: the memory program moved a -> c
#     (pre-copy), then c -> b post-copy (b: pages only on fault), c's sender killed
#     (SIGKILL) right after the commit (MIG_FAULT=hop:send-postcopy:crash in c's
#     shadowd, shadow/hop_fault.h): c's shadowd serves the pages from the copy the
#     sender left in c's spool (shadow/spooled_pages.h). migctl migrate exits 0 saying
#     shadowd committed the move, c's log says it serves the pages and that b has them
#     all, nothing is left in c's spool, and the job ends on b with the output and
#     status of an undisturbed run.
#  6. home's shadowd killed (SIGKILL) during a pre-copy transfer of the memory program
#     a -> b (once b's spool grows): the migctl migrate that asked it loses its shadowd
#     and says so in one line (the job may have moved; `migctl list` on b), exit 5,
#     never "stays where it was". a's shadowd started again: the job runs in one place
#     only, `migctl list` on a and on b agree, and it ends with the output and status of
#     an undisturbed run.
#  7. b's page server killed (SIGKILL) while the memory program's pages are still at home
#     (b: pages only on fault), b's shadowd stopped (SIGSTOP) meanwhile so that its own
#     kill of the job (it sees the page server's socket close) cannot hide a job that
#     read missing pages as zeros: the page server's guard (resources/lazy_pages.cc)
#     keeps them missing and kills the job. It ends on b before shadowd goes on, every
#     line it printed is the undisturbed run's (never a failed check), the parent at
#     home gets status 137, b's shadowd says why, migctl migrate exits 4 with one line.
#
# usage: postcopy.sh OPTIONS (tests/cluster/lib/cluster_lib.sh); meson runs it as test
# 'migration-postcopy' (suites cluster and postcopy).
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_require_features counter memory lazy_syscalls
TRANSFER_TIMEOUT=5
SHADOWD_ARGS=(--transfer-timeout "$TRANSFER_TIMEOUT")
SHADOWD_ENV[b]=MIG_LAZY_NO_FILL=1
SHADOWD_ENV[c]=MIG_FAULT=hop:send-postcopy:crash  # only a post-copy hop with pages left (5.)
cluster_up a b c
SWITCH=mig-$C PORT_B=mig-p${ADDR[b]##*.}
link_b() { ip -n "$SWITCH" link set "$PORT_B" "$1"; }
cut=0
heal() { (( cut )) && link_b up && cut=0; }
trap 'heal; cleanup' EXIT

# migrated_ok WHAT RC PATTERN HOSTS...: the migctl migrate just waited for exited RC
# and its line (the result line for 0, else its one line on stderr) matches PATTERN
# (grep -E): ok with that line; else fail with its output and the shadowd logs of
# HOSTS (returns 1).
migrated_ok() {
  local what=$1 rc=$2 pattern=$3 line
  shift 3
  if (( rc == 0 )); then line=$(migrated_line); else line=$(cat "$MIG_ERR"); fi
  if (( MIG_RC == rc )) && { (( rc == 0 )) || [[ $(wc -l <"$MIG_ERR") == 1 ]]; } && grep -qE -- "$pattern" <<<"$line"; then
    ok "$what: migctl migrate exited $rc: $line"
    return 0
  fi
  fail "$what: migctl migrate exited $MIG_RC, not $rc with a line matching '$pattern'"
  detail "$MIG_OUT" "migctl stdout"
  detail "$MIG_ERR" "migctl stderr"
  (( $# == 0 )) || shadowd_logs "$@"
  return 1
}

start_job mem-ref plain "${FEATURE[memory]}" 256M 160
start_job small-ref plain "${FEATURE[counter]}" 30
start_job sys-ref plain "${FEATURE[lazy_syscalls]}" 64
start_job cut-ref plain "${FEATURE[memory]}" 256M 60

# 1. exactness, background fill on (c); 160 steps (8 s): the pre-copy hop home must
#    beat the job's end on a loaded 2-core machine
if start_job mem mig "${FEATURE[memory]}" 256M 160 && wait_step mem 3 60; then
  migrate mem c 60 --postcopy
  migrated_ok "mem: a -> c post-copy" 0 'post-copy: [0-9.]* MiB sent while frozen, [0-9.]* MiB after it ran on' a c ||
    restore_log c
  # home with --postcopy: the job goes back into its deputy's process (no page server)
  k=$(( $(last_step mem) + 2 ))
  if wait_step mem "$k" 30; then
    migrate mem a 60 --postcopy
    migrated_ok "mem: c -> a with --postcopy goes as pre-copy and says why" 0 \
      '(pre-copy|stop-and-copy) \(a hop home is not post-copy: the job goes back into its deputy'"'"'s process\)' a c
  else
    fail "mem: no STEP $k on c"
  fi
  wait_job mem-ref 120
  compare mem mem-ref "$STATUS"
else
  fail "mem: the job did not get to STEP 3 on a"
fi

# 1b. a job with nothing big: all of it goes while frozen, nothing after
if start_job small mig "${FEATURE[counter]}" 30 && wait_step small 3 30; then
  migrate small c 60 --postcopy
  migrated_ok "small: a -> c post-copy" 0 'post-copy: [0-9.]* MiB sent while frozen, 0.0 MiB after it ran on' a c
  k=$(( $(last_step small) + 1 ))
  if wait_step small "$k" 30; then
    migrate small b 60 --postcopy
    migrated_ok "small: c -> b post-copy, sent from c" 0 'post-copy: [0-9.]* MiB sent while frozen, 0.0 MiB after it ran on' a b c
  else
    fail "small: no STEP $k on c"
  fi
  wait_job small-ref 60
  compare small small-ref "$STATUS"
else
  fail "small: the counter did not get to STEP 3 on a"
fi

# 2. system calls into pages not fetched yet (b: pages only on fault)
if start_job sys mig "${FEATURE[lazy_syscalls]}" 64 && wait_step sys 1 60; then
  migrate sys b 90 --postcopy
  migrated_ok "sys: a -> b post-copy at STEP 1" 0 'post-copy' a b || restore_log b
  wait_job sys-ref 60
  compare sys sys-ref "$STATUS" nostderr
  missing=$(sed -n 's/^lazy: \([0-9]\) of 4 target pages missing.*/\1/p' "$(jfile sys err)")
  if [[ -n $missing ]] && (( missing > 0 )); then
    ok "sys: $missing of the 4 pages its write(), read() and recv() used were still at home when it made them"
  else
    fail "sys: the pages its system calls used were not missing on b (stderr says '${missing:-nothing}'): the test did not test"
    detail "$(jfile sys err)" "its stderr"
  fi
else
  fail "sys: lazy_syscalls did not get to STEP 1 on a"
fi

# 3. the link cut and the sender's connection reset while pages are still at home, then
# the link back (b: pages only on fault)
# The TCP connection of the sender (migctl send) on a to b, aborted (RST) so that it can
# never carry pages again: only a new connection can.
reset_sender_link() {
  local port
  port=$(hx a ss -Htnp state established dst "${ADDR[b]}" | awk '/"migctl"/ { n = split($3, a, ":"); print a[n]; exit }')
  [[ -n $port ]] && hx a ss -HK -tn state established "( sport = :$port )" dst "${ADDR[b]}" >/dev/null
}
reset=0
start_job heal-ref plain "${FEATURE[memory]}" 256M 60  # (now: not to load the machine during 1 and 2)
if start_job heal mig "${FEATURE[memory]}" 256M 60 && wait_step heal 3 60; then
  new_migrate_logs
  waits_before=$(grep -c 'the job waits on its pages' "$T/shadowd-b.log")
  run_migrate heal b 120 --postcopy &
  mpid=$!
  bg_pids+=("$mpid")
  if wait_until 60 eval '[[ $(host_of "$(where heal)") == b ]] || ! migrate_running'; then
    k=$(( $(last_step heal) + 1 ))
    if migrate_running && wait_step heal "$k" 30 && link_b down; then
      cut=1
      reset_sender_link && reset=1 || reset=0
      note "link a-b cut after STEP $k on b$( (( reset )) && echo ", the sender's connection reset")"
    fi
  fi
  if (( ! cut )); then
    fail "heal: could not cut the link while the job ran on b with pages at home (migctl migrate exited $MIG_RC first, or no STEP on b)"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
  else
    # The moment to heal: b says the job waits on its pages.
    if wait_until 20 eval '(( $(grep -c "the job waits on its pages" "$T/shadowd-b.log") > waits_before ))'; then
      ok "heal: b: $(grep -h 'the job waits on its pages' "$T/shadowd-b.log" | tail -n 1 | cut -d' ' -f3-)"
    else
      fail "heal: b's shadowd never said the job waits on its pages"
      shadowd_logs b
    fi
    heal
    (( reset )) || fail "heal: could not reset the sender's connection on a (ss -K): the test did not test a broken link"
    wait_until 90 eval '! migrate_running'
    wait "$mpid"
    MIG_RC=$?
    migrated_ok heal 0 'post-copy: [0-9.]* MiB sent while frozen, [0-9.]* MiB after it ran on' a b
    if grep -q "post-copy: its sender came back over a new connection" "$T/shadowd-b.log" &&
       grep -q "post-copy: its pages come again" "$T/shadowd-b.log"; then
      ok "heal: b: $(grep -h 'post-copy: its pages come again' "$T/shadowd-b.log" | tail -n 1 | cut -d' ' -f3-)"
    else
      fail "heal: b's shadowd log does not say that the sender came back and the pages came again"
      shadowd_logs b
    fi
    wait_job heal-ref 120
    compare heal heal-ref "$STATUS"
  fi
else
  fail "heal: the job did not get to STEP 3 on a"
fi

# 4. the link cut for good while pages are still at home (b: pages only on fault)
if start_job cut mig "${FEATURE[memory]}" 256M 60 && wait_step cut 3 60; then
  new_migrate_logs
  run_migrate cut b 120 --postcopy &
  mpid=$!
  bg_pids+=("$mpid")
  # The moment: it runs on b (listed there) and has printed a STEP since.
  if wait_until 60 eval '[[ $(host_of "$(where cut)") == b ]] || ! migrate_running'; then
    k=$(( $(last_step cut) + 1 ))
    if migrate_running && wait_step cut "$k" 30 && link_b down; then
      cut=1
      note "link a-b cut after STEP $k on b"
    fi
  fi
  if (( ! cut )); then
    fail "cut: could not cut the link while the job ran on b with pages at home (migctl migrate exited $MIG_RC first, or no STEP on b)"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
  else
    wait_until 60 eval '! migrate_running'
    wait "$mpid"
    MIG_RC=$?
    migrated_ok cut 4 "post-copy, but its memory could not follow"
    if wait_job cut 60 && [[ $STATUS == 137 ]]; then
      ok "cut: the parent at home got status 137 (killed)"
    else
      fail "cut: the parent at home got status '${STATUS:-none}', not 137"
    fi
    # (the page server's own line went to the restore log, which b deletes with the job)
    if grep -q "post-copy: cannot fetch its pages from home" "$T/shadowd-b.log"; then
      ok "cut: b says why it ended the job: $(grep -h 'post-copy: c' "$T/shadowd-b.log" | tail -n 1 | cut -d' ' -f3-)"
    else
      fail "cut: b's shadowd log says nothing of the post-copy failure"
      shadowd_logs b
    fi
    # Its link process tries for up to 30 s (kTellHomeMs) to tell home of the end over
    # the cut link, counted from the job's end on b, before home's word above: 45 s.
    if wait_until 45 eval '! others_on b | grep -q .'; then
      ok "cut: nothing of the job is left on b"
    else
      fail "cut: processes left on b: $(others_on b | tr '\n' ';')"
    fi
    # Never wrong data: each line it printed is the undisturbed run's.
    wait_job cut-ref 120
    n=$(wc -l <"$(jfile cut out)")
    if (( n > 0 )) && cmp -s <(head -n "$n" "$(jfile cut-ref out)") "$(jfile cut out)" && ! grep -q FAIL "$(jfile cut out)"; then
      ok "cut: its $n lines of output are the undisturbed run's first $n"
    else
      fail "cut: its output is not a prefix of the undisturbed run's"
      diff <(cat "$(jfile cut-ref out)") <(cat "$(jfile cut out)") | head -n 12 | sed 's/^/#     /'
    fi
    heal
  fi
else
  fail "cut: the job did not get to STEP 3 on a"
fi

# 5. the sender killed during the background fill (c's MIG_FAULT; b: pages only on fault)
start_job dead-ref plain "${FEATURE[memory]}" 64M 160
if start_job dead mig "${FEATURE[memory]}" 64M 160 && wait_step dead 3 60; then
  migrate dead c 60
  k=$(( $(last_step dead) + 1 ))
  if (( MIG_RC == 0 )) && wait_step dead "$k" 30; then
    migrate dead b 60 --postcopy
    migrated_ok "dead: c -> b post-copy, its sender killed after the commit" 0 "shadowd committed the move" b c
    if grep -q "its post-copy sender died before .* had every page; serving them from the copy it left" "$T/shadowd-c.log" &&
       wait_until 30 grep -q "has every page (.* MiB served from this shadowd's copy)" "$T/shadowd-c.log"; then
      ok "dead: c: $(grep -h "has every page (" "$T/shadowd-c.log" | tail -n 1 | cut -d' ' -f3-)"
    else
      fail "dead: c's shadowd log does not say it served the dead sender's pages until b had them all"
      shadowd_logs b c
    fi
    wait_job dead-ref 120
    compare dead dead-ref "$STATUS"
    if [[ $(spool_of c) != *.pages* ]]; then
      ok "dead: c's spool holds no copy of the pages any more ($(spool_of c))"
    else
      fail "dead: c's spool still holds: $(spool_of c)"
    fi
  else
    fail "dead: a -> c exited $MIG_RC, or no STEP $k on c"
  fi
else
  fail "dead: the job did not get to STEP 3 on a"
fi

# 6. a's shadowd killed during a pre-copy transfer a -> b: migctl cannot know the outcome
if start_job away mig "${FEATURE[memory]}" 256M 160 && wait_step away 3 60; then
  migrate_in_background away b 120
  if migrate_running; then
    kill -KILL "${SD[a]}"
    wait_until 60 eval '! migrate_running'
    wait "$mpid"
    MIG_RC=$?
    migrated_ok "away: a's shadowd killed during the transfer" 5 \
      "lost contact with shadowd during the hop of .*: the job may have moved; check \`migctl list\` on "
    start_shadowd a "$T/key"
    wait_until 20 eval '(( $(grep -c "listening on" "$T/shadowd-a.log") >= 2 ))' || fail "away: a's shadowd did not start again"
    # One copy, once the hop's sender (on its own now) is done: at b (its deputy
    # registered with the new shadowd), listed there by both; or still the program at
    # a, listed there, nothing of it on b.
    on_b() { hm b list 2>/dev/null | awk -v p="${PID[away]}" '$1 == p' | grep -q .; }
    wait_until 30 eval '! others_on a | grep -q -- " send ${PID[away]} --to "' || fail "away: its sender still runs on a"
    if job_at_home away "${FEATURE[memory]}"; then
      if wait_until 10 eval '[[ $(host_of "$(where away)") == a ]]' && ! on_b; then
        ok "away: the hop did not happen: the program runs on at a, listed there, not on b's list"
        moved=0
      fi
    elif wait_until 30 eval '[[ $(host_of "$(where away)") == b ]]' && on_b; then
      ok "away: it moved: migctl list on a and on b show it at b, a's PID is its deputy"
      moved=1
    fi
    if [[ -z ${moved-} ]]; then
      fail "away: not in one place: listed at '$(where away)' on a, on b's list: $(on_b && echo yes || echo no), the program on a: $(job_at_home away "${FEATURE[memory]}" && echo yes || echo no)"
      shadowd_logs a b
    fi
    wait_job mem-ref 120
    compare away mem-ref "$STATUS"
  else
    fail "away: the migration ended before the transfer to b was seen (exited $(wait "$mpid"; echo $?))"
  fi
else
  fail "away: the job did not get to STEP 3 on a"
fi

# 7. b's page server killed with pages still missing (b: pages only on fault; b's shadowd
#    stopped meanwhile)
page_server_on() { hx "$1" ps -e -o pid=,comm=,args= | awk '$2 == "migctl" && / restart / { print $1; exit }'; }
# The memory program runs on HOST (not a zombie; its PID there is not its PID of home).
memory_on() { hx "$1" ps -e -o stat=,args= | awk -v exe="${FEATURE[memory]}" '$1 !~ /^Z/ && $2 == exe' | grep -q .; }
if start_job guard mig "${FEATURE[memory]}" 256M 60 && wait_step guard 3 60; then
  new_migrate_logs
  run_migrate guard b 120 --postcopy &
  mpid=$!
  bg_pids+=("$mpid")
  server=""
  if wait_until 60 eval '[[ $(host_of "$(where guard)") == b ]] || ! migrate_running'; then
    k=$(( $(last_step guard) + 1 ))
    migrate_running && wait_step guard "$k" 30 && server=$(page_server_on b)
  fi
  if [[ -z $server ]]; then
    fail "guard: no page server on b while the job ran there with pages at home (migctl migrate exited $MIG_RC first, or no STEP on b)"
    detail "$MIG_OUT" "migctl stdout"
    detail "$MIG_ERR" "migctl stderr"
  else
    kill -STOP "${SD[b]}"
    hx b kill -KILL "$server"
    note "b's page server (PID $server) killed after STEP $k on b, b's shadowd stopped"
    if wait_until 30 eval '! memory_on b'; then
      ok "guard: the job ended on b while b's shadowd was stopped"
    else
      fail "guard: the job still runs on b 30 s after its page server was killed"
    fi
    kill -CONT "${SD[b]}"
    wait_until 60 eval '! migrate_running'
    wait "$mpid"
    MIG_RC=$?
    migrated_ok guard 4 "post-copy, but its memory could not follow" a b
    if wait_job guard 60 && [[ $STATUS == 137 ]]; then
      ok "guard: the parent at home got status 137 (killed)"
    else
      fail "guard: the parent at home got status '${STATUS:-none}', not 137"
      detail "$(jfile guard err)" "its stderr"
    fi
    if grep -q "its page server ended before every page was here" "$T/shadowd-b.log"; then
      ok "guard: b says why: $(grep -h 'its page server ended before' "$T/shadowd-b.log" | tail -n 1 | cut -d' ' -f3-)"
    else
      fail "guard: b's shadowd log does not say that the job's page server ended"
      shadowd_logs b
    fi
    wait_job cut-ref 120
    n=$(wc -l <"$(jfile guard out)")
    if (( n > 0 )) && cmp -s <(head -n "$n" "$(jfile cut-ref out)") "$(jfile guard out)" && ! grep -q FAIL "$(jfile guard out)" "$(jfile guard err)"; then
      ok "guard: its $n lines of output are the undisturbed run's first $n, no failed check"
    else
      fail "guard: it ran on wrong data: its output is not a prefix of the undisturbed run's, or a check failed"
      diff <(cat "$(jfile cut-ref out)") <(cat "$(jfile guard out)") | head -n 12 | sed 's/^/#     /'
      detail "$(jfile guard err)" "its stderr"
    fi
    if wait_until 45 eval '! others_on b | grep -q .'; then
      ok "guard: nothing of the job is left on b"
    else
      fail "guard: processes left on b: $(others_on b | tr '\n' ';')"
    fi
  fi
else
  fail "guard: the job did not get to STEP 3 on a"
fi

cluster_end
