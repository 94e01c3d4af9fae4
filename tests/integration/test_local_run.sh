#!/usr/bin/env bash
# The local backend end to end: run, detach + logs -f + wait, cancel, timeout, retries, FIFO GPU
# leases, lost runs, deploy + run from elsewhere, volumes, secrets.
source "$(dirname "$0")/lib.sh"

cat > gpurun.yaml <<'YAML'
app: demo
volumes:
  shared: {}
functions:
  hello:
    command: ["sh", "-c", "echo out:$GPURUN_FUNCTION:$GPURUN_APP:$GPURUN_ATTEMPT; echo err-line >&2; echo args:\"$*\"; pwd", "sh"]
  shellcmd:
    command: echo words
  code:
    command: exit 7
  sleeper:
    command: ["sh", "-c", "echo started; sleep 30"]
  slow:
    command: ["sh", "-c", "echo begin; sleep 30"]
    timeout: 1s
  flaky:
    command: ["sh", "-c", "echo try $GPURUN_ATTEMPT; [ $GPURUN_ATTEMPT -ge 3 ]"]
    retries: {max: 3, initial_delay: 100ms, backoff: 1.0}
  writer:
    command: ["sh", "-c", "echo payload > /mnt/shared/file"]
    volumes: {/mnt/shared: shared}
  reader:
    command: ["sh", "-c", "cat /mnt/shared/file"]
    volumes: {/mnt/shared: shared}
  badmount:
    command: ["sh", "-c", "echo never"]
    volumes: {/etc/passwd/sub: shared}
  gpu1:
    command: ["sh", "-c", "echo start $GPURUN_RUN_ID $(date +%s.%N) $CUDA_VISIBLE_DEVICES >> $EVENTS; sleep ${HOLD:-0.7}; echo end $GPURUN_RUN_ID $(date +%s.%N) >> $EVENTS"]
    gpu: T4
  gpu2:
    command: ["sh", "-c", "echo start $GPURUN_RUN_ID $(date +%s.%N) $CUDA_VISIBLE_DEVICES >> $EVENTS; sleep 0.7; echo end $GPURUN_RUN_ID $(date +%s.%N) >> $EVENTS"]
    gpu: T4:2
YAML
cat > secret.yaml <<'YAML'
app: secretive
functions:
  secret:
    command: ["sh", "-c", "echo token=$API_TOKEN"]
    secrets: [svc]
  pem:
    command: ["sh", "-c", "printf 'pem=%s' \"$API_PEM\" | head -c 40; sleep 0.3; printf '%s!\\n' \"$API_PEM\" | tail -c +37; echo KUpR; echo done"]
    secrets: [svc]
YAML

# Attached run: logs stream, stdout/stderr split, args appended, runs in the manifest's dir.
run_cmd run hello -- a "b c"
expect_eq "hello exit" 0 "$RC"
expect_contains "stdout line" "out:hello:demo:1" "$OUT"
expect_contains "args appended verbatim" "args:a b c" "$OUT"
expect_contains "runs in the manifest dir" "$TEST_DIR" "$OUT"
expect_contains "stderr line on stderr" "err-line" "$ERR"
expect_not_contains "stderr not on stdout" "err-line" "$OUT"
run_cmd run shellcmd -- "it's"
expect_eq "string command + quoted arg" "words it's" "$OUT"

# Exit codes pass through; --json prints the final object.
run_cmd run code
expect_eq "exit code passes through" 7 "$RC"
run_cmd run code --json
expect_eq "json exit" 7 "$RC"
expect_eq "json result" "failed 7" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["status"], d["exit_code"])' "$OUT")"

# Detach + logs -f + wait.
run_cmd run hello --detach
expect_eq "detach exit" 0 "$RC"
id="$OUT"
expect_eq "detach prints only an id" 1 "$(printf '%s\n' "$id" | wc -l)"
run_cmd wait "$id" --json
expect_eq "wait exit" 0 "$RC"
expect_eq "wait json" "$id succeeded 0" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["id"], d["status"], d["exit_code"])' "$OUT")"
run_cmd logs "$id"
expect_contains "logs replay after the end" "out:hello:demo:1" "$OUT"
expect_eq "logs --tail 1 prints one line" 1 "$("$GPURUN" logs "$id" --tail 1 2>&1 | wc -l)"
run_cmd logs "$id" --timestamps
expect_contains "timestamps" "Z out:hello" "$OUT"
run_cmd run sleeper --detach --json
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["run_id"])' "$OUT")
"$GPURUN" logs -f "$id" > follow.out 2>&1 &
follower=$!
wait_until 10 grep -q started follow.out || fail "logs -f did not show the live line"
run_cmd cancel "$id"
expect_eq "cancel exit" 0 "$RC"
wait "$follower"
expect_eq "logs -f ends when the run ends, with its exit code (cancelled)" 130 "$?"
run_cmd wait "$id"
expect_eq "cancelled run exit" 130 "$RC"
run_cmd ps --all --json
expect_eq "ps shows cancelled" "cancelled" "$(python3 -c 'import json,sys; print([r for r in json.loads(sys.argv[1]) if r["id"]==sys.argv[2]][0]["status"])' "$OUT" "$id")"
expect_eq "ps json fields" "app,attempt,backend,cloud,created_at,ended_at,exit_code,function,gpus,id,remote_id,started_at,status,status_reason" \
  "$(python3 -c 'import json,sys; print(",".join(sorted(json.loads(sys.argv[1])[0].keys())))' "$OUT")"

