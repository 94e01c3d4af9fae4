#!/usr/bin/env bash
# Run-time GPU fallback (issue 21) on a real Slurm cluster (tests/fixtures/slurm_cluster.sh):
# a fallback list takes the first alternative that can start NOW, across two Slurm partitions
# (A100s on gcp busy -> T4 on aws) and across local + Slurm (the local T4 busy -> T4 on aws);
# when none can start it queues on the first; `plan` keeps the static choice and says so.
# PENDING: needs Backend::capacity() for local and slurm (the lead's, not on main yet). Passed
# 18/18 against the lead's uncommitted capacity() of 08:50; once capacity() lands, rename to test_cli_fallback_slurm.sh (ctest then runs it under the
# slurm_cluster lock) and run: cd build && ctest -R cli_fallback_slurm --output-on-failure
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
trap 'stop_slurm_cluster; cleanup' EXIT
start_slurm_cluster
export GPURUN_KILL_GRACE=1s
mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: gcp
clouds:
  gcp:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: gcp
    gpus: ["A100-40GB:2"]
    log_dir: $CLUSTER/gpurun-logs
    gres: {A100-40GB: a100}
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4"]
    log_dir: $CLUSTER/gpurun-logs
    gres: {T4: t4}
YAML
cat > gpurun.yaml <<'YAML'
app: fallback
functions:
  hog:
    command: ["sh", "-c", "echo hogging; sleep 120"]
    gpu: A100:2
  train:
    command: ["sh", "-c", "echo trained on $SLURM_JOB_PARTITION"]
    gpu: [A100, T4]
YAML

# --- plan: the static choice, and a note that run time may take a later one ---
run_cmd plan
expect_eq "plan exit" 0 "$RC"
expect_contains "plan shows the first choice" "train     [A100, T4]  gcp    slurm    A100-40GB:1" "$OUT"
expect_contains "plan notes the run-time choice" \
  "gpurun: note: train shows its first choice; at run time it takes the first of A100-40GB:1 on gcp, T4:1 on aws that can start then" "$ERR"

# --- both partitions free: the first alternative ---
run_cmd run train
expect_eq "free: exit" 0 "$RC"
expect_eq "free: ran on gcp" "trained on gcp" "$OUT"
expect_contains "free: says what it took" "gpurun: GPU: took A100-40GB:1 on gcp" "$ERR"

# --- the A100s busy on gcp: T4 on aws at once, and why ---
run_cmd run hog --detach
hog=$OUT
wait_until 60 sh -c "\"\$GPURUN\" ps --json | grep -q '\"status\": \"running\"'" || fail "the hog never started"
run_cmd run train
expect_eq "fallback exit" 0 "$RC"
expect_eq "fallback ran on aws" "trained on aws" "$OUT"
expect_contains "fallback says why" "gpurun: GPU: A100-40GB:1: all 2 busy on gcp; took T4:1 on aws" "$ERR"
expect_contains "fallback names GPU and cloud" "on aws (" "$ERR"

# --- pinned with --cloud gcp: only that cloud (one way to run); it queues there ---
run_cmd run train --cloud gcp --detach
pinned=$OUT
expect_eq "pinned: one way to run, so no choice to explain" "" "$ERR"
expect_eq "pinned run is on gcp" "gcp" "$("$GPURUN" ps --json | python3 -c "import json,sys; print([r['cloud'] for r in json.load(sys.stdin) if r['id']=='$pinned'][0])")"
"$GPURUN" cancel "$pinned" "$hog" >/dev/null 2>&1

# --- local + Slurm: the local T4 busy -> T4 on aws ---
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: local
clouds:
  local:
    backend: local
    gpus: ["T4:1"]
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4"]
    log_dir: $CLUSTER/gpurun-logs
    gres: {T4: t4}
YAML
cat > gpurun.yaml <<'YAML'
app: mixed
functions:
  hog:
    command: ["sh", "-c", "echo hogging; sleep 120"]
    gpu: T4
    cloud: local
  infer:
    command: ["sh", "-c", "echo inferred on ${SLURM_JOB_PARTITION:-local}"]
    gpu: [T4, any]
YAML
run_cmd run infer
expect_eq "local free: exit" 0 "$RC"
expect_eq "local free: ran locally" "inferred on local" "$OUT"
expect_contains "local free: says so" "gpurun: GPU: took T4:1 on local" "$ERR"
run_cmd run hog --detach
hog=$OUT
wait_until 30 sh -c "\"\$GPURUN\" logs $hog | grep -q hogging" || fail "the local hog never started"
run_cmd run infer
expect_eq "local busy: exit" 0 "$RC"
expect_eq "local busy: ran on aws" "inferred on aws" "$OUT"
expect_contains "local busy: says why" "gpurun: GPU: T4:1: all 1 busy on local; took T4:1 on aws" "$ERR"
"$GPURUN" cancel "$hog" >/dev/null 2>&1
finish
