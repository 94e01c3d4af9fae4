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
