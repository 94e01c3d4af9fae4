#!/usr/bin/env bash
# Slurm's `transport: ssh` beyond the conformance suite, on a real cluster behind a real sshd (the
# conformance fixture tests/conformance/fixture_slurm_ssh.sh): gpurun's copy on the cluster
# (<log_dir>/bin) deleted there is installed again by the next run, instead of every job failing 127.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/../conformance/fixture_slurm_ssh.sh"
trap 'fixture_stop; cleanup' EXIT
fixture_start
mkdir -p "$XDG_CONFIG_HOME/gpurun"
fixture_config > "$XDG_CONFIG_HOME/gpurun/config.yaml"
cat > gpurun.yaml <<'YAML'
app: copies
functions:
  hello:
    command: ["sh", "-c", "echo hello from $SLURM_JOB_PARTITION"]
YAML
run_cmd run hello
expect_eq "first run exit" 0 "$RC"
expect_eq "first run output" "hello from aws" "$OUT"
copies=$(ls "$FIXTURE_LOG_DIR"/bin/gpurun-* 2>/dev/null)
check; [ -n "$copies" ] || fail "no gpurun copy under $FIXTURE_LOG_DIR/bin after a run"
# Someone cleans the log directory: the cached location (<state>/slurm-ssh/aws.gpurun) is stale.
rm -f "$FIXTURE_LOG_DIR"/bin/gpurun-*
check; [ -s "$GPURUN_STATE_DIR/slurm-ssh/aws.gpurun" ] || fail "the copy's location was not cached"
run_cmd run hello
expect_eq "run after the copy was deleted: exit" 0 "$RC"
expect_eq "run after the copy was deleted: output" "hello from aws" "$OUT"
check; [ -n "$(ls "$FIXTURE_LOG_DIR"/bin/gpurun-* 2>/dev/null)" ] || fail "the copy was not installed again"
# A detached run in a fresh process (the cache file is the only memory) does the same.
rm -f "$FIXTURE_LOG_DIR"/bin/gpurun-*
run_cmd run hello --detach
expect_eq "detached submit exit" 0 "$RC"
id=$OUT
run_cmd wait "$id"
expect_eq "detached run after the copy was deleted: exit" 0 "$RC"
run_cmd logs "$id"
expect_eq "detached run's log" "hello from aws" "$OUT"
finish
