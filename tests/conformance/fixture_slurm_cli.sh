# Conformance fixture for the Slurm backend with `transport: cli` (sourced by run.sh; see
# fixture_local.sh for what a fixture provides): one real cluster (tests/fixtures/slurm_cluster.sh
# through tests/integration/slurm.sh) reached through the Slurm commands (sbatch, squeue, scancel,
# sinfo) on this machine; no endpoint, slurmrestd unused.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/require_tools.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../integration/slurm.sh"
fixture_start() {
  require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client munge curl python3" \
    slurmctld slurmd munged sinfo scontrol squeue scancel sbatch python3
  start_slurm_cluster
  export CLUSTER GPURUN_KILL_GRACE=1s
  export FIXTURE_CLOUD=aws FIXTURE_GPU=T4 FIXTURE_GPU_COUNT=4
  # The config claims L4s that no node has: sbatch refuses the job and gpurun names the offers.
  export FIXTURE_UNSCHEDULABLE_GPU=L4 FIXTURE_OFFERS="t4:4, a10g:4"
  export FIXTURE_LOG_DIR="$CLUSTER/gpurun-logs" FIXTURE_REMOTE=1 FIXTURE_QUEUED_SUFFIX=" (Resources)"
}
fixture_stop() { stop_slurm_cluster; }
fixture_config() {
  cat <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    transport: cli
    partition: aws
    gpus: ["T4:4", "A10G:4", "L4:2"]
    log_dir: $FIXTURE_LOG_DIR
    gres: {T4: t4, A10G: a10g}
YAML
}
# Cancels every job left on the cluster so that the next scenario starts on idle nodes.
fixture_scenario_cleanup() {
  scancel --user="$GPURUN_TEST_SLURM_USER" >/dev/null 2>&1 || true
  wait_until 15 sh -c '[ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING -o %i)" ]' || true
}
