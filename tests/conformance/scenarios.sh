# The conformance scenarios: one behaviour on every backend (issue 11 item 4, issue 12 item 5).
# Each scenario_<name> runs in its own bash process, in an empty temp dir with its own state dir
# and a config whose default cloud is the backend under test (run.sh, fixture_<backend>.sh). It
# asserts with expect_eq/expect_contains/... (run.sh) and may `skip REASON` (fails under ctest).

SCENARIOS=(
  exit_codes own_failures cannot_execute argv_env_verbatim
  secrets_masked secrets_multiline
  retry_after_failure retry_after_timeout timeout
  cancel ctrl_c
  logs_follow logs_since_tail_timestamps
  queued_reason unschedulable volume one_monitor
)

# Scenarios that do not pass yet on a backend, "name:why" (printed as XFAIL). When one passes the
# suite fails, so that its entry gets removed here.
KNOWN_FAILURES_local=(
)
KNOWN_FAILURES_ssh=(
)
KNOWN_FAILURES_slurm=(
)
KNOWN_FAILURES_slurm_cli=(
)
KNOWN_FAILURES_slurm_ssh=(
)
KNOWN_FAILURES_kubernetes=(
)


# The workload for scenarios that need a secret: API_TOKEN from secret group svc.
SECRET_VALUE=s3cr3t-conformance-value

# field_has ID FIELD TEXT: FIELD of run ID in `ps --all --json` contains TEXT.
field_has() { case "$(run_field "$1" "$2")" in *"$3"*) return 0 ;; *) return 1 ;; esac; }
# state_field ID FIELD: FIELD of run ID read from the state database itself, so that polling it
# runs no gpurun command (detached runs must be kept current without one).
state_field() { sqlite3 "$GPURUN_STATE_DIR/state.db" "select $2 from runs where id='$1'" 2>/dev/null; }
# state_is ID FIELD VALUE: FIELD of run ID in the state database is VALUE.
state_is() { [ "$(state_field "$1" "$2")" = "$3" ]; }

scenario_exit_codes() {
  cat > gpurun.yaml <<'YAML'
app: codes
functions:
  ok: {command: [sh, -c, "echo ok"]}
  one: {command: [sh, -c, "exit 1"]}
  two: {command: exit 2}
  three: {command: exit 3}
  seven: {command: exit 7}
  killed: {command: [sh, -c, "kill -9 $$"]}
YAML
  expect_code "exit 0" 0 run ok
  expect_eq "exit 0 output" "ok" "$OUT"
  expect_code "exit 1" 1 run one
  expect_code "exit 2 (the workload's, not a usage error)" 2 run two
  expect_code "exit 3 (the workload's, not unschedulable)" 3 run three
  expect_code "exit 7" 7 run seven
  expect_eq "an attached run that failed tells its end once" 1 "$(printf '%s\n' "$ERR" | grep -c 'exit code 7')"
  expect_code "killed by SIGKILL: 128+9" 137 run killed
  run_cmd run seven --json
  expect_eq "--json says the workload failed" "failed 7" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["status"], d["exit_code"])' "$OUT")"
  expect_detached_codes ok:0 one:1 seven:7 killed:137
  run_cmd run ok --detach
  expect_eq "--detach prints only the run id" 1 "$(printf '%s\n' "$OUT" | wc -l)"
  local id=$OUT
  run_cmd wait "$id" --json
  expect_eq "wait --json" "$id succeeded 0" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["id"], d["status"], d["exit_code"])' "$OUT")"
}

