#!/usr/bin/env bash
# On a real Slurm cluster (tests/fixtures/slurm_cluster.sh) every run's output passes through
# `gpurun node-exec`: secrets (single-line and multi-line, split across writes) masked in `run`,
# `logs` and every file under log_dir and the state; records stamped when written, so
# `logs --timestamps` and `--since` mean what they mean locally.
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl python3" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl python3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
trap 'stop_slurm_cluster; cleanup' EXIT
start_slurm_cluster
LOGS=$CLUSTER/gpurun-logs
mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4", "A10G:4"]
    log_dir: $LOGS
    gres: {T4: t4, A10G: a10g}
YAML
cat > gpurun.yaml <<'YAML'
app: records
functions:
  secret:
    command: ["sh", "-c", "echo token=$API_TOKEN; printf '%s' \"$API_TOKEN\" | head -c 6; sleep 0.5; printf '%s\\n' \"$API_TOKEN\" | tail -c +7; printf 'pem=%s\\n' \"$API_PEM\"; echo err=$API_TOKEN >&2; echo done"]
    secrets: [svc]
  stamps:
    command: ["sh", "-c", "echo first; sleep 3; echo second"]
YAML
TOKEN=s3cr3t-single-value
PEM=$'-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n-----END TEST KEY-----'
export GPURUN_SECRET_SVC_API_TOKEN=$TOKEN GPURUN_SECRET_SVC_API_PEM=$PEM

# Secrets: masked in run's output, in logs, and nowhere on disk.
run_cmd run secret
expect_eq "secret run exit" 0 "$RC"
expect_eq "run output masks whole, split and multi-line values (a PEM is one ***)" $'token=***\n***\npem=***\ndone' "$OUT"
expect_contains "stderr masked" "err=***" "$ERR"
id=$(sqlite3 "$GPURUN_STATE_DIR/state.db" "select id from runs where function='secret'")
run_cmd logs "$id"
expect_eq "logs masks (a PEM is one ***)" $'token=***\n***\npem=***\ndone' "$OUT"
expect_eq "logs stderr masked" "err=***" "$ERR"
for value in "$TOKEN" "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu" "s3cr3t" "-----END TEST KEY"; do
  check; if grep -rqF -- "$value" "$LOGS" "$GPURUN_STATE_DIR"; then fail "secret value [$value] stored: $(grep -rlF -- "$value" "$LOGS" "$GPURUN_STATE_DIR")"; fi
done
expect_eq "the run log is private" 600 "$(stat -c %a "$LOGS/$id.log")"
check; head -c 1 "$LOGS/$id.log" | grep -q '[0-9]' || fail "the run log is not in the record format: $(head -c 200 "$LOGS/$id.log")"
run_cmd run secret --dry-run
expect_not_contains "dry run hides the PEM" "MIIBOgIBAAJBAKj34" "$OUT"
expect_contains "dry run names the variables to mask" '"GPURUN_MASK_ENV": "API_PEM,API_TOKEN"' "$OUT"

# Timestamps are write times: the second line is stamped >= 3 s after the first, although logs
# reads both after the run ended; --since 1s of a run that ended over 2 s ago prints nothing.
run_cmd run stamps
expect_eq "stamps run" $'first\nsecond' "$OUT"
sid=$(sqlite3 "$GPURUN_STATE_DIR/state.db" "select id from runs where function='stamps'")
sleep 2.5
run_cmd logs --timestamps "$sid"
expect_eq "timestamped lines" 2 "$(printf '%s\n' "$OUT" | grep -c 'Z \(first\|second\)$')"
gap=$(printf '%s\n' "$OUT" | python3 -c '
import sys, datetime
t = [datetime.datetime.strptime(l.split(" ")[0], "%Y-%m-%dT%H:%M:%S.%fZ") for l in sys.stdin if l.strip()]
print(int((t[1] - t[0]).total_seconds() * 1000))')
check; [ "${gap:-0}" -ge 2900 ] || fail "the stamps are ${gap} ms apart, not >= 2900 (lines written 3 s apart, within the 50 ms read poll): $OUT"
run_cmd logs --since 1s "$sid"
expect_eq "since 1s exit" 0 "$RC"
expect_eq "since 1s of a long-ended run prints nothing" "" "$OUT$ERR"
run_cmd logs --since 1m "$sid"
expect_eq "since 1m prints both" $'first\nsecond' "$OUT"
finish
