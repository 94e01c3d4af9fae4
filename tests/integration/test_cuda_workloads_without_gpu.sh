#!/usr/bin/env bash
# On a machine without an NVIDIA driver, the CUDA sample workloads fail cleanly: exit code 3 and
# a message naming the CUDA error. Skips (77) where a GPU is present or the workloads were not built.
set -euo pipefail
: "${GPURUN:?GPURUN must name the gpurun binary (ctest sets it)}"
build_dir=${GPURUN_BUILD_DIR:-$(dirname "$GPURUN")}
workloads=$build_dir/gpu/workloads

if [ -e /dev/nvidia0 ]; then
  echo "SKIP: this machine has an NVIDIA GPU (/dev/nvidia0); test_cuda_workloads.sh covers it"
  exit 77
fi
if /sbin/ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  echo "SKIP: a CUDA driver library (libcuda.so.1) is installed; this test needs a machine without one"
  exit 77
fi
if [ ! -x "$workloads/gpurun-probe" ] || [ ! -x "$workloads/gpurun-bandwidth" ]; then
  echo "SKIP: the CUDA workloads were not built in $workloads (no nvcc when configuring)"
  exit 77
fi

for program in gpurun-probe gpurun-bandwidth; do
  set +e
  out=$("$workloads/$program" 2>&1)
  rc=$?
  set -e
  echo "$out"
  [ "$rc" = 3 ] || { echo "FAIL: $program exited with $rc, expected 3" >&2; exit 1; }
  expected="$program: no CUDA driver found (cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version); this machine needs an NVIDIA GPU with its driver (libcuda.so.1)"
  [ "$out" = "$expected" ] || { echo "FAIL: $program said: $out" >&2; echo "expected: $expected" >&2; exit 1; }
done
echo "PASS"
