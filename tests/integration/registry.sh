# Registry helpers for integration tests (source after lib.sh): Debian's docker-registry on
# loopback, each with its own config, random free port and temp storage.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REGISTRY_PIDS=()
# start_registry NAME [HTPASSWD_LINE]: starts a registry with its own storage; sets PORT_<NAME>.
# REGISTRY_DELETE=false starts one that refuses deletes (HTTP 405 UNSUPPORTED).
start_registry() {
  local name=$1 auth=${2:-} port dir
  port=$(free_port)
  dir="$TEST_DIR/registry-$name"
  mkdir -p "$dir"
  {
    echo "version: 0.1"
    echo "storage: {filesystem: {rootdirectory: $dir/storage}, delete: {enabled: ${REGISTRY_DELETE:-true}}}"
    echo "http: {addr: 127.0.0.1:$port, secret: gpurun-test}"
    echo "log: {level: error}"
    if [ -n "$auth" ]; then
      echo "$auth" > "$dir/htpasswd"
      echo "auth: {htpasswd: {realm: gpurun-test, path: $dir/htpasswd}}"
    fi
  } > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  REGISTRY_PIDS+=($!)
  eval "PORT_$name=$port"
  wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$port/v2/" || { echo "registry $name did not start"; exit 1; }
}
# stop_registries: ends every registry this test started.
stop_registries() { for pid in "${REGISTRY_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done; }
