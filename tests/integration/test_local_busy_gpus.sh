#!/usr/bin/env bash
# GPUs that processes outside gpurun use count as busy for the local backend's leases. These
# machines have no NVIDIA GPU: a fake nvidia-smi on PATH stands in for the driver (fault injection
# of hardware we do not have). It lists two T4s and, as compute apps, what $APPS holds; NVML is
# pointed at a library that does not exist so that nvidia-smi is what gets asked.
source "$(dirname "$0")/lib.sh"

mkdir -p fakebin
export APPS="$TEST_DIR/apps" CALLS="$TEST_DIR/calls" EVENTS="$TEST_DIR/events"
cat > fakebin/nvidia-smi <<'SH'
#!/bin/sh
case "$1" in
  --query-gpu=*)
    echo "0, GPU-fake-0, Tesla T4, 15360 MiB, 00000000:3B:00.0"
    echo "1, GPU-fake-1, Tesla T4, 15360 MiB, 00000000:3C:00.0" ;;
  --query-compute-apps=gpu_uuid,pid)
    echo "$(date +%s.%N)" >> "$CALLS"
    cat "$APPS" 2>/dev/null ;;
  *) echo "fake nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
SH
chmod 755 fakebin/nvidia-smi
export PATH="$TEST_DIR/fakebin:$PATH" GPURUN_NVML_LIBRARY="$TEST_DIR/no-libnvidia-ml.so.1"
: > "$APPS"; : > "$CALLS"

cat > gpurun.yaml <<'YAML'
app: busy
functions:
  one:
    command: ["sh", "-c", "echo start $(date +%s.%N) >> $EVENTS; echo on $CUDA_VISIBLE_DEVICES"]
    gpu: T4
YAML

run_cmd gpus
expect_contains "the fake driver's two T4s are found" "T4" "$OUT"

# GPU 0 has a process outside gpurun: the run takes GPU 1.
echo "GPU-fake-0, 4242" > "$APPS"
run_cmd run one
expect_eq "one beside an outside process: exit ($ERR)" 0 "$RC"
expect_eq "one beside an outside process: takes GPU 1" "on 1" "$OUT"
check; [ -s "$CALLS" ] || fail "the run did not ask nvidia-smi for compute apps"

# Both GPUs in use outside gpurun: the run waits and says why, asking about once a second.
printf 'GPU-fake-0, 4242\nGPU-fake-1, 5151\nGPU-fake-1, 5152\n' > "$APPS"
: > "$EVENTS"
run_cmd run one --detach; waiting="$OUT"
expect_eq "detached run id" 0 "$RC"
reason="waiting for 1x T4 on local: all 2 in use (GPU 0 by a process outside gpurun: pid 4242; GPU 1 by processes outside gpurun: pids 5151, 5152)"
wait_until 10 sh -c "\"$GPURUN\" ps --json | grep -qF '$reason'" || fail "no waiting reason naming the outside processes: $("$GPURUN" ps --json)"
before=$(wc -l < "$CALLS")
sleep 3
asked=$(( $(wc -l < "$CALLS") - before ))
check; [ "$asked" -ge 2 ] && [ "$asked" -le 4 ] || fail "asked nvidia-smi $asked times in 3 s while waiting; expected about once a second"
check; [ ! -s "$EVENTS" ] || fail "the run started while both GPUs were in use: $(cat "$EVENTS")"
run_cmd ps --json
expect_contains "still waiting" "$reason" "$OUT"

# GPU 1's processes end: the run starts there.
echo "GPU-fake-0, 4242" > "$APPS"
freed=$(date +%s.%N)
run_cmd wait "$waiting"
expect_eq "waiting run ends well ($ERR)" 0 "$RC"
run_cmd logs "$waiting"
expect_contains "the waiting run got GPU 1" "on 1" "$OUT"
started=$(awk '{print $2}' "$EVENTS")
check; python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$started" "$freed" \
  || fail "the run started ($started) before GPU 1 was freed ($freed)"

# Declared GPUs stand for no real device: the driver is not asked about them.
before=$(wc -l < "$CALLS")
GPURUN_LOCAL_GPUS="T4:1" run_cmd run one
expect_eq "declared GPU: exit ($ERR)" 0 "$RC"
expect_eq "declared GPU: device 0" "on 0" "$OUT"
expect_eq "declared GPU: no compute-apps query" "$before" "$(wc -l < "$CALLS")"
finish
