# The exit-code table of README ("Exit codes") for `run`, `wait` and `logs -f`, the same on every
# backend. Source after lib.sh, from a directory whose config's default cloud is the backend under
# test; call check_exit_codes LABEL.

write_exit_code_manifest() {
  cat > gpurun.yaml <<'YAML'
app: codes
functions:
  ok: {command: [sh, -c, "echo ok"]}
  seven: {command: exit 7}
  two: {command: exit 2}
  three: {command: exit 3}
  killed: {command: [sh, -c, "kill -9 $$"]}
  missing: {command: [no-such-program-gpurun]}
  shmissing: {command: no-such-program-gpurun}
  noexec: {command: [./not-executable.sh]}
  slow: {command: [sleep, "30"], timeout: 2s}
  sleeper: {command: [sh, -c, "echo started; sleep 30"]}
  huge: {command: [x], gpu: "H200:8"}
YAML
  printf '#!/bin/sh\necho should-not-run\n' > not-executable.sh
  chmod 644 not-executable.sh
  printf 'app: bad\nfunctions:\n  f: {command: [x], bogus: 1}\n' > invalid.yaml
}

# expect_code LABEL CODE ARGS...: `gpurun ARGS` exits CODE.
expect_code() {
  local label=$1 code=$2
  shift 2
  run_cmd "$@"
  expect_eq "$label: exit" "$code" "$RC"
}

# The run id printed by `run --detach --json` in $OUT.
detached_id() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["run_id"])' "$OUT"; }

check_exit_codes() {
  local label=$1 id
  write_exit_code_manifest
  # --- run: the workload's own codes pass through, 2 and 3 included ---
  expect_code "$label run ok" 0 run ok
  expect_code "$label run exit 7" 7 run seven
  expect_code "$label run exit 2 (the workload's, not a usage error)" 2 run two
  expect_code "$label run exit 3 (the workload's, not unschedulable)" 3 run three
  expect_code "$label run killed by SIGKILL" 137 run killed
  # --- commands that cannot run ---
  expect_code "$label run missing program" 127 run missing
  expect_code "$label run missing program in a shell command" 127 run shmissing
  expect_code "$label run non-executable file" 126 run noexec
  # --- timeout and cancel ---
  expect_code "$label run timeout" 124 run slow
  run_cmd run sleeper --detach --json
  id=$(detached_id)
  run_cmd wait "$id" --timeout 1s
  expect_eq "$label wait --timeout expires" 124 "$RC"
  expect_contains "$label wait --timeout says so" "still running after --timeout 1s; it goes on" "$ERR"
  "$GPURUN" logs -f "$id" > follow.out 2>&1 &
  local follower=$!
  wait_until 30 grep -q started follow.out || fail "$label: logs -f did not show the live line"
  expect_code "$label cancel" 0 cancel "$id"
  wait "$follower"
  expect_eq "$label logs -f exits with the run's code (cancelled)" 130 "$?"
  expect_code "$label wait on a cancelled run" 130 wait "$id"
  # --- wait and logs -f give the same codes as run ---
  for fn_code in seven:7 killed:137 missing:127 noexec:126 slow:124; do
    run_cmd run "${fn_code%%:*}" --detach --json
    id=$(detached_id)
    expect_code "$label wait ${fn_code%%:*}" "${fn_code##*:}" wait "$id"
    expect_code "$label logs -f ${fn_code%%:*}" "${fn_code##*:}" logs -f "$id"
  done
  # --- gpurun's own failures: 125, never a code a workload could mean ---
  expect_code "$label run unknown function" 125 run nosuch
  expect_code "$label run invalid manifest" 125 run -f invalid.yaml f
  expect_code "$label run unschedulable" 125 run ok --gpu H200:8
  run_cmd run ok --gpu H200:8 --json
  expect_eq "$label run --json names who failed" "unschedulable 125 None" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["error"]["kind"], d["exit_code"], d["id"])' "$OUT")"
  expect_code "$label run unknown option before FUNCTION" 125 run --bogus ok
  expect_code "$label run unknown option after FUNCTION" 125 run ok --bogus
  expect_eq "$label unknown option says to use --" \
    "gpurun: error: '--bogus' after FUNCTION 'ok' is not an option of 'gpurun run'; to pass it to the function, put it after '--': gpurun run ok -- --bogus" "$ERR"
  expect_code "$label run FUNCTION --version is not gpurun's version" 125 run ok --version 1
  expect_eq "$label --version after FUNCTION prints nothing" "" "$OUT"
  expect_code "$label run FUNCTION --help is not gpurun's help" 125 run ok --help
  expect_code "$label run's own options after FUNCTION" 0 run ok --env K=V
  expect_code "$label words after -- go to the function" 0 run ok -- --version 1
  expect_code "$label wait unknown run" 125 wait nosuchrun
  run_cmd wait nosuchrun --json
  expect_eq "$label wait --json names who failed" "usage 125" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["error"]["kind"], d["exit_code"])' "$OUT")"
  expect_code "$label logs -f unknown run" 125 logs -f nosuchrun
  # --- the other commands keep 2 (invalid) and 3 (unschedulable) ---
  expect_code "$label validate invalid manifest" 2 validate invalid.yaml
  expect_code "$label plan unschedulable" 3 plan
  expect_code "$label logs unknown run (not following)" 2 logs nosuchrun
}
