#!/bin/bash
# man_test.sh: the man pages render without a warning (groff -ww, man --warnings),
# and every command, sub-command and option that `migctl ... --help` shows is named
# in migctl(1), every option of `shadowd --help` in shadowd(8): a command or option
# added without its page fails here.
#
# usage: man_test.sh MIGCTL SHADOWD MIGCTL.1 SHADOWD.8 LIBMIG.7
set -u
migctl=$1 shadowd=$2
shift 2
failures=0
ok() { echo "ok    $1"; }
bad() { echo "FAIL  $1"; failures=$((failures + 1)); }
tmp=$(mktemp -d /tmp/mig-man.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

for page in "$@"; do
  name=$(basename "$page")
  if ! groff -ww -z -man "$page" 2> "$tmp/groff.err" || [ -s "$tmp/groff.err" ]; then
    bad "$name: groff -ww warns: $(head -3 "$tmp/groff.err")"
  elif ! LC_ALL=C MANWIDTH=80 man --warnings -E ascii -l "$page" > "$tmp/$name.txt" 2> "$tmp/man.err" ||
       [ -s "$tmp/man.err" ]; then
    bad "$name: man --warnings warns: $(head -3 "$tmp/man.err")"
  elif [ "$(wc -l < "$tmp/$name.txt")" -lt 40 ]; then
    bad "$name: renders to only $(wc -l < "$tmp/$name.txt") lines"
  else
    ok "$name renders ($(wc -l < "$tmp/$name.txt") lines) without warnings"
  fi
done

# commands HELP_ARGS...: the names in the "Commands:" part of that --help.
commands() { "$@" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\)  .*/\1/p'; }
# options HELP_ARGS...: the long and short options that --help lists.
options() {
  "$@" --help | sed -n 's/^    \(-.*\)$/\1/p' | tr ',' '\n' | sed -nE 's/^ *(--[a-zA-Z][a-zA-Z0-9-]*|-[a-zA-Z]).*/\1/p'
}
# named PAGE_TEXT WORD: WORD appears in the rendered page as a word of its own.
named() { grep -qE -- "(^|[^a-zA-Z0-9-])$2([^a-zA-Z0-9-]|$)" "$1"; }

check_named() {  # check_named PAGE_TEXT WHAT-FOR-MESSAGES WORD...
  local text=$1 what=$2 missing=() w
  shift 2
  for w in "$@"; do named "$text" "$w" || missing+=("$w"); done
  if [ ${#missing[@]} -eq 0 ]; then ok "$what: all $# named in $(basename "$text" .txt)"
  else bad "$what: not in $(basename "$text" .txt): ${missing[*]}"; fi
}

mtext=$tmp/migctl.1.txt
shtext=$tmp/shadowd.8.txt
[ -s "$mtext" ] && [ -s "$shtext" ] || { bad "migctl.1 or shadowd.8 did not render"; exit 1; }

cmds=$(commands "$migctl")
[ -n "$cmds" ] || bad "migctl --help lists no commands"
# shellcheck disable=SC2086,SC2046
check_named "$mtext" "migctl's commands" $cmds $(options "$migctl")
for c in $cmds; do
  subs=$(commands "$migctl" "$c")
  # shellcheck disable=SC2086
  check_named "$mtext" "migctl $c's options" $(options "$migctl" "$c") $subs
  for s in $subs; do
    # shellcheck disable=SC2086
    check_named "$mtext" "migctl $c $s's options" $(options "$migctl" "$c" "$s")
  done
done
# shellcheck disable=SC2086,SC2046
check_named "$shtext" "shadowd's options" $(options "$shadowd")

# The check itself: a made-up option is not found.
named "$mtext" "--no-such-option" && bad "the check finds an option that is not there"

[ "$failures" -eq 0 ]