# gpurun's own failures exit 125 from run, wait and logs -f (never a code a workload could mean);
# the other commands keep 2 (invalid) and 3 (unschedulable).
scenario_own_failures() {
  cat > gpurun.yaml <<'YAML'
app: own
functions:
  ok: {command: [sh, -c, "echo ok"]}
  huge: {command: [x], gpu: "H200:8"}
YAML
  printf 'app: bad\nfunctions:\n  f: {command: [x], bogus: 1}\n' > invalid.yaml
  expect_code "run unknown function" 125 run nosuch
  expect_code "run invalid manifest" 125 run -f invalid.yaml f
  expect_code "run a GPU type no cloud offers" 125 run ok --gpu H200:8
  run_cmd run ok --gpu H200:8 --json
  expect_eq "run --json names who failed" "unschedulable 125 None" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["error"]["kind"], d["exit_code"], d["id"])' "$OUT")"
  expect_code "run unknown option before FUNCTION" 125 run --bogus ok
  expect_code "run unknown option after FUNCTION" 125 run ok --bogus
  expect_eq "unknown option says to use --" \
    "gpurun: error: '--bogus' after FUNCTION 'ok' is not an option of 'gpurun run'; to pass it to the function, put it after '--': gpurun run ok -- --bogus" "$ERR"
  expect_code "run FUNCTION --version is not gpurun's version" 125 run ok --version 1
  expect_eq "--version after FUNCTION prints nothing" "" "$OUT"
  expect_code "run FUNCTION --help is not gpurun's help" 125 run ok --help
  expect_code "run's own options after FUNCTION" 0 run ok --env K=V
  expect_code "words after -- go to the function" 0 run ok -- --version 1
  expect_code "wait unknown run" 125 wait nosuchrun
  run_cmd wait nosuchrun --json
  expect_eq "wait --json names who failed" "usage 125" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["error"]["kind"], d["exit_code"])' "$OUT")"
  expect_code "logs -f unknown run" 125 logs -f nosuchrun
  expect_code "validate invalid manifest" 2 validate invalid.yaml
  expect_code "plan unschedulable" 3 plan
  expect_code "logs unknown run (not following)" 2 logs nosuchrun
}

# expect_detached_codes FUNCTION:CODE...: `wait` and `logs -f` of a detached run exit CODE, as
# `run` does.
expect_detached_codes() {
  local fn_code id
  for fn_code in "$@"; do
    run_cmd run "${fn_code%%:*}" --detach --json
    id=$(detached_id)
    expect_code "wait ${fn_code%%:*}" "${fn_code##*:}" wait "$id"
    expect_code "logs -f ${fn_code%%:*}" "${fn_code##*:}" logs -f "$id"
  done
}

scenario_cannot_execute() {
  cat > gpurun.yaml <<'YAML'
app: noexec
functions:
  missing: {command: [no-such-program-gpurun]}
  shmissing: {command: no-such-program-gpurun}
  noexec: {command: [./not-executable.sh]}
YAML
  printf '#!/bin/sh\necho should-not-run\n' > not-executable.sh
  chmod 644 not-executable.sh
  expect_code "missing program" 127 run missing
  expect_code "missing program in a shell command (the shell's own 127)" 127 run shmissing
  expect_code "non-executable file" 126 run noexec
  expect_not_contains "a non-executable file does not run" "should-not-run" "$OUT"
  expect_detached_codes missing:127 noexec:126
}

scenario_argv_env_verbatim() {
  cat > gpurun.yaml <<'YAML'
app: verbatim
functions:
  echoargs:
    command: ["sh", "-c", "printf '[%s]\\n' \"$@\"; printf 'env[%s]\\n' \"$TRICKY\"", "sh"]
  shellcmd:
    command: echo "shell $((6*7))"
  ident:
    command: ["sh", "-c", "echo $GPURUN_FUNCTION:$GPURUN_APP:$GPURUN_ATTEMPT"]
YAML
  local tricky=$'it\'s "q" $(echo no) `echo no` \\ $HOME\nline2'
  run_cmd run echoargs --env "TRICKY=$tricky" -- "$tricky" "" "a b"
  expect_eq "exit" 0 "$RC"
  expect_eq "argv and env verbatim" "$(printf '[%s]\n' "$tricky" "" "a b"; printf 'env[%s]' "$tricky")" "$OUT"
  run_cmd run shellcmd -- "it's"
  expect_eq "string command through sh -c, argument quoted" "shell 42 it's" "$OUT"
  run_cmd run ident
  expect_eq "GPURUN_FUNCTION, GPURUN_APP, GPURUN_ATTEMPT" "ident:verbatim:1" "$OUT"
}

