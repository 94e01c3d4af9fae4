#!/usr/bin/env bash
# The everyday CLI on the local backend (issue 21): @last, attach, ps filters and limits,
# wait --timeout, cancel saying what it waits for and cancel --force, Ctrl-C on an attached run,
# and a --dry-run a person can read.
source "$(dirname "$0")/lib.sh"

cat > gpurun.yaml <<'YAML'
app: everyday
functions:
  hello:
    command: ["sh", "-c", "echo hello-line"]
  code:
    command: ["sh", "-c", "echo code-line; exit 7"]
  streamer:
    command: ["sh", "-c", "echo first-line; sleep 2; echo second-line; exit 3"]
  stubborn:
    # Ignores SIGTERM: only SIGKILL ends it.
    command: ["sh", "-c", "trap '' TERM; echo started; while :; do sleep 0.1; done", "everyday-stubborn"]
  sleeper:
    command: ["sh", "-c", "echo started; sleep 60"]
    env: {MODE: fast}
    timeout: 5m
    retries: 2
YAML
cat > other.yaml <<'YAML'
app: other
functions:
  hello:
    command: ["sh", "-c", "echo other-line"]
YAML

# --- @last: before any run, then the newest run in logs, wait, attach, cancel ---
run_cmd logs @last
expect_eq "@last without runs exit" 2 "$RC"
expect_eq "@last without runs error" "gpurun: error: @last: there are no runs yet; start one with 'gpurun run FUNCTION'" "$ERR"
run_cmd run hello
expect_eq "run hello" "hello-line" "$OUT"
run_cmd run code
expect_eq "run code exit" 7 "$RC"
run_cmd logs @last
expect_eq "logs @last is the newest run" "code-line" "$OUT"
run_cmd wait @last
expect_eq "wait @last exit" 7 "$RC"
code_id=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
COMP=$("$GPURUN" __complete logs "" | grep -v '^:')
expect_eq "completion offers @last first" "@last" "$(printf '%s\n' "$COMP" | head -1 | cut -f1)"
expect_contains "completion names the newest run" "newest run: $code_id" "$(printf '%s\n' "$COMP" | head -1)"
expect_eq "completion then the run ids" "$code_id" "$(printf '%s\n' "$COMP" | sed -n 2p | cut -f1)"
expect_eq "completion of a run prefix leaves @last out" 0 "$("$GPURUN" __complete wait r | grep -c '^@last')"

# --- attach: follows live, exits with the run's code ---
"$GPURUN" run streamer --detach > id.out
id=$(cat id.out)
"$GPURUN" attach @last > attach.out 2> attach.err
expect_eq "attach exits with the run's code" 3 "$?"
expect_eq "attach shows every line" $'first-line\nsecond-line' "$(cat attach.out)"
expect_contains "attach says where it is attached" "gpurun: attached to run $id of streamer on local (" "$(cat attach.err)"
run_cmd attach "$id"
expect_eq "attach to an ended run replays it" $'first-line\nsecond-line' "$OUT"
expect_eq "attach to an ended run exits with its code" 3 "$RC"
run_cmd attach rnothere
expect_eq "attach to an unknown run exit" 125 "$RC"
expect_contains "attach to an unknown run error" "run 'rnothere' not found" "$ERR"

# Ctrl-C detaches; the run goes on.
"$GPURUN" run sleeper --detach > id.out
id=$(cat id.out)
"$GPURUN" attach "$id" > attach.out 2> attach.err &
cli=$!
wait_until 30 grep -q started attach.out || fail "attach never showed the live line: $(cat attach.err)"
kill -INT "$cli"
wait "$cli"
expect_eq "attach Ctrl-C exit" 130 "$?"
expect_contains "attach Ctrl-C says how to cancel" \
  "gpurun: detached from run $id; it goes on: 'gpurun cancel $id' stops it, 'gpurun attach $id' follows it again" "$(cat attach.err)"
sleep 0.5
expect_eq "the run goes on after detaching" "running" "$("$GPURUN" ps --json | python3 -c "import json,sys; print([r['status'] for r in json.load(sys.stdin) if r['id']=='$id'][0])")"

