# Conformance fixture for the ssh backend (sourced by run.sh; see fixture_local.sh for what a
# fixture provides): one real sshd on loopback (tests/fixtures/sshd.sh) as a GPU server with two
# declared T4s and a host-wide lease dir (setgid, group-writable, as an admin makes it).
source "$(dirname "${BASH_SOURCE[0]}")/../integration/require_tools.sh"
SSH_FIXTURE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)/sshd.sh"
fixture_start() {
  require_tools "apt-get install openssh-server openssh-client fish bubblewrap" sshd ssh ssh-keygen fish useradd bwrap fuser
  SSH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-conf-sshd-XXXXXX")
  chmod 755 "$SSH_DIR"  # the login user reads the authorized keys under it
  bash "$SSH_FIXTURE" start "$SSH_DIR/sshd" || { echo "the sshd fixture did not start" >&2; exit 1; }
  eval "$(bash "$SSH_FIXTURE" env "$SSH_DIR/sshd")"
  getent group gpurun-lease >/dev/null || groupadd gpurun-lease
  usermod -aG gpurun-lease "$GPURUN_TEST_SSH_USER"
  SSH_LEASE_DIR="$SSH_DIR/leases"
  mkdir -p "$SSH_LEASE_DIR" && chgrp gpurun-lease "$SSH_LEASE_DIR" && chmod 2770 "$SSH_LEASE_DIR"
  export SSH_DIR SSH_LEASE_DIR GPURUN_TEST_SSH_HOST GPURUN_TEST_SSH_PORT GPURUN_TEST_SSH_USER GPURUN_TEST_SSH_KEY \
    GPURUN_TEST_SSH_KNOWN_HOSTS
  export GPURUN_KILL_GRACE=1s
  export FIXTURE_CLOUD=lab FIXTURE_GPU=T4 FIXTURE_GPU_COUNT=2
  export FIXTURE_UNSCHEDULABLE_GPU=T4:4 FIXTURE_OFFERS="offers T4:2"
  # The host's state (its runs and logs) must hold no secret either.
  export FIXTURE_LOG_DIR="$SSH_LEASE_DIR" FIXTURE_REMOTE=1 FIXTURE_QUEUED_SUFFIX=""
}
fixture_stop() {
  [ -n "${SSH_DIR:-}" ] || return 0
  fixture_scenario_cleanup
  bash "$SSH_FIXTURE" stop "$SSH_DIR/sshd"
  rm -rf "$SSH_DIR"
}
fixture_config() {
  cat <<YAML
default_cloud: lab
clouds:
  lab:
    backend: ssh
    user: $GPURUN_TEST_SSH_USER
    identity_file: $GPURUN_TEST_SSH_KEY
    ssh_options: [UserKnownHostsFile=$GPURUN_TEST_SSH_KNOWN_HOSTS, GlobalKnownHostsFile=/dev/null]
    lease_dir: $SSH_LEASE_DIR
    hosts:
      - {host: $GPURUN_TEST_SSH_HOST, port: $GPURUN_TEST_SSH_PORT, gpus: ["T4:2"]}
YAML
}
# Ends the runs a scenario left on the host (their supervisors hold their run's lock).
fixture_scenario_cleanup() {
  fuser -k -KILL "$SSH_LEASE_DIR"/runs/*/lock >/dev/null 2>&1 || true
  pkill -KILL -u "$GPURUN_TEST_SSH_USER" -f -- "$SSH_LEASE_DIR" >/dev/null 2>&1 || true
}
