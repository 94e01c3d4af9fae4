#!/usr/bin/env bash
# Real bash completion with the installed completions/gpurun.bash: a harness sets COMP_WORDS,
# COMP_CWORD, COMP_LINE and COMP_POINT as readline would (splitting at '=' and ':'), calls _gpurun
# and prints COMPREPLY. Runs with bash-completion's helpers and without them (the fallback).
source "$(dirname "$0")/completion_common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install bash" bash

script=$prefix/share/bash-completion/completions/gpurun
[ -f "$script" ] || { echo "FAIL: cmake --install did not install $script"; exit 1; }

cat >"$tmp/harness.bash" <<'HARNESS'
# usage: bash harness.bash MODE SCRIPT LINE; prints COMPREPLY, then "#nosort" when asked for.
mode=$1 script=$2 line=$3
[ "$mode" = bash-completion ] && source /usr/share/bash-completion/bash_completion
compopt() { [[ " $* " == *" -o nosort "* ]] && nosort=1; return 0; }  # records; the real one needs readline
source "$script"
COMP_WORDS=() word=""
for ((i = 0; i < ${#line}; i++)); do
  c=${line:i:1}
  case $c in
    ' ') [ -n "$word" ] && COMP_WORDS+=("$word"); word="" ;;
    '=' | ':')
      [ -n "$word" ] && [[ $word != [=:]* ]] && { COMP_WORDS+=("$word"); word=""; }
      word+=$c
      [[ ${line:i+1:1} == [=:] ]] || { COMP_WORDS+=("$word"); word=""; } ;;
    *) [[ $word == [=:]* ]] && { COMP_WORDS+=("$word"); word=""; }; word+=$c ;;
  esac
done
# The word under the cursor: empty after a space, else the last one.
if [[ $line == *' ' ]]; then COMP_WORDS+=(""); elif [ -n "$word" ]; then COMP_WORDS+=("$word"); fi
COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) COMP_LINE=$line COMP_POINT=${#line}
nosort=0
_gpurun gpurun "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
[ "$nosort" = 1 ] && echo "#nosort"
exit 0
HARNESS

modes=(fallback)
if [ -f /usr/share/bash-completion/bash_completion ]; then
  modes=(bash-completion fallback)
else
  echo "note: bash-completion is not installed; testing the script's fallback only"
fi

for mode in "${modes[@]}"; do
  echo "--- with $mode"
  c() { bash --norc --noprofile "$tmp/harness.bash" "$mode" "$script" "$1" 2>&1; }

  out=$(c "gpurun ")
  check_has "subcommands" "$out" validate plan gpus completion
  check_lacks "hidden __complete" "$out" __complete
  check_exact "gpurun pl" "$(c "gpurun pl")" plan
  check_has "plan flags" "$(c "gpurun plan -")" -h --help -f --file --cloud --json --config
  check_exact "plan --j" "$(c "gpurun plan --j")" --json
  check_exact "validate -f ex: files" "$(c "gpurun validate -f ex" | sort)" "$(printf '%s\n' example.yaml examples extra.txt)"
  check_exact "plan -f ex: files" "$(c "gpurun plan -f exa" | sort)" "$(printf '%s\n' example.yaml examples)"
  check_exact "plan --file=exa: files" "$(c "gpurun plan --file=exa" | sort)" "$(printf '%s\n' example.yaml examples)"
  check_exact "completion <TAB>" "$(c "gpurun completion " | sort)" "$(printf '%s\n' bash fish zsh)"
  check_exact "--cloud from --config" "$(c "gpurun --config $config plan --cloud ")" "$(printf '%s\n' gcp gke local)"
  check_exact "--cloud=g from --config=" "$(c "gpurun plan --config=$config --cloud=g")" "$(printf '%s\n' gcp gke)"
  check_exact "nothing for an unknown word" "$(c "gpurun zzz")" ""

  if has_flag run --gpu; then
    out=$(c "gpurun run --gpu A1")
    check_has "--gpu A1" "$out" A10G A100 A100:2 A100:8 A100-20GB A100-80GB "#nosort"
    check_lacks "--gpu A1 (T4, A100:17)" "$out" T4 A100:17
    check_has "--gpu A100: (colon word break)" "$(c "gpurun run --gpu A100:")" 2 8
    check_has "--gpu=H1" "$(c "gpurun run --gpu=H1")" H100 H100:8
  else
    skip_note "no 'run --gpu' yet"
  fi
  if has_command run; then
    check_has "run <TAB>: functions of ./gpurun.yaml" "$(c "gpurun run ")" prep train eval
    mkdir -p "$tmp/other"
    printf 'app: other\nfunctions:\n  embed:\n    command: echo\n' >"$tmp/other/m.yaml"
    check_exact "run -f FILE <TAB>" "$(c "gpurun run -f $tmp/other/m.yaml ")" embed
  else
    skip_note "no 'run' command yet"
  fi
  if has_command cancel; then
    rm -rf "$GPURUN_STATE_DIR"
    ids=$(seed_runs)
    check_exact "cancel <TAB>: @last, then run ids newest first, not sorted" "$(c "gpurun cancel ")" "@last"$'\n'"$ids"$'\n#nosort'
  else
    skip_note "no 'cancel' command yet"
  fi
  if has_flag logs --follow; then
    check_has "logs --follow" "$(c "gpurun logs --fo")" --follow
  else
    skip_note "no 'logs --follow' yet"
  fi
done
finish