# secret_manifest: a function that prints its secrets on stdout and stderr, API_TOKEN also split
# across two writes 0.3 s apart and API_PEM split after its 36th byte, then waits a moment.
# (The sleep before the stderr line: where a backend merges stderr into stdout, a stderr line
# read while the PEM's lines are could land inside it, which is masked line by line then.)
secret_manifest() {
  cat > gpurun.yaml <<'YAML'
app: secretive
functions:
  secret:
    command: ["sh", "-c", "echo token=$API_TOKEN; printf '%s' \"$API_TOKEN\" | head -c 6; sleep 0.3; printf '%s\\n' \"$API_TOKEN\" | tail -c +7; printf 'pem=%s' \"$API_PEM\" | head -c 40; sleep 0.3; printf '%s!\\n' \"$API_PEM\" | tail -c +37; sleep 0.5; echo err=$API_TOKEN >&2; sleep ${HOLD:-0}; echo done"]
    secrets: [svc]
YAML
}
# What secret_manifest's function prints on stdout, every secret (single- or multi-line, whole or
# split across writes) one ***.
SECRET_OUTPUT=$'token=***\n***\npem=***!\ndone'
# expect_secret_stdout LABEL: $OUT is SECRET_OUTPUT. Where the backend merges stderr into stdout
# (FIXTURE_STDERR_MERGED=1, documented), the function's masked stderr line err=*** is among those
# lines, once, and the others are SECRET_OUTPUT.
expect_secret_stdout() {
  if [ -z "${FIXTURE_STDERR_MERGED:-}" ]; then
    expect_eq "$1" "$SECRET_OUTPUT" "$OUT"
    return
  fi
  expect_eq "$1 (stderr merged into stdout)" "$SECRET_OUTPUT" "$(printf '%s\n' "$OUT" | grep -vxF 'err=***')"
  expect_eq "$1: the merged stderr line err=*** once" 1 "$(printf '%s\n' "$OUT" | grep -cxF 'err=***')"
}
# expect_secret_stderr LABEL TEXT: TEXT (stderr) has the function's stderr line err=***, or, where
# stderr is merged into stdout, no line of the function's at all.
expect_secret_stderr() {
  if [ -z "${FIXTURE_STDERR_MERGED:-}" ]; then
    expect_contains "$1" "err=***" "$2"
  else
    expect_not_contains "$1 (merged into stdout)" "err=" "$2"
  fi
}
# expect_secret_nowhere LABEL VALUE: VALUE is in no file of the state dir or the backend's log dir.
expect_secret_nowhere() {
  local dirs=("$GPURUN_STATE_DIR")
  [ -n "$FIXTURE_LOG_DIR" ] && [ -d "$FIXTURE_LOG_DIR" ] && dirs+=("$FIXTURE_LOG_DIR")
  check
  if grep -rqF -- "$2" "${dirs[@]}"; then fail "$1: secret stored in $(grep -rlF -- "$2" "${dirs[@]}" | tr '\n' ' ')"; fi
}

