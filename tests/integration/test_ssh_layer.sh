#!/usr/bin/env bash
# The SSH layer (cloud/ssh/) against a real sshd on loopback (tests/fixtures/sshd.sh): exit status,
# fish login shell with noisy rc files, quoting, secrets off every command line, connection
# sharing, every ssh failure (unknown/changed host key, refused key, unreachable), remote files,
# following a file across a dropped connection,
# gpurun copied to the remote side (ensure_remote_gpurun), directories synced (sync_directory). The cases are tests/ssh/ssh_layer_test.cpp.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/require_tools.sh"
require_tools "install openssh-server openssh-client fish" sshd ssh ssh-keygen fish useradd
: "${GPURUN_SSH_LAYER_TESTS:=$(dirname "$GPURUN")/tests/gpurun_ssh_layer_tests}"
: "${GPURUN_TEST_NEEDS_ABSENT:=$(dirname "$GPURUN")/tests/gpurun_test_needs_absent}"
export GPURUN GPURUN_TEST_NEEDS_ABSENT
[ -x "$GPURUN_TEST_NEEDS_ABSENT" ] || { echo "FAIL: $GPURUN_TEST_NEEDS_ABSENT is not built (ninja -C build gpurun_test_needs_absent)" >&2; exit 1; }
[ -x "$GPURUN_SSH_LAYER_TESTS" ] || { echo "FAIL: $GPURUN_SSH_LAYER_TESTS is not built (ninja -C build gpurun_ssh_layer_tests)" >&2; exit 1; }

FIXTURE="$GPURUN_SOURCE_DIR/tests/fixtures/sshd.sh"
chmod 755 "$TEST_DIR"  # the login user reads the authorized keys under it
trap 'bash "$FIXTURE" stop "$TEST_DIR/sshd"; cleanup' EXIT
bash "$FIXTURE" start "$TEST_DIR/sshd" || { echo "FAIL: the sshd fixture did not start" >&2; exit 1; }
eval "$(bash "$FIXTURE" env "$TEST_DIR/sshd")"

check
if ! "$GPURUN_SSH_LAYER_TESTS"; then
  fail "the SSH layer cases (tests/ssh/ssh_layer_test.cpp) failed"
fi

# Without the fixture's variables the cases fail instead of passing silently.
check
if env -u GPURUN_TEST_SSH_HOST -u GPURUN_TEST_SSH_KEY "$GPURUN_SSH_LAYER_TESTS" -tc='*exit status*' >/dev/null 2>&1; then
  fail "the SSH layer cases passed without an sshd"
fi
finish
