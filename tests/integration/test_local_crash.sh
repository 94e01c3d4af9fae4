#!/usr/bin/env bash
# The local backend after crashes and on a full disk: killed supervisors never let two workloads
# hold one GPU (a lost run's GPUs stay leased while its workload lives), `cancel` of a lost run
# kills what is left of it, an attached run whose supervisor dies says why, and a run whose state
# disk fills up ends with the reason (exit 125) instead of hanging.
source "$(dirname "$0")/require_tools.sh"
require_tools "apt-get install psmisc python3 util-linux mount coreutils" fuser python3 unshare mount timeout
source "$(dirname "$0")/lib.sh"

cat > gpurun.yaml <<'YAML'
app: crash
functions:
  ticker:
    # Ticks "<run> <devices> <time>" every 0.1 s for about 1.6 s: the interval a workload holds its
    # GPU is [first tick, last tick].
    command: ["sh", "-c", "i=0; while [ $i -lt 16 ]; do echo \"$GPURUN_RUN_ID $CUDA_VISIBLE_DEVICES $(date +%s.%N)\" >> $EVENTS; sleep 0.1; i=$((i+1)); done"]
    gpu: T4
  leftover:
    # Its shell dies with the supervisor; the background sleep lives on in the workload's group.
    command: ["sh", "-c", "sleep 30 & echo started; wait"]
    gpu: T4:2
  both:
    command: ["sh", "-c", "echo both $CUDA_VISIBLE_DEVICES"]
    gpu: T4:2
  chatty:
    command: ["sh", "-c", "while :; do echo tick tick tick tick tick tick tick tick tick tick tick; sleep 0.02; done"]
YAML
export GPURUN_LOCAL_GPUS="T4:2" EVENTS="$TEST_DIR/events"

# supervisor_of RUN: the pid of the run's supervisor (the one process holding its lock).
supervisor_of() { fuser "$GPURUN_STATE_DIR/runs/$1/lock" 2>/dev/null | tr -s ' ' '\n' | grep -m1 '[0-9]'; }
# group_alive PGID: a process of the group runs (zombies, which wait to be reaped, do not count).
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }
status_of() {
  "$GPURUN" ps --all --json | python3 -c 'import json,sys; print([r["status"] for r in json.load(sys.stdin) if r["id"]==sys.argv[1]][0])' "$1"
}

