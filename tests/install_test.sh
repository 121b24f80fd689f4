#!/bin/bash
# `meson install` installs what a host needs (into a scratch DESTDIR): migctl,
# shadowd, mig-deputy in bin; libmig.so in lib; mig-restore in libexec/mig; mig.h in
# include; the systemd unit (ExecStart at this install's shadowd); the man pages and
# migctl's bash completion in share. Then the installed
# tree works on its own: a program built against the installed mig.h, run under the
# installed libmig.so, checkpoints itself (the shim finds the installed migctl) and
# the installed migctl restarts it (finding the installed mig-restore).
# Args: MESON BUILD_DIR SELF_CHECKPOINT_SOURCE
set -u
meson=$1 build=$2 src=$3
source "$(dirname "$0")/lib/check.sh"
check_setup install
bad_lines=20

if ! "$meson" install -C "$build" --destdir "$dir/root" --no-rebuild --quiet > "$dir/install.log" 2>&1; then
  bad "meson install" "$dir/install.log"
  exit 1
fi
prefix=$("$meson" introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
libdir=$("$meson" introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
r=$dir/root$prefix
missing=""
for f in bin/migctl bin/shadowd bin/mig-deputy "$libdir/libmig.so" libexec/mig/mig-restore include/mig.h \
         lib/systemd/system/shadowd.service; do
  [ -e "$r/$f" ] || missing+=" $f"
done
[ -z "$missing" ] && ok "installed: migctl shadowd mig-deputy libmig.so mig-restore mig.h shadowd.service" ||
  bad "not installed:$missing" "$dir/install.log"
# The man pages, the bash completion, json.md (which migctl(1) points to) and
# policies.md (shadowd(8)'s --policy).
opt() { "$meson" introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"; }
mandir=$(opt mandir) datadir=$(opt datadir)
missing=""
for f in "$mandir/man1/migctl.1" "$mandir/man8/shadowd.8" "$mandir/man7/libmig.7" \
         "$datadir/bash-completion/completions/migctl" "$datadir/doc/mig/json.md" \
         "$datadir/doc/mig/policies.md"; do
  [ -s "$r/$f" ] || missing+=" $f"
done
[ -z "$missing" ] && ok "installed: migctl.1 shadowd.8 libmig.7, bash completion, json.md, policies.md" ||
  bad "not installed:$missing" "$dir/install.log"
grep -qx "ExecStart=$prefix/bin/shadowd .*" "$r/lib/systemd/system/shadowd.service" &&
  ok "the unit starts $prefix/bin/shadowd" || bad "the unit's ExecStart" "$r/lib/systemd/system/shadowd.service"

if ! cc -O2 -I"$r/include" "$src" -o "$dir/self_checkpoint" 2> "$dir/cc.log"; then
  bad "a program built against the installed mig.h" "$dir/cc.log"
else
  # Nothing from the build tree: the shim and migctl find each other in the install.
  (cd "$dir" && env -u MIG_MIGCTL -u MIG_RESTORE -u MIG_LIBMIG LD_PRELOAD="$r/$libdir/libmig.so" \
     timeout 60 ./self_checkpoint "$dir/job.img" 2> "$dir/err1" | cat > "$dir/out1")
  (cd "$dir" && env -u MIG_MIGCTL -u MIG_RESTORE -u MIG_LIBMIG timeout 60 "$r/bin/migctl" restart "$dir/job.img" \
     2> "$dir/err2" | cat > "$dir/out2")
  if [ "$(tail -n 1 "$dir/out1")" = "done: sum 2668667000" ] && grep -qx "after: returned 0" "$dir/out1" &&
     [ "$(cat "$dir/out2")" = "$(printf 'after: returned 1\ndone: sum 2668667000')" ]; then
    ok "the installed tree alone: mig_checkpoint under the installed libmig.so, restarted by the installed migctl"
  else bad "checkpoint and restart with the installed tree" "$dir/out1" "$dir/err1" "$dir/out2" "$dir/err2"; fi
fi
[ "$fails" -eq 0 ]
