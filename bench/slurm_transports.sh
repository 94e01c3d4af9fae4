#!/usr/bin/env bash
# Slurm's cli and ssh transports on a real cluster (tests/fixtures/slurm_cluster.sh) behind a real
# sshd (tests/fixtures/sshd.sh), both started here and stopped at the end (needs root):
#   cli: `gpurun run --detach` against raw `sbatch` (target: at most 20 ms more); `gpurun run` to
#        its first log line and to its exit against `srun` (targets: 4x and 6x srun)
#   ssh: `gpurun run --detach` against `ssh host sbatch` through a warm shared connection (target:
#        at most 20 ms more), and SSH sessions per submit from sshd's VERBOSE log (target: 1)
# Usage: bench/slurm_transports.sh [GPURUN] [REPEATS]; with SLURM_TRANSPORT_RESULTS=FILE the
# numbers are also written there as key=value lines (bench/run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gpurun=$(realpath "${1:-$root/build/gpurun}")
repeats=${2:-15}
fixture=$root/tests/fixtures/slurm_cluster.sh
sshd_fixture=$root/tests/fixtures/sshd.sh
tmp=$(mktemp -d)
chmod 755 "$tmp"
cluster=$(mktemp -d)
chmod 755 "$cluster"
sshd_dir=$(mktemp -d)
trap '"$sshd_fixture" stop "$sshd_dir" >/dev/null 2>&1 || true; "$fixture" stop "$cluster" >/dev/null 2>&1 || true; rm -rf "$tmp" "$cluster" "$sshd_dir"' EXIT
"$fixture" start "$cluster" >/dev/null 2>&1
eval "$("$fixture" env "$cluster")"
"$sshd_fixture" start "$sshd_dir" >/dev/null
eval "$("$sshd_fixture" env "$sshd_dir")"
export GPURUN_STATE_DIR=$tmp/state XDG_CONFIG_HOME=$tmp/config
unset GPURUN_CONFIG
mkdir -p "$XDG_CONFIG_HOME/gpurun" "$tmp/logs" "$cluster/ssh-logs"
chown "$GPURUN_TEST_SSH_USER" "$cluster/ssh-logs"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: cli
clouds:
  cli: {backend: slurm, transport: cli, partition: aws, gpus: ["T4:4"], log_dir: $tmp/logs, gres: {T4: t4}}
  ssh:
    backend: slurm
    transport: ssh
    host: $GPURUN_TEST_SSH_HOST
    port: $GPURUN_TEST_SSH_PORT
    user: $GPURUN_TEST_SSH_USER
    identity_file: $GPURUN_TEST_SSH_KEY
    ssh_options: ["UserKnownHostsFile=$GPURUN_TEST_SSH_KNOWN_HOSTS"]
    remote_setup: ["export SLURM_CONF=$SLURM_CONF"]
    partition: aws
    gpus: ["T4:4"]
    log_dir: $cluster/ssh-logs
    gres: {T4: t4}
YAML
cd "$tmp"
printf 'app: bench\nfunctions:\n  hello: {command: ["echo", "hello"], gpu: T4}\n' > gpurun.yaml
ssh_raw=(ssh -T -o BatchMode=yes -o IdentitiesOnly=yes -i "$GPURUN_TEST_SSH_KEY" -o UserKnownHostsFile="$GPURUN_TEST_SSH_KNOWN_HOSTS"
  -o ControlMaster=auto -o ControlPath="$tmp/cm-%C" -o ControlPersist=60 -p "$GPURUN_TEST_SSH_PORT"
  -l "$GPURUN_TEST_SSH_USER" "$GPURUN_TEST_SSH_HOST")
"$gpurun" run hello --detach >/dev/null                    # warm up
"$gpurun" run hello --detach --cloud ssh >/dev/null
"${ssh_raw[@]}" true

python3 - "$gpurun" "$repeats" "$tmp/logs" "$cluster/ssh-logs" "$GPURUN_TEST_SSH_LOG" "$SLURM_CONF" \
  "${SLURM_TRANSPORT_RESULTS:-}" "${ssh_raw[@]}" <<'PY'
import statistics, subprocess, sys, time
gpurun, repeats, logs, ssh_logs, sshd_log, slurm_conf, results = sys.argv[1:8]
repeats = int(repeats)
ssh_raw = sys.argv[8:]
def median_ms(cmd, **kw):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
def sessions():
    with open(sshd_log, errors="replace") as f:
        return sum(1 for line in f if "Starting session:" in line)
sbatch = ["sbatch", "--parsable", "-p", "aws", "--gres=gpu:t4:1", "-o", f"{logs}/sbatch-%j.log", "--wrap", "echo hello"]
cli_g = median_ms([gpurun, "run", "hello", "--detach"])
cli_s = median_ms(sbatch)
before = sessions()
ssh_g = median_ms([gpurun, "run", "hello", "--detach", "--cloud", "ssh"])
per_submit = (sessions() - before) / repeats
remote = f"env SLURM_CONF={slurm_conf} sbatch --parsable -p aws --gres=gpu:t4:1 -o {ssh_logs}/sbatch-%j.log --wrap 'echo hello'"
ssh_s = median_ms(ssh_raw + [remote])
def attached(cmd):
    first, done = [], []
    for _ in range(max(3, repeats // 3)):
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdout.readline()
        first.append((time.perf_counter() - t) * 1000)
        p.wait()
        done.append((time.perf_counter() - t) * 1000)
    return statistics.median(first), statistics.median(done)
g_first, g_exit = attached([gpurun, "run", "hello"])
s_first, s_exit = attached(["srun", "-p", "aws", "--gres=gpu:t4:1", "echo", "hello"])
rows = [
    ("cli: run --detach vs sbatch", f"{cli_g:.1f} vs {cli_s:.1f} ms", "+20 ms", cli_g - cli_s <= 20),
    ("ssh: run --detach vs ssh sbatch", f"{ssh_g:.1f} vs {ssh_s:.1f} ms", "+20 ms", ssh_g - ssh_s <= 20),
    ("ssh: sessions per submit", f"{per_submit:.2f}", "1", per_submit <= 1.0),
    ("cli: first line, run vs srun", f"{g_first:.0f} vs {s_first:.0f} ms", "4x", g_first <= 4 * s_first),
    ("cli: exit, run vs srun", f"{g_exit:.0f} vs {s_exit:.0f} ms", "6x", g_exit <= 6 * s_exit),
]
for name, value, target, ok in rows:
    print(f"{name:<34} {value:>22} {target:>8} {'ok' if ok else 'MISSED'}")
if results:
    with open(results, "w") as f:
        for i, (name, value, target, ok) in enumerate(rows):
            f.write(f"row{i}={name}|{value}|{target}|{'ok' if ok else 'MISSED'}\n")
PY
