#!/usr/bin/env bash
# The Slurm test cluster fixture: starts on loopback, answers sinfo and slurmrestd (unix socket
# with local auth, TCP with JWT), runs a GPU job submitted over REST to COMPLETED, stops cleanly.
set -euo pipefail
SRC=${GPURUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FIXTURE=$SRC/tests/fixtures/slurm_cluster.sh

source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl

fail() { echo "FAIL: $*" >&2; exit 1; }

DIR=$(mktemp -d)
cleanup() {
  "$FIXTURE" stop "$DIR" || true
  rm -rf "$DIR"
}
trap cleanup EXIT

start=$(date +%s.%N)
"$FIXTURE" start "$DIR"
echo "fixture started in $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s"
eval "$("$FIXTURE" env "$DIR")"

# sinfo: both partitions, both nodes idle, GRES as configured.
out=$(sinfo -h -o '%P %t %G' | sort)
echo "$out"
[ "$out" = "$(printf '%s\n' 'aws* idle gpu:t4:4,gpu:a10g:4' 'gcp idle gpu:a100:2,gpu:a100_20g:2')" ] ||
  fail "unexpected sinfo output: $out"

API=/slurm/v0.0.38
unix_get() { curl -sS --unix-socket "$GPURUN_TEST_SLURM_SOCKET" "http://localhost$API$1"; }
TOKEN=$("$FIXTURE" token "$DIR")
[ -n "$TOKEN" ] || fail "no JWT from the fixture"
jwt_get() {
  curl -sS -H "X-SLURM-USER-NAME: $GPURUN_TEST_SLURM_USER" -H "X-SLURM-USER-TOKEN: $TOKEN" \
    "$GPURUN_TEST_SLURM_URL$API$1"
}

for get in unix_get jwt_get; do
  ping=$($get /ping)
  grep -q '"ping": "UP"' <<<"$ping" || fail "$get /ping: $ping"
  nodes=$($get /nodes)
  grep -q '"gres": "gpu:t4:4,gpu:a10g:4"' <<<"$nodes" || fail "$get /nodes lacks aws-node1's GRES: $nodes"
  grep -q '"gres": "gpu:a100:2,gpu:a100_20g:2"' <<<"$nodes" || fail "$get /nodes lacks gcp-node1's GRES: $nodes"
done

# Without a token the JWT endpoint refuses.
code=$(curl -s -o /dev/null -w '%{http_code}' "$GPURUN_TEST_SLURM_URL$API/ping")
[ "$code" = 401 ] || fail "JWT endpoint without a token answered $code, expected 401"

# A GPU job over REST (unix socket) runs to COMPLETED and sees its GPUs.
jobs=$GPURUN_TEST_SLURM_JOBS
body=$(cat <<EOF
{"script": "#!/bin/bash\necho gpus=\$CUDA_VISIBLE_DEVICES partition=\$SLURM_JOB_PARTITION msg=\$GREETING\n",
 "job": {"name": "fixture-check", "partition": "gcp", "gres": "gpu:a100_20g:2", "time_limit": 1,
         "current_working_directory": "$jobs", "standard_output": "$jobs/check.out",
         "environment": {"PATH": "/usr/bin:/bin", "GREETING": "hello"}}}
EOF
)
reply=$(curl -sS --unix-socket "$GPURUN_TEST_SLURM_SOCKET" -X POST -H 'Content-Type: application/json' \
  --data "$body" "http://localhost$API/job/submit")
job_id=$(sed -n 's/^ *"job_id": \([0-9]*\),*$/\1/p' <<<"$reply")
[ -n "$job_id" ] || fail "submit returned no job_id: $reply"

state=""
for ((i = 0; i < 300; i++)); do
  state=$(unix_get "/job/$job_id" | sed -n 's/^ *"job_state": "\([A-Z_]*\)",*$/\1/p')
  case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | BOOT_FAIL | OUT_OF_MEMORY) break ;; esac
  sleep 0.1
done
[ "$state" = COMPLETED ] || fail "job $job_id ended $state, expected COMPLETED"
out=$(cat "$jobs/check.out")
[ "$out" = "gpus=2,3 partition=gcp msg=hello" ] || fail "job output: $out"

"$FIXTURE" stop "$DIR"
"$FIXTURE" stop "$DIR"  # idempotent
if curl -s --max-time 2 --unix-socket "$GPURUN_TEST_SLURM_SOCKET" "http://localhost$API/ping" >/dev/null; then
  fail "slurmrestd still answers after stop"
fi
echo "PASS"