scenario_secrets_masked() {
  secret_manifest
  local pem=pem-value-0123456789abcdef0123456789abcdef0123
  export GPURUN_SECRET_SVC_API_TOKEN=$SECRET_VALUE GPURUN_SECRET_SVC_API_PEM=$pem
  run_cmd run secret
  expect_eq "exit" 0 "$RC"
  expect_secret_stdout "run masks stdout"
  expect_secret_stderr "run masks stderr" "$ERR"
  expect_not_contains "run stderr has no secret" "$SECRET_VALUE" "$ERR"
  local id
  id=$(last_run_id secret)
  run_cmd logs "$id"
  expect_secret_stdout "logs masks stdout"
  if [ -z "${FIXTURE_STDERR_MERGED:-}" ]; then
    expect_eq "logs masks stderr" "err=***" "$ERR"
  else
    expect_eq "logs: stderr merged into stdout leaves stderr empty" "" "$ERR"
  fi
  run_cmd logs "$id" --timestamps
  expect_not_contains "logs --timestamps masks" "$SECRET_VALUE" "$OUT$ERR"
  # While a run is active too: ps --json and the stored files.
  run_cmd run secret --detach --env HOLD=3
  local live=$OUT
  wait_until 30 sh -c "\"\$GPURUN\" logs $live 2>/dev/null | grep -q pem=" || fail "the detached secret run never printed"
  run_cmd ps --all --json
  expect_contains "ps --json lists the live run" "$live" "$OUT"
  expect_not_contains "ps --json has no secret" "$SECRET_VALUE" "$OUT"
  expect_secret_nowhere "while running" "$SECRET_VALUE"
  expect_code "live run" 0 wait "$live"
  expect_secret_nowhere "after the end" "$SECRET_VALUE"
  expect_secret_nowhere "after the end (the first part of the split write)" "s3cr3t"
  expect_secret_nowhere "after the end (second secret)" "$pem"
  expect_secret_nowhere "after the end (the second secret's first part)" "${pem:0:36}"
  run_cmd run secret --dry-run
  expect_eq "--dry-run exit" 0 "$RC"
  expect_not_contains "--dry-run has no secret" "$SECRET_VALUE" "$OUT$ERR"
  # A secret shorter than 4 bytes is refused before anything runs, naming it, never its value.
  GPURUN_SECRET_SVC_API_TOKEN=abc run_cmd run secret
  expect_eq "a secret shorter than 4 bytes is refused (125)" 125 "$RC"
  expect_eq "the short secret's variable is named, its value not shown" \
    "gpurun: error: GPURUN_SECRET_SVC_API_TOKEN: the value is shorter than 4 bytes (not shown); masking it in output would hide ordinary text: set the variable to the full secret" "$ERR"
  # Secrets from the config file: refused while others can read it, masked once it is private.
  unset GPURUN_SECRET_SVC_API_TOKEN GPURUN_SECRET_SVC_API_PEM
  cat > cfg.yaml <<'YAML'
app: cfgsecret
functions:
  cfgsecret:
    command: ["sh", "-c", "echo token=$API_TOKEN"]
    secrets: [svc]
YAML
  printf 'secrets:\n  svc: {API_TOKEN: "tok-3f9a1c"}\n' >> "$XDG_CONFIG_HOME/gpurun/config.yaml"
  chmod 644 "$XDG_CONFIG_HOME/gpurun/config.yaml"
  expect_code "secrets in a config others can read are refused (125)" 125 run -f cfg.yaml cfgsecret
  chmod 600 "$XDG_CONFIG_HOME/gpurun/config.yaml"
  expect_code "a secret from the config file" 0 run -f cfg.yaml cfgsecret
  expect_eq "the config file's secret reaches the workload, masked" "token=***" "$OUT"
  expect_secret_nowhere "the config file's secret" "tok-3f9a1c"
}

scenario_secrets_multiline() {
  secret_manifest
  local pem=$'-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n-----END TEST KEY-----'
  export GPURUN_SECRET_SVC_API_TOKEN=$SECRET_VALUE GPURUN_SECRET_SVC_API_PEM=$pem
  run_cmd run secret
  expect_eq "exit" 0 "$RC"
  expect_secret_stdout "run shows a multi-line secret split across writes as one ***"
  # After the run ended its log is masked with the run's values, also for a command that knows none.
  unset GPURUN_SECRET_SVC_API_TOKEN GPURUN_SECRET_SVC_API_PEM
  run_cmd logs "$(last_run_id secret)"
  expect_secret_stdout "logs show a multi-line secret as one ***"
  export GPURUN_SECRET_SVC_API_TOKEN=$SECRET_VALUE GPURUN_SECRET_SVC_API_PEM=$pem
  expect_secret_nowhere "PEM body" "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu"
  expect_secret_nowhere "PEM last line" "-----END TEST KEY"
  run_cmd run secret --dry-run
  expect_not_contains "--dry-run hides the PEM" "MIIBOgIBAAJBAKj34" "$OUT$ERR"
}

# attempt_gaps: the seconds between the workload's own "try N TIME" lines in $OUT, one per line.
attempt_gaps() {
  printf '%s\n' "$OUT" | python3 -c '
import sys
t = [float(l.split()[2]) for l in sys.stdin if l.startswith("try ")]
print(" ".join("%d" % int((b - a) * 1000) for a, b in zip(t, t[1:])))'
}

