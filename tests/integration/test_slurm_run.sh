#!/usr/bin/env bash
# The Slurm backend end to end against a real cluster (tests/fixtures/slurm_cluster.sh): placement
# by GPU type into two partitions, live logs, exit codes, exact argv/env, impossible requests,
# queueing, cancel, timeout, requeue, retries, JWT over TCP and local auth over a unix socket.
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
trap 'stop_slurm_cluster; cleanup' EXIT
start_slurm_cluster
GPURUN_TEST_JWT=$("$SLURM_FIXTURE" token "$CLUSTER")
export GPURUN_TEST_JWT
LOGS=$CLUSTER/gpurun-logs  # created by gpurun on first use

mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: aws
any: [T4, A10G]
clouds:
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4", "A10G:4", "L4:2"]
    log_dir: $LOGS
    gres: {T4: t4, A10G: a10g}
  gcp:
    backend: slurm
    endpoint: "$GPURUN_TEST_SLURM_URL"
    partition: gcp
    token_env: GPURUN_TEST_JWT
    user: $GPURUN_TEST_SLURM_USER
    gpus: ["A100-20GB:2", "A100-40GB:2"]
    log_dir: $LOGS
    gres: {A100-20GB: a100_20g, A100-40GB: a100}
YAML

cat > gpurun.yaml <<'YAML'
app: slurmtest
functions:
  where:
    command: ["sh", "-c", "echo part=$SLURM_JOB_PARTITION devices=$CUDA_VISIBLE_DEVICES attempt=$GPURUN_ATTEMPT"]
    gpu: any
  code:
    command: exit 7
  echoargs:
    command: ["sh", "-c", "printf '[%s]\\n' \"$@\"; printf 'env[%s]\\n' \"$TRICKY\"", "sh"]
  shellcmd:
    command: echo "shell $((6*7))"
  secret:
    command: ["sh", "-c", "case $API_TOKEN in s3cr3t-*) echo secret-ok;; esac"]
    secrets: [svc]
  streamer:
    command: ["sh", "-c", "echo first-line; sleep 3; echo second-line"]
  hog:
    command: ["sh", "-c", "echo hog $SLURM_JOB_GPUS; sleep 60"]
    gpu: A100-40GB
  slow:
    command: ["sh", "-c", "echo slow-start; sleep 60"]
    timeout: 2s
  requeuer:
    command: ["sh", "-c", "echo attempt-$GPURUN_ATTEMPT; if [ $GPURUN_ATTEMPT = 1 ]; then sleep 60; fi; echo done-$GPURUN_ATTEMPT"]
  flaky:
    command: ["sh", "-c", "echo try-$GPURUN_ATTEMPT; [ $GPURUN_ATTEMPT -ge 2 ]"]
    retries: {max: 2, initial_delay: 1s, backoff: 1.0}
YAML
export GPURUN_SECRET_SVC_API_TOKEN=s3cr3t-value

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

# Exit codes pass through; string commands via /bin/sh -c.
run_cmd run code
expect_eq "exit code passes through" 7 "$RC"
run_cmd run shellcmd
expect_eq "string command" "shell 42" "$OUT"

# argv and env values arrive verbatim.
tricky_arg=$'it\'s "q" $(echo no) `echo no` \\ $HOME\nline2'
run_cmd run echoargs --env "TRICKY=$tricky_arg" -- "$tricky_arg" "" "a b"
expect_eq "argv and env verbatim" "$(printf '[%s]\n' "$tricky_arg" "" "a b"; printf 'env[%s]' "$tricky_arg")" "$OUT"

# Secrets reach the job but not the script, the logs, the state or --dry-run.
run_cmd run secret
expect_eq "secret reaches the job" "secret-ok" "$OUT"
run_cmd run secret --dry-run
expect_eq "dry-run exit" 0 "$RC"
expect_contains "dry-run shows the script" "#!/bin/bash" "$OUT"
expect_contains "dry-run shows the request" '"partition": "aws"' "$OUT"
expect_contains "dry-run redacts secrets" '"API_TOKEN": "***"' "$OUT"
expect_not_contains "dry-run hides the secret value" "s3cr3t-value" "$OUT"
run_cmd run where --gpu A100 --dry-run
expect_contains "dry-run gres" '"gres": "gpu:a100:1"' "$OUT"
expect_contains "dry-run job name" '"name": "gpurun-slurmtest-where"' "$OUT"
expect_contains "dry-run endpoint" "$GPURUN_TEST_SLURM_URL" "$OUT"
check; if grep -rq "s3cr3t-value" "$LOGS" "$GPURUN_STATE_DIR"; then fail "secret value stored in logs or state"; fi

