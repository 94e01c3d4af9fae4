#!/usr/bin/env bash
# What only the Slurm backend does, against a real cluster (tests/fixtures/slurm_cluster.sh):
# placement by GPU type into two partitions, the job request and script (--dry-run), Slurm's own
# refusal of an impossible request, JWT over TCP and local auth over a unix socket, a wrong token,
# requeue, and the run log under log_dir (private, in the record format `gpurun node-exec`
# writes). What every backend does (exit codes, argv/env, secrets masked, retries, timeouts,
# cancel, logs, queueing) is in the conformance suite (tests/conformance/, ctest conformance.slurm).
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl sqlite3" \
  slurmctld slurmd slurmrestd munged sinfo scontrol squeue curl sqlite3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
trap 'stop_slurm_cluster; cleanup' EXIT
start_slurm_cluster
GPURUN_TEST_JWT=$("$SLURM_FIXTURE" token "$CLUSTER")
export GPURUN_TEST_JWT
LOGS=$CLUSTER/gpurun-logs  # created by gpurun on first use

write_slurm_config "  gcp:
    backend: slurm
    endpoint: \"$GPURUN_TEST_SLURM_URL\"
    partition: gcp
    token_env: GPURUN_TEST_JWT
    user: $GPURUN_TEST_SLURM_USER
    gpus: [\"A100-20GB:2\", \"A100-40GB:2\"]
    log_dir: $LOGS
    gres: {A100-20GB: a100_20g, A100-40GB: a100}
any: [T4, A10G]"

cat > gpurun.yaml <<'YAML'
app: slurmtest
functions:
  where:
    command: ["sh", "-c", "echo part=$SLURM_JOB_PARTITION devices=$CUDA_VISIBLE_DEVICES attempt=$GPURUN_ATTEMPT"]
    gpu: any
  secret:
    command: ["sh", "-c", "echo token=$API_TOKEN"]
    secrets: [svc]
  requeuer:
    command: ["sh", "-c", "echo attempt-$GPURUN_ATTEMPT; if [ $GPURUN_ATTEMPT = 1 ]; then sleep 60; fi; echo done-$GPURUN_ATTEMPT"]
YAML
export GPURUN_SECRET_SVC_API_TOKEN=s3cr3t-value GPURUN_SECRET_SVC_API_PEM=pem-value-1234

# The requeue scenario takes ~12 s (cred_expire): start it first, requeue it once it runs.
run_cmd run requeuer --detach
requeue_id=$OUT
wait_until 20 grep -q attempt-1 "$LOGS/$requeue_id.log" || fail "requeuer never started"
requeue_job=$(squeue -h -n gpurun-slurmtest-requeuer -o %i | head -1)
scontrol requeue "$requeue_job" || fail "scontrol requeue $requeue_job failed"

# Placement by GPU type, asserted from inside the job: A100 -> gcp (JWT over TCP), others -> aws (socket).
run_cmd run where --gpu A100
expect_eq "A100 exit" 0 "$RC"
expect_contains "A100 runs in gcp with one device" "part=gcp devices=0 attempt=1" "$OUT"
run_cmd run where --gpu A100-20GB:2
expect_contains "A100-20GB:2 runs in gcp on two devices" "part=gcp devices=2,3" "$OUT"
run_cmd run where --gpu T4:2
expect_contains "T4:2 runs in aws" "part=aws devices=0,1" "$OUT"
run_cmd run where --gpu A10G
expect_contains "A10G runs in aws on an a10g" "part=aws devices=4" "$OUT"
run_cmd run where
expect_contains "any runs in aws" "part=aws devices=" "$OUT"
expect_contains "run header names the cloud" "on aws" "$ERR"

# The job request and script (--dry-run): secrets redacted, named for node-exec to mask.
run_cmd run secret --dry-run
expect_eq "dry-run exit" 0 "$RC"
expect_contains "dry-run shows the script" "#!/bin/bash" "$OUT"
expect_contains "dry-run shows the request" '"partition": "aws"' "$OUT"
expect_contains "dry-run redacts secrets" '"API_TOKEN": "***"' "$OUT"
expect_contains "dry run names the variables to mask" '"GPURUN_MASK_ENV": "API_PEM,API_TOKEN"' "$OUT"
run_cmd run where --gpu A100 --dry-run
expect_contains "dry-run gres" '"gres": "gpu:a100:1"' "$OUT"
expect_contains "dry-run job name" '"name": "gpurun-slurmtest-where"' "$OUT"
expect_contains "dry-run endpoint" "$GPURUN_TEST_SLURM_URL" "$OUT"

# The run log under log_dir is private and in the record format (written by node-exec).
run_cmd run secret
expect_eq "secret run exit" 0 "$RC"
id=$(sqlite3 "$GPURUN_STATE_DIR/state.db" "select id from runs where function='secret'")
expect_eq "the run log is private" 600 "$(stat -c %a "$LOGS/$id.log")"
check; head -c 1 "$LOGS/$id.log" | grep -q '[0-9]' || fail "the run log is not in the record format: $(head -c 200 "$LOGS/$id.log")"

# Impossible GPU request (the config claims L4s, the node has none): Slurm's refusal, in words.
run_cmd run where --gpu L4
expect_contains "impossible names the partition and what it cannot run" "partition 'aws' cannot run gres gpu:l4:1" "$ERR"

# A wrong token: exit 125 naming the endpoint and what to check.
GPURUN_TEST_JWT=bogus "$GPURUN" run where --gpu A100 >/dev/null 2>"$TEST_DIR/bad.err"
expect_eq "wrong token exit" 125 "$?"
expect_contains "wrong token message" "$GPURUN_TEST_SLURM_URL" "$(cat "$TEST_DIR/bad.err")"
expect_contains "wrong token says what to check" "GPURUN_TEST_JWT" "$(cat "$TEST_DIR/bad.err")"

# The requeued job completes and its log shows both attempts.
run_cmd wait "$requeue_id"
expect_eq "requeued run succeeds" 0 "$RC"
run_cmd logs "$requeue_id"
expect_contains "attempt 1 in the log" "attempt-1" "$OUT"
expect_contains "attempt 2 marker" "gpurun: attempt 2 started" "$ERR"
expect_contains "attempt 2 finishes" "done-2" "$OUT"
run_cmd ps --all --json
expect_eq "requeue does not use retries; attempt 2" 2 "$(python3 -c 'import json,sys; print([r["attempt"] for r in json.loads(sys.argv[1]) if r["id"]==sys.argv[2]][0])' "$OUT" "$requeue_id")"
finish
