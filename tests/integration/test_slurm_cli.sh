#!/usr/bin/env bash
# Slurm's `transport: cli` on a real cluster (tests/fixtures/slurm_cluster.sh), beyond the
# conformance suite: `partitions:` sends each GPU type to its partition, and a job whose pending
# reason never clears (PartitionTimeLimit) ends the run unschedulable instead of waiting forever.
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client munge python3" \
  slurmctld slurmd munged sinfo scontrol squeue sbatch scancel python3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
trap 'stop_slurm_cluster; cleanup' EXIT
start_slurm_cluster
mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: hpc
clouds:
  hpc:
    backend: slurm
    transport: cli
    partitions: {A100: gcp, T4: aws}
    gpus: ["T4:4", "A100-40GB:2"]
    log_dir: $CLUSTER/gpurun-logs
    gres: {T4: t4, A100: a100}
YAML
cat > gpurun.yaml <<'YAML'
app: parts
functions:
  ont4:
    command: ["sh", "-c", "echo partition=$SLURM_JOB_PARTITION"]
    gpu: T4
  ona100:
    command: ["sh", "-c", "echo partition=$SLURM_JOB_PARTITION"]
    gpu: A100
  long:
    command: ["sleep", "1"]
    gpu: A100
    timeout: 10m
YAML
run_cmd run ont4
expect_eq "T4 run exit" 0 "$RC"
expect_eq "T4 goes to partition aws" "partition=aws" "$OUT"
run_cmd run ona100
expect_eq "A100 run exit" 0 "$RC"
expect_eq "A100 goes to partition gcp" "partition=gcp" "$OUT"

# gcp allows 1 minute at most: a 10-minute job can never start there.
scontrol update PartitionName=gcp MaxTime=1 || fail "cannot set the partition's MaxTime"
run_cmd run long --detach
expect_eq "detached submit" 0 "$RC"
id=$OUT
job=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["remote_id"])' 2>/dev/null || true)
run_cmd wait "$id"
expect_eq "wait exit (unschedulable)" 3 "$RC"
run_cmd ps --all --json
reason=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1])[0]; print(r["status"] + ": " + r["status_reason"])' "$OUT")
expect_eq "ps says why, in words" \
  "failed: Slurm can never start it on hpc: its time limit is longer than its partition allows (PartitionTimeLimit)" "$reason"
state=$(squeue -h -t all -j "$job" -o %T 2>/dev/null)
expect_eq "the job is cancelled in Slurm" "CANCELLED" "$state"
finish
