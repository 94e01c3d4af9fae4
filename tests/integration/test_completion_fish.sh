#!/usr/bin/env bash
# Real fish with the installed completions/gpurun.fish: `complete -C"gpurun ..."` prints what
# fish would offer (candidate<TAB>description), in fish's own matching and ordering.
source "$(dirname "$0")/completion_common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install fish" fish

script=$prefix/share/fish/vendor_completions.d/gpurun.fish
[ -f "$script" ] || { echo "FAIL: cmake --install did not install $script"; exit 1; }

# Candidates only (descriptions cut), as fish offers them for the line.
c() { fish --no-config -c "source '$script'; complete -C\"\$argv[1]\"" "$1" 2>&1 | cut -f1; }
full() { fish --no-config -c "source '$script'; complete -C\"\$argv[1]\"" "$1" 2>&1; }

out=$(c "gpurun ")
check_has "subcommands" "$out" validate plan gpus completion
check_lacks "hidden __complete" "$out" __complete
check_has "descriptions" "$(full "gpurun ")" $'gpus\tList the GPU catalog, which clouds offer each type, and the local GPUs'
check_exact "gpurun ru / pl" "$(c "gpurun pl")" plan
check_has "plan flags" "$(c "gpurun plan -")" -h --help -f --file --cloud --json --config
check_exact "plan -f ex: files" "$(c "gpurun plan -f ex")" "$(printf '%s\n' example.yaml examples/ extra.txt)"
check_exact "validate --file=exa: files" "$(c "gpurun validate --file=exa")" "$(printf '%s\n' --file=example.yaml --file=examples/)"
check_exact "completion <TAB> (kept in order)" "$(c "gpurun completion ")" "$(printf '%s\n' bash zsh fish)"
check_exact "--cloud from --config" "$(c "gpurun --config $config plan --cloud ")" "$(printf '%s\n' gcp gke local)"
check_exact "--cloud=g" "$(c "gpurun plan --config=$config --cloud=g")" "$(printf '%s\n' --cloud=gcp --cloud=gke)"
check_exact "nothing for an unknown word" "$(c "gpurun zzz")" ""

if has_command run; then
  check_has "gpurun ru" "$(c "gpurun ru")" run
  check_has "run <TAB>: functions of ./gpurun.yaml" "$(c "gpurun run ")" prep train eval
else
  skip_note "no 'run' command yet"
fi
if has_flag run --gpu; then
  out=$(c "gpurun run --gpu A1")
  check_has "--gpu A1" "$out" A10G A100 A100:2 A100:8 A100-20GB A100-80GB
  check_lacks "--gpu A1 (T4)" "$out" T4 A100:17
else
  skip_note "no 'run --gpu' yet"
fi
if has_command cancel; then
  ids=$(seed_runs)
  check_exact "cancel <TAB>: @last, then run ids newest first (--keep-order)" "$(c "gpurun cancel ")" "@last"$'\n'"$ids"
else
  skip_note "no 'cancel' command yet"
fi
if has_flag logs --follow; then
  check_has "logs --follow" "$(c "gpurun logs --fo")" --follow
else
  skip_note "no 'logs --follow' yet"
fi
finish
