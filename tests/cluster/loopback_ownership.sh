#!/bin/bash
# loopback_ownership.sh: a job is the uid the kernel reports, never the one it names
# itself by. With a real unprivileged user (made here, removed at the end):
# - a process of that user that takes root's control-socket name (@mig/0/ctl/PID, as
#   a shim would under a getuid() faked to 0) is not listed by root's shadowd, and
#   root's `migctl migrate` and `migctl checkpoint` of it are refused with one line
#   naming its uid;
# - the user checkpoints a job of theirs; the image records its owner; root's
#   `migctl restart` of that image runs it as the user: a file only root may open
#   (its stdout) is refused, and with its own file it runs as the user (real,
#   effective, saved and fs uid and gid in /proc) and finishes with the undisturbed
#   output and status.
# Needs root (useradd); skipped (77) without it.
#
# - the same image with its owner taken out (as an older mig made it): root refuses it
#   with one line naming --as-file-owner; with it, it runs as the image file's owner.
#
# usage: loopback_ownership.sh SHADOWD MIGCTL LIBMIG COUNTER REWRITE_TOOL
set -u
shadowd=$(readlink -f "$1") migctl=$(readlink -f "$2") libmig=$(readlink -f "$3") counter=$(readlink -f "$4") rewrite=$(readlink -f "$5")
source "$(dirname "$0")/lib/loopback_lib.sh" ownership
if [[ $(id -u) != 0 ]]; then echo "SKIP: needs root (useradd)"; exit 77; fi
user=migown$$
useradd --system --no-create-home --shell /usr/sbin/nologin "$user" || { fail "useradd $user"; exit 1; }
# At the end: every process of the user (all started here), by PID, then the user.
end_user() {
  local p
  for p in $(pgrep -u "$uid"); do kill -9 "$p" 2>/dev/null; done
  wait_until 10 eval '[[ -z $(pgrep -u "$uid") ]]'
  userdel "$user" || echo "# could not remove the test user $user"
}
uid=$(id -u "$user") gid=$(id -g "$user")
trap 'end_user; cleanup' EXIT
chmod 755 "$dir"
asuser() { setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"; }

a=$(port) b=$(port)
new_key "$dir/key"
start_shadowd a "$a" "$dir/key"
start_shadowd b "$b" "$dir/key"
wait_shadowds a b

# --- a user's process under root's name ----------------------------------------------------
asuser /usr/bin/python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind("\0mig/0/ctl/%d" % os.getpid())
s.listen(4)
print("ready", os.getpid(), flush=True)
s.settimeout(60)
try:
    while True:
        c, _ = s.accept()
        c.close()
except socket.timeout:
    pass
' > "$dir/fake.out" 2>&1 &
pids+=($!)
if ! wait_line "$dir/fake.out" ready; then
  bad "the user's process did not bind root's control-socket name" "$dir/fake.out"
else
  fake=$(awk '$1 == "ready" { print $2 }' "$dir/fake.out")
  pids+=($fake)
  [[ $(awk '/^Uid:/ { print $2 }' "/proc/$fake/status") == "$uid" ]] || bad "PID $fake is not uid $uid's"
  A list > "$dir/list.out" 2>&1
  if awk -v p="$fake" '$1 == p' "$dir/list.out" | grep -q .; then
    bad "root's migctl list shows PID $fake, a process of uid $uid that named itself as root's" "$dir/list.out"
  else
    ok "root's migctl list does not show PID $fake (uid $uid under root's control-socket name)"
  fi
  A migrate "$fake" --to "127.0.0.1:$b" > "$dir/mig.out" 2> "$dir/mig.err"
  rc=$?
  if (( rc != 0 )) && [[ $(wc -l < "$dir/mig.err") == 1 ]] && grep -q "belongs to uid $uid" "$dir/mig.err"; then
    ok "root's migctl migrate of it refused (exit $rc): $(cat "$dir/mig.err")"
  else
    bad "root's migctl migrate of PID $fake (uid $uid) exited $rc without one line naming uid $uid" "$dir/mig.out" "$dir/mig.err"
  fi
  "$migctl" checkpoint "$fake" -o "$dir/fake.img" > "$dir/ck.out" 2> "$dir/ck.err"
  rc=$?
  if (( rc != 0 )) && [[ $(wc -l < "$dir/ck.err") == 1 ]] && grep -q "belongs to uid $uid" "$dir/ck.err" && [[ ! -e $dir/fake.img ]]; then
    ok "root's migctl checkpoint of it refused (exit $rc), no image: $(cat "$dir/ck.err")"
  else
    bad "root's migctl checkpoint of PID $fake (uid $uid) exited $rc without one line naming uid $uid (or made an image)" "$dir/ck.out" "$dir/ck.err"
  fi
fi
[[ -n ${fake-} ]] && kill -9 "$fake" 2>/dev/null

# --- the user's image, restarted by root, runs as the user ---------------------------------
mkdir "$dir/u" && chown "$uid:$gid" "$dir/u"
# The undisturbed run, beside the user's jobs below: read once the first of them ends.
( "$counter" 40 > "$dir/ref.out" 2>&1; echo "$?" > "$dir/ref.status" ) &
pids+=($!)
ref_status=""
ref_done() {  # sets ref_status once the undisturbed run has ended (bounded: 30 s)
  wait_until 30 test -s "$dir/ref.status" || bad "the undisturbed counter run did not end within 30 s" "$dir/ref.out"
  ref_status=$(cat "$dir/ref.status" 2>/dev/null)
}
# user_job NAME: the user's counter job under mig, stdout to u/NAME.out (made by
# root when NAME is rootout: a file the user may not open), checkpointed by the user
# (--stop) at STEP 5 into u/NAME.img. Returns non-zero (after a FAIL) if that fails.
user_job() {
  local name=$1 job="" i
  : > "$dir/u/$name.out"
  [[ $name == rootout ]] && chmod 600 "$dir/u/$name.out" || chown "$uid:$gid" "$dir/u/$name.out"
  (cd "$dir/u" && exec setpriv --reuid "$uid" --regid "$gid" --clear-groups -- env LD_PRELOAD="$libmig" \
     "$counter" 40 >> "$dir/u/$name.out" 2>&1) &
  pids+=($!)
  for i in $(seq 1 100); do
    job=$(pgrep -u "$uid" -f "^$counter 40" | head -n 1)
    [[ -n $job ]] && break
    sleep 0.1
  done
  if [[ -z $job ]] || ! wait_line "$dir/u/$name.out" '^STEP 5$'; then
    bad "$name: the user's counter job did not get to STEP 5" "$dir/u/$name.out"
    return 1
  fi
  if ! (cd "$dir/u" && setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$migctl" checkpoint "$job" \
          -o "$dir/u/$name.img" --stop > "$dir/u/$name.ck" 2>&1); then
    bad "$name: the user's checkpoint of their own job (PID $job)" "$dir/u/$name.ck"
    return 1
  fi
  wait_until 10 eval '! kill -0 "$job" 2>/dev/null'
}

# Its stdout a file only root may open: root's restart, as the user, cannot reopen it.
if user_job rootout; then
  "$migctl" restart "$dir/u/rootout.img" > "$dir/r1.out" 2> "$dir/r1.err"
  rc=$?
  if (( rc != 0 )) && [[ $(wc -l < "$dir/r1.err") == 1 ]] && grep -q "Permission denied" "$dir/r1.err"; then
    ok "root's restart of uid $uid's image runs with uid $uid's rights: a file only root may open is refused (exit $rc): $(cat "$dir/r1.err")"
  else
    bad "root's restart of uid $uid's image whose stdout only root may open exited $rc" "$dir/r1.out" "$dir/r1.err"
  fi
fi

# Its stdout the user's file: root's restart runs it as the user, to its end.
if user_job userout; then
  ok "uid $uid checkpointed its job to an image"
  "$migctl" restart "$dir/u/userout.img" > "$dir/r2.out" 2> "$dir/r2.err" &
  r=$!
  pids+=($r)
  if wait_line "$dir/u/userout.out" '^STEP 7$'; then
    ids=$(awk '/^Uid:|^Gid:/ { printf "%s %s %s %s %s ", $1, $2, $3, $4, $5 }' "/proc/$r/status")
    if [[ $ids == "Uid: $uid $uid $uid $uid Gid: $gid $gid $gid $gid " ]]; then
      ok "root's migctl restart of uid $uid's image runs as uid $uid gid $gid ($ids)"
    else
      bad "root's migctl restart of uid $uid's image runs as: $ids" "$dir/r2.err"
    fi
  else
    bad "root's restart of the user's image printed no STEP 7" "$dir/u/userout.out" "$dir/r2.err"
  fi
  wait "$r"
  st=$?
  ref_done
  if [[ $st == "$ref_status" ]] && cmp -s "$dir/ref.out" "$dir/u/userout.out"; then
    ok "the restarted job finished as undisturbed (status $st, $(wc -l < "$dir/u/userout.out") lines)"
  else
    bad "the restarted job: status $st (undisturbed $ref_status), output differs" "$dir/r2.err"
    diff "$dir/ref.out" "$dir/u/userout.out" | head -n 10
  fi
fi
# An image without its owner (an older mig's): refused by root, unless --as-file-owner.
if [[ -f $dir/u/userout.img ]] && "$rewrite" "$dir/u/userout.img" "$dir/u/noowner.img" --no-owner; then
  "$migctl" restart "$dir/u/noowner.img" > "$dir/r3.out" 2> "$dir/r3.err"
  rc=$?
  if (( rc != 0 )) && [[ $(wc -l < "$dir/r3.err") == 1 ]] && grep -q -- "--as-file-owner" "$dir/r3.err"; then
    ok "root refuses an image that records no owner (exit $rc): $(cat "$dir/r3.err")"
  else
    bad "root's restart of an image without owner exited $rc without one line naming --as-file-owner" "$dir/r3.out" "$dir/r3.err"
  fi
  chown "$uid:$gid" "$dir/u/noowner.img"
  # (--force: its stdout file grew since, with the first restart's part)
  "$migctl" restart --as-file-owner --force "$dir/u/noowner.img" > "$dir/r4.out" 2> "$dir/r4.err" &
  r=$!
  pids+=($r)
  if wait_until 30 eval '[[ $(grep -c "^STEP 7$" "$dir/u/userout.out") == 2 ]]' &&
     [[ $(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$r/status") == "$uid $uid $uid $uid" ]]; then
    ok "with --as-file-owner it runs as the file's owner, uid $uid"
  else
    bad "root's restart --as-file-owner of uid $uid's file did not run as uid $uid" "$dir/r4.err"
  fi
  wait "$r"
  st=$?
  [[ -n $ref_status ]] || ref_done
  [[ $st == "$ref_status" ]] || bad "the job restarted with --as-file-owner ended with status $st, not $ref_status" "$dir/r4.err"
else
  bad "could not make the image without owner (mig-image-rewrite --no-owner)"
fi
[ "$failures" -eq 0 ]
