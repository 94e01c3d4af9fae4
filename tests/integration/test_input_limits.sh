#!/usr/bin/env bash
# Hostile or broken input through the real binary (issue 14): every command refuses a missing
# --config FILE or $GPURUN_CONFIG the same way, and manifests past the YAML limits are positioned
# errors with exit 2 (125 from the commands that return a workload's code: run, wait), fast.
source "$(dirname "$0")/lib.sh"
SRC="$GPURUN_SOURCE_DIR"
cp "$SRC/examples/hello.yaml" gpurun.yaml
missing="$TEST_DIR/missing.yaml"

# Every command that reads the config, with the arguments it needs to get that far.
commands=("validate" "plan" "deploy" "run hello" "gpus" "ps" "deployments" "images" "logs nosuchrun"
  "wait nosuchrun" "cancel nosuchrun")
# The exit code of gpurun's own failure: 125 where the code is otherwise the workload's.
own_failure() { case "$1" in run*|wait*) echo 125 ;; *) echo 2 ;; esac; }
for command in "${commands[@]}"; do
  # shellcheck disable=SC2086 # the command's words
  run_cmd --config "$missing" $command
  expect_eq "$command --config missing: exit" "$(own_failure "$command")" "$RC"
  expect_eq "$command --config missing: message" \
    "gpurun: error: config file '$missing' (--config) does not exist; check the path or create it" "$ERR"
  expect_eq "$command --config missing: stdout" "" "$OUT"
  # shellcheck disable=SC2086
  OUT=$(GPURUN_CONFIG="$missing" "$GPURUN" $command 2>"$TEST_DIR/.err"); RC=$?
  ERR=$(cat "$TEST_DIR/.err")
  expect_eq "$command \$GPURUN_CONFIG missing: exit" "$(own_failure "$command")" "$RC"
  expect_eq "$command \$GPURUN_CONFIG missing: message" \
    "gpurun: error: config file '$missing' (\$GPURUN_CONFIG) does not exist; check the path or create it" "$ERR"
done
# Without a config file at all, the same commands work with the built-in defaults.
run_cmd ps
expect_eq "ps without a config" 0 "$RC"

# A manifest nested 100,000 deep, and one with a 1 MiB value aliased 5,000 times: refused within
# a second each, with the position where the limit was crossed.
python3 - <<'PY'
open("deep.yaml", "w").write("app: deep\nfunctions: " + "[" * 100000 + "]" * 100000 + "\n")
text = "app: bomb\nbig: &big \"" + "x" * (1 << 20) + "\"\nfunctions: ["
open("bomb.yaml", "w").write(text + ", ".join(["*big"] * 5000) + "]\n")
PY
deep_path=$(printf '[0]%.0s' $(seq 63))
for command in validate plan deploy "run f"; do
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  run_cmd $command -f deep.yaml
  elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
  expect_eq "$command deep: exit" "$(own_failure "$command")" "$RC"
  expect_contains "$command deep: position" \
    "deep.yaml:2:75: error: functions$deep_path: lists and mappings are nested more than 64 deep" "$ERR"
  check; [ "$elapsed" -lt 5000 ] || fail "$command deep: took ${elapsed} ms"
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  run_cmd $command -f bomb.yaml
  elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
  expect_eq "$command bomb: exit" "$(own_failure "$command")" "$RC"
  expect_contains "$command bomb: position" \
    "bomb.yaml:3:91: error: functions[13]: the file's values expand to more than 16 MiB of text" "$ERR"
  check; [ "$elapsed" -lt 5000 ] || fail "$command bomb: took ${elapsed} ms"
done
finish
