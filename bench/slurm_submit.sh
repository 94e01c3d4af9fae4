#!/usr/bin/env bash
# Submit latency on a real Slurm cluster (tests/fixtures/slurm_cluster.sh, started here and
# stopped at the end): `gpurun run --detach` against `sbatch` of an equivalent job, and the time
# from `gpurun run` to the first log line. Prints medians and the ratio (target: within 1.5x).
# Usage: bench/slurm_submit.sh [GPURUN] [REPEATS]
# With SLURM_SUBMIT_RESULTS=FILE the medians are also written there as key=value lines (bench/run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gpurun=$(realpath "${1:-$root/build/gpurun}")
repeats=${2:-15}
fixture=$root/tests/fixtures/slurm_cluster.sh
tmp=$(mktemp -d)
cluster=$(mktemp -d)
chmod 755 "$cluster"
trap '"$fixture" stop "$cluster" >/dev/null 2>&1 || true; rm -rf "$tmp" "$cluster"' EXIT
"$fixture" start "$cluster" >/dev/null 2>&1
eval "$("$fixture" env "$cluster")"
export GPURUN_STATE_DIR=$tmp/state XDG_CONFIG_HOME=$tmp/config
unset GPURUN_CONFIG
mkdir -p "$XDG_CONFIG_HOME/gpurun" "$tmp/logs"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4"]
    log_dir: $tmp/logs
    gres: {T4: t4}
YAML
cd "$tmp"
printf 'app: bench\nfunctions:\n  hello: {command: ["echo", "hello"], gpu: T4}\n' > gpurun.yaml
"$gpurun" run hello --detach >/dev/null  # warm up
sbatch --parsable -p aws --gres=gpu:t4:1 -o "$tmp/logs/sbatch-%j.log" --wrap "echo hello" >/dev/null

python3 - "$gpurun" "$repeats" "$tmp/logs" "${SLURM_SUBMIT_RESULTS:-}" <<'PY'
import statistics, subprocess, sys, time
gpurun, repeats, logs, results = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def median_ms(cmd):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
g = median_ms([gpurun, "run", "hello", "--detach"])
s = median_ms(["sbatch", "--parsable", "-p", "aws", "--gres=gpu:t4:1", "-o", f"{logs}/sbatch-%j.log", "--wrap", "echo hello"])
first = []
for _ in range(max(3, repeats // 3)):
    t = time.perf_counter()
    p = subprocess.Popen([gpurun, "run", "hello"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.readline()
    first.append((time.perf_counter() - t) * 1000)
    p.wait()
print(f"{'measure':<40} {'value':>12} {'target':>10}")
print(f"{'gpurun run --detach (median)':<40} {g:>9.1f} ms")
print(f"{'sbatch (median)':<40} {s:>9.1f} ms")
print(f"{'ratio gpurun / sbatch':<40} {g / s:>11.2f}x {'<= 1.5x':>10} {'ok' if g / s <= 1.5 else 'MISSED'}")
print(f"{'submit to first log line (median)':<40} {statistics.median(first):>9.1f} ms")
if results:
    with open(results, "w") as f:
        f.write(f"gpurun_ms={g:.1f}\nsbatch_ms={s:.1f}\nratio={g / s:.2f}\nfirst_line_ms={statistics.median(first):.1f}\n")
PY