# 1. kill -9 of supervisors under load: 20 one-GPU runs on 2 GPUs, 8 supervisors killed while
# their workloads run. Per device, the tick intervals of different runs never overlap.
ids=()
for i in $(seq 20); do ids+=("$("$GPURUN" run ticker --detach)"); done
killed=0
end=$((SECONDS + 40))
while [ "$killed" -lt 8 ] && [ $SECONDS -lt $end ]; do
  for id in "${ids[@]}"; do
    [ "$killed" -ge 8 ] && break
    # A run that ticked 2 to 5 times is running and has about a second left (the kill must land
    # before its workload ends, also on a busy machine): kill its supervisor.
    ticks=$(grep -c "^$id " "$EVENTS" 2>/dev/null)
    if [ "${ticks:-0}" -ge 2 ] && [ "${ticks:-0}" -le 5 ]; then
      pid=$(supervisor_of "$id") && [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
    fi
  done
  sleep 0.1
done
expect_eq "supervisors killed under load" 8 "$killed"
lost=0
for id in "${ids[@]}"; do
  "$GPURUN" wait "$id" >/dev/null 2>&1; rc=$?
  [ "$rc" -eq 125 ] && lost=$((lost + 1))
  [ "$rc" -eq 0 ] || [ "$rc" -eq 125 ] || fail "run $id ended with $rc"
done
expect_eq "killed runs are lost (125), the others succeed" 8 "$lost"
sleep 0.3  # the killed runs' last sleeps end
overlaps=$(python3 - "$EVENTS" <<'PY'
import sys, collections
spans = collections.defaultdict(lambda: [None, None, None])
for line in open(sys.argv[1]):
    run, dev, t = line.split()
    s = spans[run]; t = float(t)
    s[0] = dev; s[1] = t if s[1] is None else min(s[1], t); s[2] = t if s[2] is None else max(s[2], t)
by_dev = collections.defaultdict(list)
for run, (dev, a, b) in spans.items(): by_dev[dev].append((a, b, run))
bad = []
for dev, items in by_dev.items():
    items.sort()
    for (a1, b1, r1), (a2, b2, r2) in zip(items, items[1:]):
        if a2 <= b1: bad.append(f"{r1}+{r2} on GPU {dev}")
print(f"{len(spans)} runs on {sorted(by_dev)}; overlaps: {bad}")
PY
)
expect_eq "no two workloads on one GPU" "20 runs on ['0', '1']; overlaps: []" "$overlaps"

# 2. An attached run whose supervisor dies says why; its workload's leftover keeps the GPUs
# (a later run waits) until `cancel` of the lost run kills it.
"$GPURUN" run leftover > attached.out 2> attached.err &
cli=$!
wait_until 15 grep -q started attached.out || fail "leftover did not start"
lost_id=$(sed -n 's/^gpurun: run \(r[0-9a-z]*\) of leftover.*/\1/p' attached.err)
pgid=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select workload_pgid from attempts where run_id=?",(sys.argv[2],)).fetchone()[0])' \
  "$GPURUN_STATE_DIR/state.db" "$lost_id")
kill -9 "$(supervisor_of "$lost_id")"
wait "$cli"; rc=$?
expect_eq "attached lost run exit" 125 "$rc"
expect_eq "attached lost run explains itself" \
  "gpurun: run $lost_id of leftover on local (2x T4)
gpurun: run $lost_id lost: its supervisor exited without recording a result (killed?); its workload (process group $pgid) still runs and keeps its GPUs: 'gpurun cancel $lost_id' stops it
gpurun: its supervisor's own messages are in $GPURUN_STATE_DIR/runs/$lost_id/supervisor.log; 'gpurun logs $lost_id' shows its output; start it again with 'gpurun run leftover'" \
  "$(cat attached.err)"
check; group_alive "$pgid" || fail "the leftover sleep should still run"
next=$("$GPURUN" run both --detach)
sleep 1.5
expect_eq "a lost run's live workload keeps its GPUs" queued "$(status_of "$next")"
run_cmd cancel "$lost_id"
expect_eq "cancel of a lost run exit" 0 "$RC"
expect_eq "cancel of a lost run" \
  "gpurun: run $lost_id was lost; killed what was left of its workload (process group $pgid); its GPUs are free" "$ERR"
check; ! group_alive "$pgid" || fail "cancel left the leftover running"
run_cmd wait "$next"
expect_eq "the waiting run gets the GPUs" 0 "$RC"
run_cmd cancel "$lost_id"
expect_eq "cancel of a lost run again" "gpurun: run $lost_id already ended (lost) and nothing of it runs; nothing to cancel" "$ERR"

# 3. A full state disk (a 4 MiB tmpfs in a private mount namespace: unshare -m as root, else
# unshare -rm) ends the run with the reason, exit 125, and the attached CLI prints it.
ns=(unshare -m --propagation private)
[ "$(id -u)" -eq 0 ] || ns=(unshare -rm --propagation private)
mkdir -p small
cat > full_disk.sh <<'SH'
set -u
mount -t tmpfs -o size=4m tmpfs small || exit 90
export GPURUN_STATE_DIR="$PWD/small/state"
"$GPURUN" run chatty > full.out 2> full.err &
cli=$!
for _ in $(seq 200); do grep -q tick full.out 2>/dev/null && break; sleep 0.05; done
# Fill the file system in one call (a slow fill would take the space the supervisor frees to
# record the result).
python3 - small/filler <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
st = os.statvfs(sys.argv[1])
size = st.f_bavail * st.f_frsize
while size > 0:
    try:
        os.posix_fallocate(fd, 0, size); break
    except OSError:
        size -= 4096
PY
timeout 30 tail --pid=$cli -f /dev/null || { echo "attached run hangs on a full disk" >&2; kill $cli; }
wait $cli; echo "rc=$?" > full.rc
"$GPURUN" ps --all --json > full.ps 2>&1
rm -f small/filler
SH
GPURUN="$GPURUN" "${ns[@]}" bash full_disk.sh
expect_eq "full disk: run exit" "rc=125" "$(cat full.rc)"
full_id=$(sed -n 's/^gpurun: run \(r[0-9a-z]*\) of chatty.*/\1/p' full.err)
log="$TEST_DIR/small/state/runs/$full_id/log"
reason="no space left on device writing the run log at $log; free space on its file system and start the run again"
expect_eq "full disk: the attached CLI says why" "gpurun: run $full_id of chatty on local
gpurun: run $reason" "$(cat full.err)"
expect_eq "full disk: status and reason" "failed 125 $reason" \
  "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; print(r["status"], r["exit_code"], r["status_reason"])' full.ps)"
finish
