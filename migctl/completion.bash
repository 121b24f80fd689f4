# Bash completion for migctl: its commands, each command's options, the PIDs of the
# jobs `migctl list` shows where a PID goes, and the node names `migctl nodes` shows
# after --to. Commands and options are read from migctl's own --help (kj::MainBuilder
# writes it from the options each command declares), so this file never lists them
# and cannot fall behind. Installed as share/bash-completion/completions/migctl.

# The migctl being completed (the word typed, which may be a path).
_migctl_prog() {
  local p=${COMP_WORDS[0]}
  [[ $p == */* || -z $p ]] || p=$(type -P -- "$p" 2>/dev/null) || p=migctl
  printf '%s' "${p:-migctl}"
}

# The names in the "Commands:" part of `migctl [COMMAND] --help`.
_migctl_commands() {
  "$@" --help 2>/dev/null | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\)  .*/\1/p'
}

# The options (--name, -x) of `migctl COMMAND --help`: the lines that start them.
_migctl_options() {
  "$@" --help 2>/dev/null | sed -n 's/^    \(-.*\)$/\1/p' | tr ',' '\n' |
    sed -nE 's/^ *(--[a-zA-Z][a-zA-Z0-9-]*|-[a-zA-Z]).*/\1/p'
}

# Whether OPTION of `migctl COMMAND --help` takes a value (printed as --name=<VALUE>).
_migctl_takes_value() {
  local opt=$1; shift
  "$@" --help 2>/dev/null | grep -Eq -- "^    (.*, )?$opt(=|[A-Z<])"
}

# PIDs of mig jobs: `migctl list` (this host's shadowd); without a shadowd, the processes
# of this user running under libmig.so, whose shim listens on @mig/UID/ctl/PID.
_migctl_pids() {
  local out
  if out=$("$@" 2>/dev/null); then
    awk 'NR > 1 {print $1}' <<<"$out"
  else
    sed -n "s|.*@mig/$(id -u)/ctl/\([0-9][0-9]*\)\$|\1|p" /proc/net/unix 2>/dev/null | sort -un
  fi
}

_migctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=""
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  local prog i w cmd=() socket=() seen_dashdash=0 args=0
  prog=$(_migctl_prog)
  COMPREPLY=()

  # The command (and sub-command, as `image info`) typed so far; --socket to pass on;
  # how many plain arguments came before the word being completed.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    if [[ $w == -- ]]; then seen_dashdash=1; ((args++)); continue; fi
    if ((seen_dashdash)); then ((args++)); continue; fi
    if [[ $w == --socket ]]; then socket=(--socket "${COMP_WORDS[i + 1]}"); ((i++)); continue; fi
    if [[ $w == --socket=* ]]; then socket=(--socket "${w#--socket=}"); continue; fi
    if [[ $w == -* ]]; then
      # An option that takes its value as the next word: that word is no argument.
      if ((${#cmd[@]} > 0)) && [[ $w != *=* ]] && _migctl_takes_value "$w" "$prog" "${cmd[@]}"; then ((i++)); fi
      continue
    fi
    if ((args == 0)) && _migctl_commands "$prog" "${cmd[@]}" | grep -qx -- "$w"; then
      cmd+=("$w")
    else
      ((args++))
    fi
  done

  if ((${#cmd[@]} == 0)); then
    mapfile -t COMPREPLY < <(compgen -W "$(_migctl_commands "$prog") --help --version" -- "$cur")
    return 0
  fi

  case $prev in
    --to)
      mapfile -t COMPREPLY < <(compgen -W "$("$prog" nodes "${socket[@]}" 2>/dev/null | awk 'NR > 1 {print $1}')" -- "$cur")
      return 0 ;;
    --socket) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
    -o | --output) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
    --timeout | --job-id | --realtime-offset-ns | --carried-fd) return 0 ;;
    --network) mapfile -t COMPREPLY < <(compgen -W "local rebind" -- "$cur"); return 0 ;;
    --relay | --local-path | --homecoming-log) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
  esac

  if [[ ${cmd[0]} == run ]]; then
    # After the program's name everything is the program's: complete files.
    if ((args == 0)) && [[ $cur != -* ]]; then mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    elif ((args > 0)); then mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    else mapfile -t COMPREPLY < <(compgen -W "$(_migctl_options "$prog" run)" -- "$cur"); fi
    return 0
  fi

  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_migctl_options "$prog" "${cmd[@]}")" -- "$cur")
    return 0
  fi

  # A sub-command still to choose (image → info).
  local subs
  subs=$(_migctl_commands "$prog" "${cmd[@]}")
  if [[ -n $subs ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
    return 0
  fi

  case ${cmd[0]} in
    migrate | checkpoint)
      # PID: the jobs of this host's shadowd; without one, nothing to offer.
      ((args == 0)) && mapfile -t COMPREPLY < <(compgen -W "$(_migctl_pids "$prog" list "${socket[@]}")" -- "$cur")
      ;;
    restart | image)
      ((args == 0)) && mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      ;;
  esac
  return 0
}
complete -F _migctl migctl
