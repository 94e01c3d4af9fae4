#!/usr/bin/env bash
# Times `gpurun __complete run ''` (function names, the slowest completion) against a generated
# manifest of N functions (default 1000) and prints the median of R runs (default 21) in ms.
# Usage: bench/completion_bench.sh [GPURUN] [N] [R]       The budget is 50 ms.
set -euo pipefail
gpurun=${1:-$(cd "$(dirname "$0")/.." && pwd)/build/gpurun}
functions=${2:-1000}
repeats=${3:-21}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GPURUN_STATE_DIR=$tmp/state XDG_CONFIG_HOME=$tmp/config
unset GPURUN_CONFIG
cd "$tmp"
{
  echo "app: bench"
  echo "functions:"
  for ((i = 1; i <= functions; i++)); do
    printf '  fn_%04d:\n    command: [python, train.py, --epoch, "%d"]\n    gpu: A100:2\n    timeout: 1h\n    env: {SEED: "%d"}\n' "$i" "$i" "$i"
  done
} >gpurun.yaml
count=$("$gpurun" __complete run '' | tail -n +2 | wc -l)
[ "$count" = "$functions" ] || echo "warning: __complete run offered $count names, expected $functions" >&2
times=()
for ((r = 0; r < repeats; r++)); do
  start=$(date +%s%N)
  "$gpurun" __complete run '' >/dev/null
  end=$(date +%s%N)
  times+=($(((end - start) / 1000)))
done
median_us=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$((repeats / 2 + 1))p")
printf '__complete run (%d functions): median %d.%03d ms over %d runs\n' "$functions" $((median_us / 1000)) $((median_us % 1000)) "$repeats"
