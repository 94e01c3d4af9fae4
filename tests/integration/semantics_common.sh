# Run semantics every backend shares (README "Retries, timeouts and waiting"): a timed-out attempt
# is retried with the manifest's backoff and only the last ends the run as `timeout` (exit 124); a
# scheduled retry and a run queued behind a GPU hog say why in words, in `ps --json` and in `run`'s
# waiting line. Source after lib.sh, from a directory whose config's default cloud is the backend
# under test; call check_semantics LABEL GPU HOG_GPU (a request that takes every GPU of type GPU).

write_semantics_manifest() {
  cat > gpurun.yaml <<YAML
app: semantics
functions:
  slowretry:
    command: ["sh", "-c", "echo attempt-\$GPURUN_ATTEMPT; sleep 30"]
    timeout: 2s
    retries: {max: 1, initial_delay: 1s, backoff: 1.0}
  flaky:
    command: ["sh", "-c", "echo try-\$GPURUN_ATTEMPT; [ \$GPURUN_ATTEMPT -ge 2 ] || exit 7"]
    gpu: $1
    retries: {max: 1, initial_delay: 6s, backoff: 1.0}
  hog:
    command: ["sh", "-c", "echo hog-started; sleep 60"]
    gpu: $2
  waiter:
    command: ["sh", "-c", "echo waiter-ran"]
    gpu: $1
YAML
}

# json_field JSON ID FIELD: FIELD of run ID in `ps --json` output.
json_field() {
  python3 -c 'import json,sys; print([r[sys.argv[3]] for r in json.loads(sys.argv[1]) if r["id"]==sys.argv[2]][0])' "$1" "$2" "$3"
}

# reason_has ID TEXT: run ID's status_reason in `ps --json` contains TEXT.
reason_has() {
  local out
  out=$("$GPURUN" ps --json 2>/dev/null) || return 1
  case "$(json_field "$out" "$1" status_reason)" in *"$2"*) return 0 ;; *) return 1 ;; esac
}

check_timeout_retry() {
  local label=$1 id
  run_cmd run slowretry
  expect_eq "$label: a timed-out run with retries left ends 124 after its last attempt" 124 "$RC"
  expect_contains "$label: attempt 1 ran" "attempt-1" "$OUT"
  expect_contains "$label: attempt 2 ran after the timeout" "attempt-2" "$OUT"
  run_cmd ps --all --json
  id=$(python3 -c 'import json,sys; print([r["id"] for r in json.loads(sys.argv[1]) if r["function"]=="slowretry"][0])' "$OUT")
  expect_eq "$label: two attempts" 2 "$(json_field "$OUT" "$id" attempt)"
  expect_eq "$label: status" timeout "$(json_field "$OUT" "$id" status)"
  expect_eq "$label: reason" "timed out after 2s" "$(json_field "$OUT" "$id" status_reason)"
  expect_eq "$label: exit code" 124 "$(json_field "$OUT" "$id" exit_code)"
}

check_retry_reason() {
  local label=$1 gpu=$2 cloud=$3 id
  run_cmd run flaky --detach
  id=$OUT
  wait_until 30 reason_has "$id" "waiting for 1x $gpu on $cloud: retry 1 of 1 in 6s (after exit code 7)" ||
    fail "$label: the scheduled retry is not said in words: $("$GPURUN" ps --json 2>&1)"
  run_cmd wait "$id"
  expect_eq "$label: the retry succeeds" 0 "$RC"
}

check_waiting_reason() {
  local label=$1 expected=$2 hog id
  run_cmd run hog --detach
  hog=$OUT
  wait_until 30 sh -c "\"\$GPURUN\" logs $hog | grep -q hog-started" || fail "$label: the hog did not start"
  "$GPURUN" run waiter > "$TEST_DIR/waiter.out" 2> "$TEST_DIR/waiter.err" &
  local waiter=$!
  wait_until 30 grep -qF "gpurun: $expected, queued" "$TEST_DIR/waiter.err" ||
    fail "$label: run's waiting line: expected [$expected], got [$(cat "$TEST_DIR/waiter.err")]"
  run_cmd ps --json
  id=$(python3 -c 'import json,sys; print([r["id"] for r in json.loads(sys.argv[1]) if r["function"]=="waiter"][0])' "$OUT")
  expect_eq "$label: ps --json status_reason of the queued run" "$expected" "$(json_field "$OUT" "$id" status_reason)"
  run_cmd cancel "$hog"
  wait "$waiter"
  expect_eq "$label: the waiter runs once the hog is gone" 0 "$?"
  expect_contains "$label: waiter output" "waiter-ran" "$(cat "$TEST_DIR/waiter.out")"
}