# --- wait --timeout on a live run, then cancel ---
run_cmd wait "$id" --timeout 1s
expect_eq "wait --timeout exit" 124 "$RC"
expect_contains "wait --timeout says so" "gpurun: run $id is still running after --timeout 1s; it goes on" "$ERR"
run_cmd wait @last --timeout soon
expect_eq "wait --timeout bad duration exit" 125 "$RC"
expect_contains "wait --timeout bad duration" "--timeout 'soon': not a duration; write it like 30s, 10m or 2h" "$ERR"
run_cmd cancel @last
expect_eq "cancel @last exit" 0 "$RC"
expect_eq "cancel @last says so" "gpurun: run $id cancelled" "$ERR"

# attach to a queued run shows why it waits, then its output once it runs.
cat > gpus.yaml <<'YAML'
app: gpus
functions:
  hold:
    command: ["sh", "-c", "echo holding; sleep 2"]
    gpu: T4
  after:
    command: ["sh", "-c", "echo after-line"]
    gpu: T4
YAML
export GPURUN_LOCAL_GPUS=T4:1
"$GPURUN" run -f gpus.yaml hold --detach > hold.out
wait_until 30 sh -c "\"\$GPURUN\" logs $(cat hold.out) | grep -q holding" || fail "hold never started"
"$GPURUN" run -f gpus.yaml after --detach > id.out
run_cmd attach "$(cat id.out)"
expect_eq "attach to a queued run exit" 0 "$RC"
expect_eq "attach to a queued run output" "after-line" "$OUT"
expect_contains "attach to a queued run says why it waits" "gpurun: waiting for 1x T4 on local: all 1 in use, queued 0s" "$ERR"
unset GPURUN_LOCAL_GPUS

# --- cancel of a process that ignores SIGTERM says what it waits for; --force kills now ---
export GPURUN_KILL_GRACE=4s
"$GPURUN" run stubborn --detach > id.out
id=$(cat id.out)
wait_until 30 sh -c "\"\$GPURUN\" logs $id | grep -q started" || fail "stubborn never started"
start=$SECONDS
run_cmd cancel "$id"
expect_eq "cancel of a stubborn run exit" 0 "$RC"
expect_contains "cancel says what it waits for" "gpurun: run $id still running 1s after SIGTERM; SIGKILL at 4s ('gpurun cancel --force $id' kills it now)" "$ERR"
expect_contains "cancel ends with the status" "gpurun: run $id cancelled" "$ERR"
check; [ $((SECONDS - start)) -ge 3 ] || fail "cancel returned before the grace period ended"
run_cmd logs "$id"
expect_contains "the log says SIGKILL came after the grace" "still running 4s after SIGTERM: sending SIGKILL" "$ERR$OUT"

"$GPURUN" run stubborn --detach > id.out
id=$(cat id.out)
wait_until 30 sh -c "\"\$GPURUN\" logs $id | grep -q started" || fail "stubborn never started"
start=$SECONDS
run_cmd cancel --force "$id"
expect_eq "cancel --force exit" 0 "$RC"
expect_eq "cancel --force" "gpurun: run $id cancelled" "$ERR"
check; [ $((SECONDS - start)) -le 2 ] || fail "cancel --force took $((SECONDS - start))s"
run_cmd logs "$id"
expect_contains "the log says --force" "cancel --force: sending SIGKILL" "$ERR$OUT"
check; wait_until 5 sh -c '! pgrep -f everyday-stubbor[n]' || fail "the stubborn workload lives on"

