#!/usr/bin/env bash
# What only the local backend does: host functions run in the manifest's directory, volumes bound
# by bubblewrap (no mount point on the host, sandbox failures and impossible mount paths), FIFO GPU
# leases, lost runs after a killed supervisor, deploy + run from elsewhere. What every backend does
# (exit codes, argv/env, secrets, retries, timeouts, cancel, logs, queueing) is in the conformance
# suite (tests/conformance/, ctest conformance.local).
source "$(dirname "$0")/lib.sh"

cat > gpurun.yaml <<'YAML'
app: demo
volumes:
  shared: {}
functions:
  hello:
    command: ["sh", "-c", "pwd"]
  code:
    command: exit 7
  writer:
    command: ["sh", "-c", "echo payload > /mnt/shared/file"]
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

# Host functions run in the manifest's directory.
run_cmd run hello
expect_eq "hello exit" 0 "$RC"
expect_contains "runs in the manifest dir" "$TEST_DIR" "$OUT"

# A volume's mount path is made in the sandbox only: the host gets no mount point.
host_had_mount=no; [ -e /mnt/shared ] && host_had_mount=yes
run_cmd run writer
expect_eq "writer exit" 0 "$RC"
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
run_cmd deployments --json
expect_eq "deployments" "demo 1" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1])[0]; print(d["app"], d["version"])' "$OUT")"
cd "$TEST_DIR"
finish