scenario_retry_after_failure() {
  cat > gpurun.yaml <<YAML
app: retries
functions:
  flaky:
    command: ["sh", "-c", "echo try \$GPURUN_ATTEMPT \$(date +%s.%N); [ \$GPURUN_ATTEMPT -ge 3 ]"]
    retries: {max: 2, initial_delay: 1s, backoff: 2.0}
  flakygpu:
    command: ["sh", "-c", "echo try-\$GPURUN_ATTEMPT; [ \$GPURUN_ATTEMPT -ge 2 ] || exit 7"]
    gpu: $FIXTURE_GPU
    retries: {max: 1, initial_delay: 6s, backoff: 1.0}
YAML
  # A detached run's scheduled retry is said in words, and happens with no gpurun command running.
  run_cmd run flakygpu --detach
  local detached=$OUT
  local want="waiting for 1x $FIXTURE_GPU on $FIXTURE_CLOUD: retry 1 of 1 in 6s (after exit code 7)"
  wait_until 30 field_has "$detached" status_reason "$want" ||
    fail "the scheduled retry is not said in words: [$(run_field "$detached" status_reason)]"
  run_cmd run flaky
  expect_eq "succeeds on the third attempt" 0 "$RC"
  expect_eq "every attempt ran once, in order" "1 2 3" "$(printf '%s\n' "$OUT" | awk '/^try /{print $2}' | tr '\n' ' ' | sed 's/ $//')"
  expect_contains "attempt 2 marked" "attempt 2 started" "$ERR"
  expect_contains "attempt 3 marked" "attempt 3 started" "$ERR"
  local gaps
  gaps=$(attempt_gaps)
  check; [ "${gaps%% *}" -ge 1000 ] 2>/dev/null || fail "the first retry came ${gaps%% *} ms after the failure, not >= 1000 (initial_delay 1s)"
  check; [ "${gaps##* }" -ge 2000 ] 2>/dev/null || fail "the second retry came ${gaps##* } ms after, not >= 2000 (backoff 2.0)"
  local id
  id=$(last_run_id flaky)
  expect_eq "ps shows the attempt" 3 "$(run_field "$id" attempt)"
  run_cmd logs "$id"
  expect_eq "logs: the workload's lines only, no attempt markers" "try 1|try 2|try 3|" \
    "$(printf '%s\n' "$OUT" | cut -d' ' -f1-2 | tr '\n' '|')"
  expect_contains "logs mark attempt 2 on stderr" "gpurun: attempt 2 started" "$ERR"
  check; wait_until 40 state_is "$detached" status succeeded ||
    fail "the detached run was not retried on its own (status $(state_field "$detached" status), attempt $(state_field "$detached" attempt))"
  expect_code "the detached run succeeds on its retry" 0 wait "$detached"
}

scenario_retry_after_timeout() {
  cat > gpurun.yaml <<'YAML'
app: retries
functions:
  slowflaky:
    command: ["sh", "-c", "echo try $GPURUN_ATTEMPT $(date +%s.%N); [ $GPURUN_ATTEMPT -ge 2 ] || sleep 60"]
    timeout: 2s
    retries: {max: 1, initial_delay: 1s, backoff: 1.0}
YAML
  run_cmd run slowflaky
  expect_eq "the retry after the timeout succeeds" 0 "$RC"
  expect_eq "both attempts ran" "1 2" "$(printf '%s\n' "$OUT" | awk '/^try /{print $2}' | tr '\n' ' ' | sed 's/ $//')"
  expect_contains "attempt 2 marked" "attempt 2 started" "$ERR"
  local gap
  gap=$(attempt_gaps)
  # The timeout counts from the attempt's start, a moment before its `date`: 100 ms slack for that
  # (a retry without its 1 s delay would come ~1000 ms early).
  check; [ "${gap:-0}" -ge 2900 ] 2>/dev/null || fail "attempt 2 started ${gap} ms after attempt 1, not >= 2900 (timeout 2s + initial_delay 1s, less the time before attempt 1's first line)"
}

