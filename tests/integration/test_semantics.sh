#!/usr/bin/env bash
# Run semantics on the local backend (semantics_common.sh; test_slurm_semantics.sh checks the same
# on a real Slurm cluster): retries after a timeout, a scheduled retry and a queued run in words.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/semantics_common.sh"
export GPURUN_KILL_GRACE=1s GPURUN_LOCAL_GPUS="T4:2"
write_semantics_manifest T4 T4:2
check_timeout_retry local
check_retry_reason local T4 local
check_waiting_reason local "waiting for 1x T4 on local: all 2 in use"
finish
