# require_tools INSTALL_HINT TOOL...: every TOOL must be installed (on PATH or in /usr/sbin). For a
# missing one the test exits 77 (skipped) with the reason, except under the test command
# (GPURUN_REQUIRE_TOOLS=1, set by tests/CMakeLists.txt), where it fails (exit 1): a missing tool
# must not pass as a skip there. Only GPU tests may skip under ctest (no GPU is not a missing tool).
require_tools() {
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 && continue
    [ -x "/usr/sbin/$tool" ] && continue
    if [ "${GPURUN_REQUIRE_TOOLS:-}" = 1 ]; then
      echo "FAIL: $tool is not installed and GPURUN_REQUIRE_TOOLS=1 requires it ($hint)" >&2
      exit 1
    fi
    echo "SKIP: $tool is not installed ($hint)"
    exit 77
  done
}