scenario_timeout() {
  cat > gpurun.yaml <<'YAML'
app: timeouts
functions:
  slow:
    command: ["sh", "-c", "echo slow-start; sleep 60"]
    timeout: 2s
  slowretry:
    command: ["sh", "-c", "echo attempt-$GPURUN_ATTEMPT; sleep 60"]
    timeout: 2s
    retries: {max: 1, initial_delay: 1s, backoff: 1.0}
YAML
  # Detached runs first (they time out while the attached one runs): one with no retries, whose
  # timeout is enforced with no gpurun command running, and one whose every attempt times out.
  run_cmd run slow --detach
  local id=$OUT
  run_cmd run slowretry --detach
  local retried=$OUT
  local start=$SECONDS
  run_cmd run slow
  expect_eq "timeout exit" 124 "$RC"
  expect_contains "the output before the timeout" "slow-start" "$OUT"
  expect_contains "the timeout is said" "timed out after 2s" "$ERR"
  check; [ $((SECONDS - start)) -lt 20 ] || fail "a 2s timeout took $((SECONDS - start))s"
  check; wait_until 20 state_is "$id" status timeout ||
    fail "a detached run was not stopped at its timeout (status $(state_field "$id" status))"
  expect_code "wait on a timed-out run" 124 wait "$id"
  expect_code "logs -f of a timed-out run" 124 logs -f "$id"
  expect_eq "ps status" "timeout" "$(run_field "$id" status)"
  expect_eq "ps status_reason" "timed out after 2s" "$(run_field "$id" status_reason)"
  expect_code "a run whose every attempt timed out ends 124 after its last attempt" 124 wait "$retried"
  run_cmd logs "$retried"
  expect_eq "both attempts ran" $'attempt-1\nattempt-2' "$OUT"
  expect_eq "two attempts" 2 "$(run_field "$retried" attempt)"
  expect_eq "status" timeout "$(run_field "$retried" status)"
  expect_eq "status_reason" "timed out after 2s" "$(run_field "$retried" status_reason)"
  expect_eq "exit_code" 124 "$(run_field "$retried" exit_code)"
}

# sleeper_manifest MARKER: a function whose processes carry MARKER in their argv.
sleeper_manifest() {
  cat > gpurun.yaml <<YAML
app: cancels
functions:
  sleeper:
    command: ["sh", "-c", "echo started; sleep 60 & wait", "$1"]
YAML
}
# workload_gone MARKER: no process has MARKER in its command line.
workload_gone() { ! pgrep -f -- "$1" >/dev/null; }

scenario_cancel() {
  local marker="conformance-cancel-$$-$RANDOM"
  sleeper_manifest "$marker"
  run_cmd run sleeper --detach --json
  local id
  id=$(detached_id)
  wait_until 30 sh -c "\"\$GPURUN\" logs $id 2>/dev/null | grep -q started" || fail "the run never started"
  check; pgrep -f -- "$marker" >/dev/null || fail "no process carries the marker [$marker]"
  run_cmd wait "$id" --timeout 1s
  expect_eq "wait --timeout expires" 124 "$RC"
  expect_contains "wait --timeout says so" "still running after --timeout 1s; it goes on" "$ERR"
  "$GPURUN" logs -f "$id" > follow.out 2>&1 &
  local follower=$!
  wait_until 30 grep -q started follow.out || fail "logs -f did not show the live line"
  expect_code "cancel" 0 cancel "$id"
  expect_contains "cancel reports" "cancelled" "$ERR"
  wait "$follower"
  expect_eq "logs -f exits with the run's code (cancelled)" 130 "$?"
  expect_code "wait on the cancelled run" 130 wait "$id"
  expect_eq "ps status" "cancelled" "$(run_field "$id" status)"
  run_cmd ps --all --json
  expect_eq "ps --json fields" "app,attempt,backend,cloud,created_at,ended_at,exit_code,function,gpus,id,remote_id,started_at,status,status_reason" \
    "$(python3 -c 'import json,sys; print(",".join(sorted(json.loads(sys.argv[1])[0].keys())))' "$OUT")"
  check; wait_until 10 workload_gone "$marker" || fail "the workload's processes live on: $(pgrep -af -- "$marker")"
}

