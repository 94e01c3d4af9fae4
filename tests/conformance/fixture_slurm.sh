# Conformance fixture for the Slurm backend (sourced by run.sh; see fixture_local.sh for what a
# fixture provides): one real cluster (tests/fixtures/slurm_cluster.sh through
# tests/integration/slurm.sh) for the whole suite, reached over slurmrestd's unix socket.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/require_tools.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../integration/slurm.sh"
fixture_start() {
  require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl python3 sqlite3 psmisc procps" \
    slurmctld slurmd slurmrestd munged sinfo scontrol squeue scancel curl python3 sqlite3 fuser pgrep
  start_slurm_cluster
  export CLUSTER GPURUN_KILL_GRACE=1s
  export FIXTURE_CLOUD=aws FIXTURE_GPU=T4 FIXTURE_GPU_COUNT=4
  # The config claims L4s that no node has: Slurm refuses the job and gpurun names the offers.
  export FIXTURE_UNSCHEDULABLE_GPU=L4 FIXTURE_OFFERS="t4:4, a10g:4"
  export FIXTURE_LOG_DIR="$CLUSTER/gpurun-logs" FIXTURE_REMOTE=1 FIXTURE_QUEUED_SUFFIX=" (Resources)"
}
fixture_stop() { stop_slurm_cluster; }
fixture_config() { slurm_config; }
# Cancels every job left on the cluster so that the next scenario starts on idle nodes.
fixture_scenario_cleanup() {
  scancel --user="$GPURUN_TEST_SLURM_USER" >/dev/null 2>&1 || true
  wait_until 15 sh -c '[ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING -o %i)" ]' || true
}
