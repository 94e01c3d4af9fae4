#!/usr/bin/env bash
# cloud/slurm_client and slurm_script against a real cluster: runs the unit-test binary's
# "slurm live:" cases (skipped in ordinary runs) with the fixture's environment.
set -euo pipefail
SRC=${GPURUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FIXTURE=$SRC/tests/fixtures/slurm_cluster.sh

source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl

UNIT=${GPURUN_UNIT_TESTS:-$(dirname "${GPURUN:?GPURUN must point at the gpurun binary}")/tests/gpurun_unit_tests}
[ -x "$UNIT" ] || { echo "FAIL: no unit-test binary at $UNIT" >&2; exit 1; }

DIR=$(mktemp -d)
cleanup() {
  "$FIXTURE" stop "$DIR" || true
  rm -rf "$DIR"
}
trap cleanup EXIT

"$FIXTURE" start "$DIR"
eval "$("$FIXTURE" env "$DIR")"
GPURUN_TEST_SLURM_TOKEN=$("$FIXTURE" token "$DIR")
export GPURUN_TEST_SLURM_TOKEN
"$UNIT" --no-skip -tc='slurm live:*'
