#!/usr/bin/env bash
# Every flag that `gpurun --help` and `gpurun COMMAND --help` show is offered by
# `gpurun __complete`, for every command `gpurun --help` lists; __complete never writes to stderr.
set -euo pipefail
: "${GPURUN:?GPURUN must name the gpurun binary (ctest sets it)}"
failures=0
checked=0

flags_of() {  # the -x / --long names on the Options lines of a help text
  sed -n '/^Options:/,/^$/p' | grep -E '^  +-' | sed -E 's/^ +//; s/ .*//' | tr ',' '\n' | grep -E '^--?[A-Za-z0-9]'
}
check_flags() {  # check_flags "WORDS BEFORE" HELP_TEXT
  local before=$1 help=$2 flag out err
  for flag in $(flags_of <<<"$help"); do
    err=$(mktemp)
    # shellcheck disable=SC2086
    out=$("$GPURUN" __complete $before "$flag" 2>"$err")
    if ! grep -qxF -- "$flag" <<<"$(cut -f1 <<<"$out")"; then
      echo "FAIL: 'gpurun $before $flag<TAB>' does not offer $flag"; failures=$((failures + 1))
    fi
    if [ -s "$err" ]; then echo "FAIL: __complete wrote to stderr: $(cat "$err")"; failures=$((failures + 1)); fi
    rm -f "$err"
    checked=$((checked + 1))
  done
}

root_help=$("$GPURUN" --help)
check_flags "" "$root_help"
commands=$(sed -n '/^Subcommands:/,/^$/p' <<<"$root_help" | grep -E '^  [a-z]' | awk '{print $1}')
[ -n "$commands" ] || { echo "FAIL: no subcommands in gpurun --help"; exit 1; }
for command in $commands; do
  check_flags "$command" "$("$GPURUN" "$command" --help)"
done
echo "checked $checked flags of $(wc -w <<<"$commands") commands"
[ "$checked" -gt 5 ] || { echo "FAIL: too few flags found; is the help format parsed right?"; exit 1; }
[ "$failures" = 0 ] || exit 1
echo PASS
