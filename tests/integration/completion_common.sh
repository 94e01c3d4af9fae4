# Shared by test_completion_*.sh (sourced, not a test itself): installs gpurun with its completion
# scripts into a temp prefix (cmake --install), makes a work dir with files, a manifest and a
# config, and offers check helpers. Needs GPURUN (the built binary; ctest sets it).
set -euo pipefail
: "${GPURUN:?GPURUN must name the gpurun binary (ctest sets it)}"
build_dir=${GPURUN_BUILD_DIR:-$(dirname "$GPURUN")}
source_dir=${GPURUN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-completion-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
prefix=$tmp/prefix
export PATH="$prefix/bin:$PATH"
export GPURUN_STATE_DIR=$tmp/state XDG_CONFIG_HOME=$tmp/xdg-config XDG_CACHE_HOME=$tmp/xdg-cache
unset GPURUN_CONFIG

work=$tmp/work
mkdir -p "$work/examples"
cd "$work"
touch example.yaml extra.txt
cat >gpurun.yaml <<'YAML'
app: demo
functions:
  prep:
    command: [sh, -c, "echo prep"]
  train:
    command: [sh, -c, "echo train"]
  eval:
    command: [sh, -c, "echo eval"]
YAML
config=$work/config.yaml
cat >"$config" <<'YAML'
default_cloud: gcp
clouds:
  gcp:
    backend: local
  gke:
    backend: local
YAML

# True when `gpurun --help` lists the command (commands are being added on other branches).
has_command() { gpurun --help | grep -qE "^  $1( |\$)"; }
# True when `gpurun COMMAND --help` shows FLAG.
has_flag() { has_command "$1" && gpurun "$1" --help | grep -qE -- "(^|[ ,])$2([ ,=]|\$)"; }
skip_note() { echo "SKIP (this assertion): $*"; }

# Creates three runs (prep, train, eval, oldest first) in $GPURUN_STATE_DIR with the sqlite3 CLI
# and the schema of cloud/state/state.cpp; prints their ids newest first.
seed_runs() {
  mkdir -p "$GPURUN_STATE_DIR/runs"
  local schema version now
  schema=$(sed -n '/schema_sql = R"sql(/,/)sql";/p' "$source_dir/cloud/state/state.cpp" | sed '1d;$d')
  version=$(sed -n 's/^constexpr int schema_version = \([0-9]*\);/\1/p' "$source_dir/cloud/state/state.cpp")
  now=$(($(date +%s) * 1000))
  {
    echo "$schema"
    echo "PRAGMA user_version=$version;"
    local i=0 f
    for f in prep train eval; do
      echo "INSERT INTO runs(id, app, function, cloud, backend, status, created_at) VALUES('r0000000${i}seed', 'demo', '$f', 'local', 'local', 'succeeded', $((now + i)));"
      i=$((i + 1))
    done
  } | sqlite3 "$GPURUN_STATE_DIR/state.db"
  printf '%s\n' r00000002seed r00000001seed r00000000seed
}

failures=0
# check_exact WHAT ACTUAL EXPECTED: the candidates, one per line, exactly (order included).
check_exact() {
  if [ "$2" = "$3" ]; then
    echo "ok: $1"
  else
    echo "FAIL: $1"; echo "  expected: $(echo "$3" | tr '\n' ' ')"; echo "  got:      $(echo "$2" | tr '\n' ' ')"
    failures=$((failures + 1))
  fi
}
# check_has WHAT ACTUAL ITEM...: each item is one of the candidate lines.
check_has() {
  local what=$1 actual=$2 item missing=()
  shift 2
  for item in "$@"; do
    grep -qxF -- "$item" <<<"$actual" || missing+=("$item")
  done
  if [ "${#missing[@]}" = 0 ]; then
    echo "ok: $what"
  else
    echo "FAIL: $what: missing ${missing[*]}"; echo "  got: $(echo "$actual" | tr '\n' ' ')"
    failures=$((failures + 1))
  fi
}
# check_lacks WHAT ACTUAL ITEM...: no candidate line is one of the items.
check_lacks() {
  local what=$1 actual=$2 item found=()
  shift 2
  for item in "$@"; do
    grep -qxF -- "$item" <<<"$actual" && found+=("$item")
  done
  if [ "${#found[@]}" = 0 ]; then
    echo "ok: $what"
  else
    echo "FAIL: $what: unexpected ${found[*]}"
    failures=$((failures + 1))
  fi
}
finish() {
  if [ "$failures" = 0 ]; then echo PASS; else echo "$failures check(s) failed"; exit 1; fi
}
