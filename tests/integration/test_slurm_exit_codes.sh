#!/usr/bin/env bash
# README's exit-code table for run, wait and logs -f on a real Slurm cluster
# (tests/fixtures/slurm_cluster.sh): the same checks as test_exit_codes.sh on local.
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/slurm.sh"
source "$HERE/exit_codes_common.sh"
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
check_exit_codes slurm
finish