# --- Ctrl-C on an attached run: the first cancels, the second says what truly happens ---
export GPURUN_KILL_GRACE=6s
"$GPURUN" run stubborn > attached.out 2> attached.err &
cli=$!
wait_until 30 grep -q started attached.out || fail "the attached run never started: $(cat attached.err)"
id=$("$GPURUN" ps --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
kill -INT "$cli"
wait_until 10 grep -q "cancelling run" attached.err || fail "the first Ctrl-C did not cancel: $(cat attached.err)"
expect_contains "first Ctrl-C" "gpurun: cancelling run $id (Ctrl-C again stops waiting; the cancel goes on)" "$(cat attached.err)"
kill -INT "$cli"
wait "$cli"
expect_eq "second Ctrl-C exit" 130 "$?"
kill_at=$(sed -n 's/.*SIGKILL at \([0-9:]*\) if it still runs.*/\1/p' attached.err)
expect_contains "second Ctrl-C tells what happens next" \
  "gpurun: stopped waiting; the cancel of run $id continues in the background; SIGKILL at $kill_at if it still runs ('gpurun cancel --force $id' kills it now, 'gpurun wait $id' waits for it)" \
  "$(cat attached.err)"
check; [ -n "$kill_at" ] || fail "no SIGKILL time in [$(cat attached.err)]"
# And it is true: the run ends cancelled at that time, not before.
expect_eq "still running before SIGKILL" "running" "$("$GPURUN" ps --json | python3 -c "import json,sys; print([r['status'] for r in json.load(sys.stdin) if r['id']=='$id'][0])")"
run_cmd wait "$id"
expect_eq "the run ends cancelled" 130 "$RC"
ended=$(date -d "$("$GPURUN" ps --all --json | python3 -c "import json,sys; print([r['ended_at'] for r in json.load(sys.stdin) if r['id']=='$id'][0])")" +%s)
check; [ $((ended - $(date -d "$kill_at" +%s))) -ge 0 ] && [ $((ended - $(date -d "$kill_at" +%s))) -le 1 ] ||
  fail "the run ended at $(date -d "@$ended" +%H:%M:%S), not at the SIGKILL time said ($kill_at)"
unset GPURUN_KILL_GRACE

# --- ps --app, --status, --limit; --all has a default limit and says how many more ---
for i in $(seq 1 3); do "$GPURUN" run -f other.yaml hello > /dev/null 2>&1; done
run_cmd ps --all --app other --json
expect_eq "ps --app" "other other other" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(" ".join(r["app"] for r in json.load(sys.stdin)))')"
run_cmd ps --status failed --json
expect_eq "ps --status failed" "streamer code" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(" ".join(r["function"] for r in json.load(sys.stdin)))')"
run_cmd ps --all --limit 2 --json
expect_eq "ps --limit 2" 2 "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
total=$("$GPURUN" ps --all --limit 1000 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
expect_eq "ps --limit says how many more" "gpurun: $((total - 2)) more runs not shown; use --limit N (or --app, --status) to see more" "$ERR"
run_cmd ps --status bogus
expect_eq "ps --status bogus exit" 2 "$RC"
expect_contains "ps --status bogus" "--status: bogus not in {queued,running,succeeded,failed,cancelled,timeout,lost,preempted}" "$ERR"
run_cmd ps --app nosuchapp --all
expect_eq "ps with nothing matching" "gpurun: no runs match" "$ERR"

# 100,000 runs: ps --all shows the default limit quickly and says how many more.
python3 - "$GPURUN_STATE_DIR/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = [("rbulk%08d" % i, "bulk", "f", "local", "local", "succeeded", 1_600_000_000_000 + i) for i in range(100_000)]
db.executemany("INSERT INTO runs(id, app, function, cloud, backend, status, created_at) VALUES(?,?,?,?,?,?,?)", rows)
db.commit()
PY
start=$(date +%s%N)
run_cmd ps --all
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
expect_eq "ps --all on 100,000 runs exit" 0 "$RC"
expect_eq "ps --all shows the default limit" 51 "$(printf '%s\n' "$OUT" | wc -l)"
expect_contains "ps --all says how many more" "more runs not shown; use --limit N" "$ERR"
check; [ "$elapsed_ms" -lt 1000 ] || fail "ps --all on 100,000 runs took ${elapsed_ms} ms"
run_cmd ps --all --app bulk --status succeeded --limit 3 --json
expect_eq "filters on 100,000 runs" "rbulk00099999 rbulk00099998 rbulk00099997" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)))')"

# --- --dry-run a person can read ---
run_cmd run sleeper --dry-run --env EXTRA=1
expect_eq "dry-run exit" 0 "$RC"
expect_contains "dry-run says nothing starts" "dry run: nothing is started" "$OUT"
expect_contains "dry-run names the function" "  function   sleeper (app everyday)" "$OUT"
expect_contains "dry-run names the cloud" "  cloud      local (backend local)" "$OUT"
expect_contains "dry-run shows the command" "  command    sh -c 'echo started; sleep 60'" "$OUT"
expect_contains "dry-run shows the env" "  env        MODE=fast" "$OUT"
expect_contains "dry-run shows --env" "  env        EXTRA=1" "$OUT"
expect_contains "dry-run shows the timeout" "  timeout    5m per attempt" "$OUT"
expect_contains "dry-run shows the retries" "  retries    2 (delay 1s times 2 per retry, at most 1m)" "$OUT"
expect_contains "dry-run says what the supervisor does" "# local: a detached supervisor on this machine runs as process group leader in $TEST_DIR:" "$OUT"
expect_not_contains "dry-run is not a JSON blob" '"argv"' "$OUT"

finish