# Ctrl-C on an attached run cancels it.
"$GPURUN" run sleeper > int.out 2>&1 &
cli=$!
wait_until 10 grep -q started int.out || fail "attached run did not start"
kill -INT "$cli"
wait "$cli"
expect_eq "Ctrl-C exit" 130 "$?"

# Timeout and retries.
run_cmd run slow
expect_eq "timeout exit" 124 "$RC"
expect_contains "timeout marked" "timed out after 1s" "$ERR"
run_cmd run flaky
expect_eq "retries until success" 0 "$RC"
expect_eq "every attempt ran" "try 1 try 2 try 3" "$(echo $OUT)"
expect_contains "retries marked" "attempt 2 started" "$ERR"
run_cmd ps --all --json
expect_eq "ps shows the attempt" 3 "$(python3 -c 'import json,sys; print([r for r in json.loads(sys.argv[1]) if r["function"]=="flaky"][0]["attempt"])' "$OUT")"

# Volumes are seen at their mount paths and kept between runs; the host gets no mount point.
host_had_mount=no; [ -e /mnt/shared ] && host_had_mount=yes
run_cmd run writer
expect_eq "writer exit" 0 "$RC"
run_cmd run reader
expect_eq "volume content" "payload" "$OUT"
if [ "$host_had_mount" = no ]; then check; [ ! -e /mnt/shared ] || fail "mount point /mnt/shared was created on the host"; fi

# A sandbox bubblewrap cannot set up is gpurun's failure (125, bwrap's message), not the workload's.
run_cmd run badmount
expect_eq "sandbox failure: rc" 125 "$RC"
expect_contains "sandbox failure: bubblewrap's message" \
  "run failed to set up its sandbox: bwrap: Can't mkdir parents for /etc/passwd/sub: Not a directory" "$ERR"
expect_not_contains "sandbox failure: not a workload exit code" "exit code 1" "$ERR"
# Mount paths that can never work are refused before anything runs.
printf 'app: bad\nvolumes: {v: {}}\nfunctions:\n  f:\n    command: x\n    volumes: {/etc/passwd: v, /proc: v}\n' > badmounts.yaml
run_cmd validate badmounts.yaml
expect_eq "impossible mount paths: rc" 2 "$RC"
expect_contains "a host file as a mount path" \
  "badmounts.yaml:6:15: error: functions.f.volumes[\"/etc/passwd\"]: cannot mount a volume on '/etc/passwd': it is a file on this machine and a volume is a directory; pick a path that is a directory or does not exist, such as '/data'" "$ERR"
expect_contains "/proc as a mount path" \
  "functions.f.volumes[\"/proc\"]: cannot mount a volume on '/proc': the sandbox provides it; pick a directory such as '/data'" "$ERR"

# Secrets reach the workload and are masked in streamed and stored logs.
mkdir -p "$XDG_CONFIG_HOME/gpurun"
printf 'secrets:\n  svc: {API_TOKEN: "tok-3f9a1c"}\n' > "$XDG_CONFIG_HOME/gpurun/config.yaml"
chmod 644 "$XDG_CONFIG_HOME/gpurun/config.yaml"
run_cmd run -f secret.yaml secret
expect_eq "readable secrets refused (gpurun's own failure: 125)" 125 "$RC"
chmod 600 "$XDG_CONFIG_HOME/gpurun/config.yaml"
run_cmd run -f secret.yaml secret
expect_eq "secret run exit" 0 "$RC"
expect_eq "secret masked when streamed" "token=***" "$OUT"
check; ! grep -rq "tok-3f9a1c" "$GPURUN_STATE_DIR" || fail "secret value stored in the state dir"
GPURUN_SECRET_SVC_API_TOKEN=from-env run_cmd run -f secret.yaml secret
expect_eq "secret from the environment" "token=***" "$OUT"
GPURUN_SECRET_SVC_API_TOKEN=abc run_cmd run -f secret.yaml secret
expect_eq "a secret shorter than 4 bytes is refused (125)" 125 "$RC"
expect_eq "the short secret's variable is named, its value not shown" \
  "gpurun: error: GPURUN_SECRET_SVC_API_TOKEN: the value is shorter than 4 bytes (not shown); masking it in output would hide ordinary text: set the variable to the full secret" "$ERR"
