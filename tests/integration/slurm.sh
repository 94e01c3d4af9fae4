# Slurm helpers for integration tests (source after lib.sh): one real cluster from
# tests/fixtures/slurm_cluster.sh in a temp dir, stopped by stop_slurm_cluster.
SLURM_FIXTURE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)/slurm_cluster.sh
# start_slurm_cluster: starts it (or fails the test) and exports its env; sets CLUSTER.
start_slurm_cluster() {
  CLUSTER=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-slurm-XXXXXX")
  chmod 755 "$CLUSTER"
  "$SLURM_FIXTURE" start "$CLUSTER" 2>/dev/null || { echo "FAIL: the Slurm fixture did not start" >&2; exit 1; }
  eval "$("$SLURM_FIXTURE" env "$CLUSTER")"
}
# stop_slurm_cluster: stops its daemons (by PID) and removes its directory.
stop_slurm_cluster() {
  [ -n "${CLUSTER:-}" ] || return 0
  "$SLURM_FIXTURE" stop "$CLUSTER" >/dev/null 2>&1 || true
  rm -rf "$CLUSTER"
}
# slurm_config [EXTRA]: prints the tests' gpurun config for the running cluster: default cloud
# `aws`, the cluster's partition aws over slurmrestd's unix socket, its GPUs (T4:4, A10G:4, plus
# L4:2 that no node has, for impossible requests) and run logs under $CLUSTER/gpurun-logs. EXTRA
# (YAML text) is appended as is: lines indented by 4 add keys to `aws`, by 2 add clouds, by 0 add
# top-level keys.
slurm_config() {
  cat <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4", "A10G:4", "L4:2"]
    log_dir: $CLUSTER/gpurun-logs
    gres: {T4: t4, A10G: a10g}
YAML
  [ -z "${1:-}" ] || printf '%s\n' "$1"
}
# write_slurm_config [EXTRA]: writes slurm_config's text to $XDG_CONFIG_HOME/gpurun/config.yaml.
write_slurm_config() {
  mkdir -p "$XDG_CONFIG_HOME/gpurun"
  slurm_config "${1:-}" > "$XDG_CONFIG_HOME/gpurun/config.yaml"
}