scenario_ctrl_c() {
  local marker="conformance-ctrlc-$$-$RANDOM"
  sleeper_manifest "$marker"
  "$GPURUN" run sleeper > attached.out 2>&1 &
  local cli=$!
  wait_until 30 grep -q started attached.out || fail "the attached run never started: $(cat attached.out)"
  check; pgrep -f -- "$marker" >/dev/null || fail "no process carries the marker [$marker]"
  kill -INT "$cli"
  wait "$cli"
  expect_eq "Ctrl-C exit" 130 "$?"
  check; wait_until 10 workload_gone "$marker" || fail "the workload's processes live on: $(pgrep -af -- "$marker")"
  expect_eq "ps status" "cancelled" "$(run_field "$(last_run_id sleeper)" status)"
}

scenario_logs_follow() {
  cat > gpurun.yaml <<'YAML'
app: follow
functions:
  streamer:
    command: ["sh", "-c", "echo first-line; sleep 3; echo second-line; exit 3"]
YAML
  run_cmd run streamer --detach --json
  local id
  id=$(detached_id)
  "$GPURUN" logs -f "$id" > follow.out 2> follow.err &
  local follower=$!
  wait_until 30 grep -q first-line follow.out || fail "logs -f did not show the live line"
  check; grep -q second-line follow.out && fail "the second line came before the workload printed it"
  wait "$follower"
  expect_eq "logs -f exits with the run's code" 3 "$?"
  expect_eq "logs -f got everything" $'first-line\nsecond-line' "$(cat follow.out)"
}

scenario_logs_since_tail_timestamps() {
  cat > gpurun.yaml <<'YAML'
app: stamps
functions:
  stamps:
    command: ["sh", "-c", "echo first; sleep 3; echo second"]
YAML
  run_cmd run stamps
  expect_eq "run" $'first\nsecond' "$OUT"
  local id
  id=$(last_run_id stamps)
  sleep 2.5
  run_cmd logs --timestamps "$id"
  expect_eq "every line stamped" 2 "$(printf '%s\n' "$OUT" | grep -c 'Z \(first\|second\)$')"
  local gap
  gap=$(printf '%s\n' "$OUT" | python3 -c '
import sys, datetime
t = [datetime.datetime.strptime(l.split(" ")[0], "%Y-%m-%dT%H:%M:%S.%fZ") for l in sys.stdin if l.strip()]
print(int((t[1] - t[0]).total_seconds() * 1000))')
  check; [ "${gap:-0}" -ge 2900 ] 2>/dev/null || fail "stamps ${gap} ms apart, not >= 2900 (write times of lines 3 s apart, within the 50 ms read poll): $OUT"
  run_cmd logs --tail 1 "$id"
  expect_eq "--tail 1" "second" "$OUT"
  run_cmd logs --since 1s "$id"
  expect_eq "--since 1s exit" 0 "$RC"
  expect_eq "--since 1s of a run that ended over 2 s ago" "" "$OUT$ERR"
  run_cmd logs --since 1m "$id"
  expect_eq "--since 1m" $'first\nsecond' "$OUT"
}

scenario_queued_reason() {
  cat > gpurun.yaml <<YAML
app: queue
functions:
  hog:
    command: ["sh", "-c", "echo hog; sleep 60"]
    gpu: $FIXTURE_GPU
  waiter:
    command: ["sh", "-c", "echo waiter-ran"]
    gpu: $FIXTURE_GPU
YAML
  local i ids=()
  for ((i = 0; i < FIXTURE_GPU_COUNT; i++)); do run_cmd run hog --detach; ids+=("$OUT"); done
  for i in "${ids[@]}"; do
    wait_until 30 sh -c "\"\$GPURUN\" logs $i 2>/dev/null | grep -q hog" || fail "hog $i never started"
  done
  "$GPURUN" run waiter > waiting.out 2> waiting.err &
  local cli=$!
  local want="waiting for 1x $FIXTURE_GPU on $FIXTURE_CLOUD: all $FIXTURE_GPU_COUNT in use$FIXTURE_QUEUED_SUFFIX"
  wait_until 10 grep -qF "gpurun: $want, queued" waiting.err || fail "the waiting line is not in words: [$(tr '\r' '\n' < waiting.err)]"
  local waiter
  waiter=$(last_run_id waiter)
  expect_eq "ps --json status of the queued run" "queued" "$(run_field "$waiter" status)"
  expect_eq "ps --json says why it waits" "$want" "$(run_field "$waiter" status_reason)"
  "$GPURUN" cancel "${ids[0]}" >/dev/null 2>&1
  wait "$cli"
  expect_eq "the waiter runs once a GPU is free" 0 "$?"
  expect_eq "the waiter's output" "waiter-ran" "$(cat waiting.out)"
  for i in "${ids[@]}"; do "$GPURUN" cancel "$i" >/dev/null 2>&1; done
}

scenario_unschedulable() {
  cat > gpurun.yaml <<'YAML'
app: impossible
functions:
  f: {command: [sh, -c, "echo never"]}
YAML
  expect_code "run of an impossible request (gpurun's own failure)" 125 run f --gpu "$FIXTURE_UNSCHEDULABLE_GPU"
  expect_contains "names the offers" "$FIXTURE_OFFERS" "$ERR"
  expect_not_contains "nothing ran" "never" "$OUT"
  run_cmd run f --gpu "$FIXTURE_UNSCHEDULABLE_GPU" --json
  expect_eq "--json says gpurun failed, and why (no run was made)" "unschedulable 125 None" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["error"]["kind"], d["exit_code"], d["id"])' "$OUT")"
}

