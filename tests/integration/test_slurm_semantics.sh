#!/usr/bin/env bash
# Run semantics on a real Slurm cluster (tests/fixtures/slurm_cluster.sh; semantics_common.sh,
# the same checks as test_semantics.sh on local): a timed-out attempt is resubmitted with the
# backoff, a scheduled retry (BeginTime) and a job queued behind a GPU hog (Resources, with the
# partition's GPUs from slurmrestd /nodes) are said in words.
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
source "$HERE/semantics_common.sh"
trap 'stop_slurm_cluster; cleanup' EXIT
start_slurm_cluster
export GPURUN_KILL_GRACE=1s
mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4", "A10G:4"]
    log_dir: $CLUSTER/gpurun-logs
    gres: {T4: t4, A10G: a10g}
YAML
write_semantics_manifest T4 T4:4
check_timeout_retry slurm
check_retry_reason slurm T4 aws
check_waiting_reason slurm "waiting for 1x T4 on aws: all 4 in use (Resources)"
finish
