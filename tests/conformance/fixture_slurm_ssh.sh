# Conformance fixture for the Slurm backend with `transport: ssh` (sourced by run.sh; see
# fixture_local.sh for what a fixture provides): one real cluster (tests/fixtures/slurm_cluster.sh)
# behind a real sshd (tests/fixtures/sshd.sh), whose non-root login user submits the jobs. gpurun
# runs in a mount namespace that hides the Slurm commands, slurmrestd and the whole cluster
# directory (its log_dir, munge socket and slurm.conf): only SSH reaches the cluster.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/require_tools.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../integration/slurm.sh"
SSHD_FIXTURE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)/sshd.sh
fixture_start() {
  require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client munge openssh-server openssh-client fish util-linux python3" \
    slurmctld slurmd munged sinfo scontrol squeue scancel sbatch sshd ssh fish unshare python3
  start_slurm_cluster
  SSHD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-sshd-XXXXXX")
  "$SSHD_FIXTURE" start "$SSHD_DIR" >/dev/null || { echo "FAIL: the sshd fixture did not start" >&2; exit 1; }
  eval "$("$SSHD_FIXTURE" env "$SSHD_DIR")"
  export CLUSTER SSHD_DIR GPURUN_KILL_GRACE=1s
  export FIXTURE_CLOUD=aws FIXTURE_GPU=T4 FIXTURE_GPU_COUNT=4
  export FIXTURE_UNSCHEDULABLE_GPU=L4 FIXTURE_OFFERS="t4:4, a10g:4"
  # The jobs run as the SSH login user: the log directory is theirs.
  export FIXTURE_LOG_DIR="$CLUSTER/gpurun-logs" FIXTURE_REMOTE=1 FIXTURE_QUEUED_SUFFIX=" (Resources)"
  mkdir -p "$FIXTURE_LOG_DIR" && chown "$GPURUN_TEST_SSH_USER" "$FIXTURE_LOG_DIR"
  # gpurun itself runs where nothing of the cluster is visible.
  export REAL_GPURUN=$GPURUN GPURUN="$SSHD_DIR/gpurun-hidden"
  local hide="" t
  for t in sbatch squeue scancel scontrol sinfo srun salloc sacct slurmrestd; do
    t=$(command -v "$t" 2>/dev/null || echo "/usr/sbin/$t")
    [ -e "$t" ] && hide+="mount --bind /dev/null $t; "
  done
  cat >"$GPURUN" <<SH
#!/bin/sh
exec unshare -m sh -c '$hide mount -t tmpfs none $CLUSTER; exec "\$0" "\$@"' "$REAL_GPURUN" "\$@"
SH
  chmod 755 "$GPURUN"
  "$GPURUN" --version >/dev/null || { echo "FAIL: cannot run gpurun in the hiding namespace" >&2; exit 1; }
  if unshare -m sh -c "$hide mount -t tmpfs none $CLUSTER; [ -s \"$SLURM_CONF\" ] || sbatch --version" >/dev/null 2>&1; then
    echo "FAIL: the namespace does not hide the cluster" >&2; exit 1
  fi
}
fixture_stop() {
  [ -n "${SSHD_DIR:-}" ] && { "$SSHD_FIXTURE" stop "$SSHD_DIR" >/dev/null 2>&1 || true; rm -rf "$SSHD_DIR"; }
  stop_slurm_cluster
}
fixture_config() {
  # The project directory is on the cluster's shared filesystem, readable by the cluster user (the
  # job's working directory, as when gpurun and the project live in a shared /home).
  chmod 755 "$PWD"
  cat <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    transport: ssh
    host: $GPURUN_TEST_SSH_HOST
    port: $GPURUN_TEST_SSH_PORT
    user: $GPURUN_TEST_SSH_USER
    identity_file: $GPURUN_TEST_SSH_KEY
    ssh_options: ["UserKnownHostsFile=$GPURUN_TEST_SSH_KNOWN_HOSTS"]
    remote_setup: ["export SLURM_CONF=$SLURM_CONF"]
    partition: aws
    gpus: ["T4:4", "A10G:4", "L4:2"]
    log_dir: $FIXTURE_LOG_DIR
    gres: {T4: t4, A10G: a10g}
YAML
}
# Cancels every job left on the cluster so that the next scenario starts on idle nodes.
fixture_scenario_cleanup() {
  scancel --user="$GPURUN_TEST_SSH_USER" >/dev/null 2>&1 || true
  wait_until 15 sh -c '[ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING -o %i)" ]' || true
}