# Impossible GPU request (the config claims L4s, the node has none): gpurun's own failure (125, not
# a workload code) naming what it offers.
run_cmd run where --gpu L4
expect_eq "impossible exit" 125 "$RC"
expect_contains "impossible names the partition and offers" "partition 'aws' cannot run gres gpu:l4:1" "$ERR"
expect_contains "impossible lists the offers" "t4:4, a10g:4" "$ERR"

# A wrong token: exit 125 naming the endpoint and what to check.
GPURUN_TEST_JWT=bogus "$GPURUN" run where --gpu A100 >/dev/null 2>"$TEST_DIR/bad.err"
expect_eq "wrong token exit" 125 "$?"
expect_contains "wrong token message" "$GPURUN_TEST_SLURM_URL" "$(cat "$TEST_DIR/bad.err")"
expect_contains "wrong token says what to check" "GPURUN_TEST_JWT" "$(cat "$TEST_DIR/bad.err")"

# Logs stream live: the first line shows while the job still runs; logs later replays.
run_cmd run streamer --detach
sid=$OUT
"$GPURUN" logs -f "$sid" > "$TEST_DIR/follow.out" 2>&1 &
follower=$!
wait_until 15 grep -q first-line "$TEST_DIR/follow.out" || fail "first line not streamed"
check; grep -q second-line "$TEST_DIR/follow.out" && fail "second line before the job printed it"
run_cmd ps
expect_contains "ps shows the running run" "$sid" "$OUT"
wait "$follower"
expect_contains "follow gets everything" "second-line" "$(cat "$TEST_DIR/follow.out")"
run_cmd logs "$sid"
expect_contains "logs replay" "first-line" "$OUT"
expect_not_contains "attempt markers are not output" "=== gpurun" "$OUT"

# Queueing: three jobs want a100:1 on two GPUs; the third waits and says so; cancel frees a GPU.
run_cmd run hog --detach; h1=$OUT
run_cmd run hog --detach; h2=$OUT
wait_until 15 sh -c "grep -q hog $LOGS/$h1.log && grep -q hog $LOGS/$h2.log" || fail "hogs did not start"
"$GPURUN" run hog --gpu A100 > "$TEST_DIR/third.out" 2> "$TEST_DIR/third.err" &
third=$!
wait_until 15 grep -q "waiting for 1x A100-40GB on gcp: all 2 in use (Resources), queued" "$TEST_DIR/third.err" || fail "third did not say it waits: $(cat "$TEST_DIR/third.err")"
run_cmd ps --json
expect_contains "ps shows a queued run" '"status": "queued"' "$OUT"
run_cmd cancel "$h1"
expect_contains "cancel reports" "cancelled" "$ERR"
run_cmd wait "$h1"
expect_eq "wait on a cancelled run" 130 "$RC"
wait_until 15 grep -q "hog" "$TEST_DIR/third.out" || fail "third never ran after the cancel"
kill -INT "$third"   # Ctrl-C cancels the attached run
wait "$third"
expect_eq "Ctrl-C cancels" 130 "$?"
run_cmd cancel "$h2"

# Timeout: exit 124.
run_cmd run slow
expect_eq "timeout exit" 124 "$RC"
expect_contains "timeout shown" "slow-start" "$OUT"

# Retries: a failure uses one (with backoff), attempt 2 succeeds.
run_cmd run flaky
expect_eq "flaky succeeds on retry" 0 "$RC"
expect_contains "first try in the log" "try-1" "$OUT"
expect_contains "second try in the log" "try-2" "$OUT"

# Detached runs are looked after with no gpurun command running: a failure is resubmitted, and
# the timeout is enforced to the second (Slurm's own limit is whole minutes).
run_cmd run flaky --detach
flaky_id=$OUT
check; wait_until 60 grep -q "try-2" "$LOGS/$flaky_id.log" || fail "a detached failing run was not retried on its own"
run_cmd run slow --detach
slow_id=$OUT
state_of() { sqlite3 "$GPURUN_STATE_DIR/state.db" "select status from runs where id='$1'"; }
check; wait_until 20 sh -c "[ \"\$(sqlite3 '$GPURUN_STATE_DIR/state.db' \"select status from runs where id='$slow_id'\")\" = timeout ]" ||
  fail "a detached run was not stopped at its timeout (status $(state_of "$slow_id"))"
run_cmd wait "$flaky_id"
expect_eq "detached flaky succeeds on retry" 0 "$RC"
run_cmd wait "$slow_id"
expect_eq "detached slow timed out" 124 "$RC"

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