# A multi-line value (a PEM key), written in two parts 0.3 s apart, is one *** everywhere.
PEM=$'-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n-----END TEST KEY-----'
GPURUN_SECRET_SVC_API_PEM=$PEM run_cmd run -f secret.yaml pem
expect_eq "pem run exit" 0 "$RC"
expect_eq "a multi-line secret is one *** when streamed" $'pem=***!\nKUpR\ndone' "$OUT"
run_cmd ps --all --json
pem_id=$(python3 -c 'import json,sys; print([r for r in json.loads(sys.argv[1]) if r["function"]=="pem"][0]["id"])' "$OUT")
run_cmd logs "$pem_id"
expect_eq "a multi-line secret is one *** in logs" $'pem=***!\nKUpR\ndone' "$OUT"
for value in "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu" "-----END TEST KEY"; do
  check; if grep -rqF -- "$value" "$GPURUN_STATE_DIR"; then fail "PEM line [$value] stored: $(grep -rlF -- "$value" "$GPURUN_STATE_DIR")"; fi
done
rm "$XDG_CONFIG_HOME/gpurun/config.yaml"

# GPU leases: 6 one-GPU runs on 2 GPUs run exactly 2 at a time; a 2-GPU request queued first is
# served before later 1-GPU requests.
export GPURUN_LOCAL_GPUS="T4:2" EVENTS="$TEST_DIR/events"
ids=()
for i in 1 2 3 4 5 6; do run_cmd run gpu1 --detach; ids+=("$OUT"); done
for id in "${ids[@]}"; do "$GPURUN" wait "$id" >/dev/null 2>&1 || fail "gpu1 run $id failed"; done
max=$(python3 - "$EVENTS" <<'PY'
import sys
events = []
for line in open(sys.argv[1]):
    kind, rid, t = line.split()[:3]
    events.append((float(t), 0 if kind == "end" else 1))
level = peak = 0
for _, up in sorted(events):
    level += 1 if up else -1
    peak = max(peak, level)
print(peak, sum(1 for _, up in events if up))
PY
)
expect_eq "6 runs on 2 GPUs: 2 at a time, all ran" "2 6" "$max"
check; grep -q "start .* 0$" "$EVENTS" && grep -q "start .* 1$" "$EVENTS" || fail "CUDA_VISIBLE_DEVICES did not name devices 0 and 1"
: > "$EVENTS"
run_cmd run gpu1 --detach --env HOLD=2.5; a="$OUT"
run_cmd run gpu1 --detach --env HOLD=2.5; b="$OUT"
wait_until 10 grep -q "start $b" "$EVENTS" || fail "first two runs did not start"
run_cmd run gpu2 --detach; two="$OUT"
sleep 0.2
run_cmd run gpu1 --detach; c="$OUT"
run_cmd run gpu1 --detach; d="$OUT"
sleep 0.2
run_cmd ps --json
expect_contains "waiting reason" "waiting for 2x T4 on local: all 2 in use" "$OUT"
for id in "$a" "$b" "$two" "$c" "$d"; do "$GPURUN" wait "$id" >/dev/null 2>&1 || fail "run $id failed"; done
order=$(grep '^start' "$EVENTS" | sort -k3 -n | awk '{print $2}' | tr '\n' ' ')
# Runs granted together (a and b; c and d) may start in either order; the 2-GPU run must start
# after the first pair and before the later 1-GPU runs.
normalised=$(for x in $order; do case $x in "$a"|"$b") echo first;; "$two") echo two;; "$c"|"$d") echo later;; *) echo "$x";; esac; done | tr '\n' ' ')
expect_eq "FIFO: the 2-GPU request goes before later 1-GPU ones ($order)" "first first two later later " "$normalised"
run_cmd run gpu1 --gpu T4:4
expect_eq "impossible request exit (gpurun's own failure: 125)" 125 "$RC"

# Lost runs: kill -9 of a supervisor frees its GPUs and shows the run as lost.
run_cmd run gpu2 --detach; lost="$OUT"
wait_until 10 grep -q "start $lost" "$EVENTS" || fail "run did not start"
fuser -k -KILL "$GPURUN_STATE_DIR/runs/$lost/lock" >/dev/null 2>&1
sleep 0.1
run_cmd ps --all --json
expect_eq "killed supervisor -> lost" "lost" "$(python3 -c 'import json,sys; print([r for r in json.loads(sys.argv[1]) if r["id"]==sys.argv[2]][0]["status"])' "$OUT" "$lost")"
run_cmd wait "$lost"
expect_eq "lost run exit" 125 "$RC"
run_cmd run gpu2
expect_eq "GPUs freed after a lost run" 0 "$RC"

# Deploy, then run without -f from another directory.
run_cmd deploy --json
expect_eq "deploy exit" 0 "$RC"
expect_eq "deploy version" 1 "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["version"])' "$OUT")"
mkdir -p elsewhere && cd elsewhere
run_cmd run hello
expect_eq "deployed run exit" 0 "$RC"
expect_contains "deployed run uses the manifest dir" "$TEST_DIR" "$OUT"
run_cmd run demo/code
expect_eq "APP/FUNCTION" 7 "$RC"
run_cmd run nosuch
expect_eq "unknown function exit (gpurun's own failure: 125)" 125 "$RC"
run_cmd deployments --json
expect_eq "deployments" "demo 1" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1])[0]; print(d["app"], d["version"])' "$OUT")"
cd "$TEST_DIR"
finish
