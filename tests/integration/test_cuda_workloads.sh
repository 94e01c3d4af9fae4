#!/usr/bin/env bash
# The CUDA sample workloads on a real GPU: gpurun-probe names each device nvidia-smi lists and
# its kernel check passes; gpurun-bandwidth reports GB/s. Skips (77) without a GPU and driver.
# GPURUN (the gpurun binary) is set by ctest; the workloads are in GPURUN_BUILD_DIR (default:
# the directory of $GPURUN)/gpu/workloads.
set -euo pipefail
: "${GPURUN:?GPURUN must name the gpurun binary (ctest sets it)}"
build_dir=${GPURUN_BUILD_DIR:-$(dirname "$GPURUN")}
workloads=$build_dir/gpu/workloads

if [ ! -e /dev/nvidia0 ]; then
  echo "SKIP: no NVIDIA GPU/driver on this machine (no /dev/nvidia0)"
  exit 77
fi
if ! smi_names=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1); then
  echo "SKIP: no NVIDIA GPU/driver on this machine (nvidia-smi fails: ${smi_names%%$'\n'*})"
  exit 77
fi
if [ ! -x "$workloads/gpurun-probe" ] || [ ! -x "$workloads/gpurun-bandwidth" ]; then
  echo "SKIP: the CUDA workloads were not built in $workloads (no nvcc when configuring)"
  exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }

set +e
probe_out=$("$workloads/gpurun-probe" 2>&1)
probe_rc=$?
set -e
echo "$probe_out"
[ "$probe_rc" = 0 ] || fail "gpurun-probe exited with $probe_rc"
grep -q '^GPU 0: .*, compute capability [0-9]*\.[0-9]*,' <<<"$probe_out" || fail "gpurun-probe names no device"
grep -q '^GPU 0: kernel check ok' <<<"$probe_out" || fail "gpurun-probe did not check its kernel on GPU 0"
first_name=$(sed -n 's/^GPU 0: \([^,]*\), .*compute capability.*/\1/p' <<<"$probe_out")
grep -qxF "$first_name" <<<"$smi_names" || fail "gpurun-probe's GPU 0 '$first_name' is not among nvidia-smi's: $smi_names"

set +e
bandwidth_out=$("$workloads/gpurun-bandwidth" --size-mib 64 --iterations 5 2>&1)
bandwidth_rc=$?
set -e
echo "$bandwidth_out"
[ "$bandwidth_rc" = 0 ] || fail "gpurun-bandwidth exited with $bandwidth_rc"
grep -q '^copy kernel: *[0-9.]* GB/s' <<<"$bandwidth_out" || fail "gpurun-bandwidth reported no bandwidth"
echo "PASS"
