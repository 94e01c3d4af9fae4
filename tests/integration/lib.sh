# Shared helpers for integration tests: each test gets its own temp dir, state and config.
set -u
: "${GPURUN:?GPURUN must point at the gpurun binary}"
TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-it-XXXXXX")
export GPURUN_STATE_DIR="$TEST_DIR/state" XDG_CONFIG_HOME="$TEST_DIR/config" XDG_CACHE_HOME="$TEST_DIR/cache"
unset GPURUN_CONFIG GPURUN_LOCAL_GPUS
FAILURES=0
CHECKS=0
cleanup() {
  # End supervisors this test left behind, then remove its files.
  # (a supervisor holds its run's lock file open for the run's lifetime)
  fuser -k -KILL "$GPURUN_STATE_DIR"/runs/*/lock >/dev/null 2>&1 || true
  rm -rf "$TEST_DIR"
}
trap cleanup EXIT
cd "$TEST_DIR"

fail() { echo "FAIL: $*" >&2; FAILURES=$((FAILURES + 1)); }
check() { CHECKS=$((CHECKS + 1)); }
# expect_eq WHAT EXPECTED ACTUAL
expect_eq() { check; [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"; }
# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() { check; case "$3" in *"$2"*) ;; *) fail "$1: [$2] not in [$3]" ;; esac; }
expect_not_contains() { check; case "$3" in *"$2"*) fail "$1: [$2] unexpectedly in [$3]" ;; *) ;; esac; }
# run_cmd: runs gpurun, capturing stdout in $OUT, stderr in $ERR and the exit code in $RC.
run_cmd() {
  OUT=$("$GPURUN" "$@" 2>"$TEST_DIR/.err"); RC=$?
  ERR=$(cat "$TEST_DIR/.err")
}
# wait_until SECONDS COMMAND...: polls until the command succeeds.
wait_until() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while ! "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.05
  done
}
finish() {
  if [ "$FAILURES" -gt 0 ]; then
    local passed=$((CHECKS - FAILURES)); [ "$passed" -lt 0 ] && passed=0
    echo "$passed passed, $FAILURES failed"
    exit 1
  fi
  echo "$CHECKS passed, 0 failed"
  exit 0
}
