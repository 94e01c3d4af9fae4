#!/usr/bin/env bash
# Real zsh with the installed completions/_gpurun: a harness sets words, CURRENT and PREFIX as the
# completion system would, captures what _gpurun passes to compadd (and whether it asked for
# _files), and prints the candidates; "#unsorted" when it used an unsorted group (compadd -V).
source "$(dirname "$0")/completion_common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install zsh" zsh

script=$prefix/share/zsh/site-functions/_gpurun
[ -f "$script" ] || { echo "FAIL: cmake --install did not install $script"; exit 1; }

cat >"$tmp/harness.zsh" <<'HARNESS'
# usage: zsh -f harness.zsh SCRIPT LINE
emulate zsh
script=$1 line=$2
compdef() { : }
compadd() {
  local -a shown
  local unsorted=0
  while (( $# )); do
    case $1 in
      --) shift; break ;;
      -V) unsorted=1; shift 2 ;;
      -J) shift 2 ;;
      -d) shown=("${(@P)2}"); shift 2 ;;
      *) shift ;;
    esac
  done
  print -rl -- "$@"
  (( unsorted )) && print -r -- "#unsorted"
  (( ${#shown} )) && print -rl -- "${(@)shown/#/#display }"
  return 0
}
_files() { print -r -- "#files $*" }
compset() { [[ $1 == -P && $PREFIX == *=* ]] && PREFIX=${PREFIX#*=}; return 0 }
source $script
words=(${(z)line})
[[ $line == *' ' ]] && words+=("")
CURRENT=${#words}
PREFIX=${words[CURRENT]}
_gpurun
HARNESS

c() { zsh -f "$tmp/harness.zsh" "$script" "$1" 2>&1 | grep -v '^#display '; }
displays() { zsh -f "$tmp/harness.zsh" "$script" "$1" 2>&1 | sed -n 's/^#display //p'; }

out=$(c "gpurun ")
check_has "subcommands" "$out" validate plan gpus completion
check_lacks "hidden __complete" "$out" __complete
# zsh pads names to the longest one; compare with the padding squeezed.
check_has "descriptions" "$(displays "gpurun " | tr -s ' ')" "plan -- Show where each function would run, on which GPU, and what must be uploaded"
check_exact "gpurun pl" "$(c "gpurun pl")" plan
check_has "plan flags" "$(c "gpurun plan -")" -h --help -f --file --cloud --json --config
check_exact "plan -f ex: the shell completes files" "$(c "gpurun plan -f ex")" "#files "
check_exact "validate --file=ex: files" "$(c "gpurun validate --file=ex")" "#files "
check_exact "completion <TAB>" "$(c "gpurun completion " | sort)" "$(printf '%s\n' bash fish zsh)"
check_exact "--cloud from --config" "$(c "gpurun --config $config plan --cloud ")" "$(printf '%s\n' gcp gke local)"
check_exact "--cloud=g" "$(c "gpurun plan --config=$config --cloud=g")" "$(printf '%s\n' --cloud=gcp --cloud=gke)"
check_exact "nothing for an unknown word" "$(c "gpurun zzz")" ""

if has_flag run --gpu; then
  out=$(c "gpurun run --gpu A1")
  check_has "--gpu A1" "$out" A10G A100 A100:2 A100:8 A100:16 A100-20GB A100-80GB "#unsorted"
  check_lacks "--gpu A1 (T4)" "$out" T4 A100:17
else
  skip_note "no 'run --gpu' yet"
fi
if has_command run; then
  check_has "run <TAB>: functions of ./gpurun.yaml" "$(c "gpurun run ")" prep train eval
else
  skip_note "no 'run' command yet"
fi
if has_command cancel; then
  ids=$(seed_runs)
  check_exact "cancel <TAB>: @last, then run ids newest first, unsorted" "$(c "gpurun cancel ")" "@last"$'\n'"$ids"$'\n#unsorted'
else
  skip_note "no 'cancel' command yet"
fi
if has_flag logs --follow; then
  check_has "logs --follow" "$(c "gpurun logs --fo")" --follow
else
  skip_note "no 'logs --follow' yet"
fi

# The real completion system end to end: compinit finds _gpurun on $fpath, a pseudo-terminal
# types "gpurun compl<TAB>" and the line becomes "gpurun completion ".
if zsh -f -c 'zmodload zsh/zpty' 2>/dev/null; then
  cat >"$tmp/zpty.zsh" <<'ZPTY'
zmodload zsh/zpty
zpty -b z "zsh -f -i"
zpty -w z "PS1='> '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; bindkey '^I' complete-word"
zpty -w -n z $'gpurun compl\t'
zpty -w z $'\x01echo LINE=\x05'
local out
for i in {1..50}; do
  zpty -r -t z out && print -r -- "$out"
  [[ $out == *"LINE=gpurun completion"* ]] && break
  sleep 0.1
done
zpty -d z
ZPTY
  out=$(cd "$work" && timeout 20 zsh -f "$tmp/zpty.zsh" "$prefix/share/zsh/site-functions" 2>&1 || true)
  if grep -q "LINE=gpurun completion" <<<"$out"; then echo "ok: zpty: compinit + TAB completes 'compl'"; else
    echo "FAIL: zpty: no 'LINE=gpurun completion' in:"; echo "$out" | tail -5; failures=$((failures + 1)); fi
else
  skip_note "zsh/zpty module unavailable"
fi
finish