scenario_volume() {
  cat > gpurun.yaml <<'YAML'
app: vols
volumes:
  shared: {}
functions:
  writer:
    command: ["sh", "-c", "echo payload-$GPURUN_APP > /mnt/shared/file"]
    volumes: {/mnt/shared: shared}
  reader:
    command: ["sh", "-c", "cat /mnt/shared/file"]
    volumes: {/mnt/shared: shared}
YAML
  expect_code "writer" 0 run writer
  expect_code "reader" 0 run reader
  expect_eq "the reader sees what the writer wrote" "payload-vols" "$OUT"
  # A volume lives where its backend keeps it (state dir, cluster, host, claim): never in the project.
  expect_eq "nothing new in the project directory" "config gpurun.yaml state" "$(ls | grep -vx cache | sort | tr '\n' ' ' | sed 's/ $//')"
}

# gpurun processes of this state dir that are not a run's supervisor (which holds its run's lock).
watcher_count() {
  local pid n=0 supervisors
  supervisors=" $(fuser "$GPURUN_STATE_DIR"/runs/*/lock 2>/dev/null | tr -s ' ') "
  # REAL_GPURUN: the binary, where a fixture's GPURUN is a wrapper (fixture_slurm_ssh.sh).
  for pid in $(pgrep -f -- "${REAL_GPURUN:-$GPURUN}"); do
    [ "$pid" = $$ ] && continue
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qxF "GPURUN_STATE_DIR=$GPURUN_STATE_DIR" || continue
    [[ "$supervisors" == *" $pid "* ]] && continue
    n=$((n + 1))
  done
  echo "$n"
}

scenario_one_monitor() {
  cat > gpurun.yaml <<'YAML'
app: many
functions:
  job:
    command: ["sh", "-c", "echo job; sleep 4"]
    timeout: 1m
    retries: {max: 1, initial_delay: 1s}
YAML
  local i ids=()
  for i in $(seq 20); do run_cmd run job --detach; ids+=("$OUT"); done
  sleep 1
  local n
  n=$(watcher_count)
  if [ "$FIXTURE_REMOTE" = 1 ]; then
    expect_eq "20 detached runs, one monitor process" 1 "$n"
  else
    check; [ "$n" -le 1 ] || fail "20 detached runs are watched by $n processes besides their supervisors"
  fi
  for i in "${ids[@]}"; do
    run_cmd wait "$i"
    expect_eq "run $i kept current to its end" 0 "$RC"
  done
}
