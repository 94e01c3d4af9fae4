#!/usr/bin/env bash
# README's exit-code table for run, wait and logs -f on the local backend (exit_codes_common.sh;
# test_slurm_exit_codes.sh checks the same on a real Slurm cluster).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/exit_codes_common.sh"
export GPURUN_KILL_GRACE=1s
check_exit_codes local
finish
