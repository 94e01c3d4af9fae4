# Conformance fixture for the local backend (sourced by run.sh). A fixture provides:
#   fixture_start             start what the backend needs, export what scenarios use
#   fixture_stop              stop it (run on exit)
#   fixture_config            print a config.yaml whose default cloud is this backend
#   fixture_scenario_cleanup  end what a scenario left on the backend
# and exports FIXTURE_CLOUD (the default cloud's name), FIXTURE_GPU / FIXTURE_GPU_COUNT (a GPU
# type and how many of it the default cloud has), FIXTURE_UNSCHEDULABLE_GPU (a request no cloud
# can serve) with FIXTURE_OFFERS (what the error must name), FIXTURE_LOG_DIR (where the backend
# stores run logs besides the state dir; empty if nowhere), FIXTURE_REMOTE (1 when runs are
# kept current by a monitor rather than by a local supervisor) and FIXTURE_QUEUED_SUFFIX (what the
# backend adds to the queued reason "all N in use", e.g. the scheduler's own reason; may be empty).
# A backend whose logs carry stderr merged into stdout (documented in README) also exports
# FIXTURE_STDERR_MERGED=1 (unset elsewhere).
source "$(dirname "${BASH_SOURCE[0]}")/../integration/require_tools.sh"
fixture_start() {
  require_tools "apt-get install python3 sqlite3 psmisc procps bubblewrap" python3 sqlite3 fuser pgrep bwrap
  export GPURUN_KILL_GRACE=1s
  # Declared GPUs (no NVIDIA driver needed): leases and queueing are real, the devices are not.
  export GPURUN_LOCAL_GPUS="T4:2"
  export FIXTURE_CLOUD=local FIXTURE_GPU=T4 FIXTURE_GPU_COUNT=2
  export FIXTURE_UNSCHEDULABLE_GPU=T4:4 FIXTURE_OFFERS="offers T4:2"
  export FIXTURE_LOG_DIR="" FIXTURE_REMOTE=0 FIXTURE_QUEUED_SUFFIX=""
}
fixture_stop() { :; }
fixture_config() { echo "default_cloud: local"; }
fixture_scenario_cleanup() { :; }
