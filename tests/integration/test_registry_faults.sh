#!/usr/bin/env bash
# Registry faults end to end: deploy pushes a 24 MiB incompressible layer to a real
# docker-registry through fault_proxy.py, which cuts a PATCH mid-body, answers 500s for a while or
# for good, or stalls. Each push either succeeds with a correct image (checked on the registry
# itself, not through the proxy) or fails in bounded time with a clear error, no tag and nothing
# recorded; a deploy after the faults are lifted uploads only what is missing.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"

source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "install it with scripts/bootstrap --test-deps" docker-registry python3 curl sha256sum

source "$HERE/registry.sh"
PIDS=()
stop_all() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done; stop_registries; cleanup; }
trap stop_all EXIT

start_registry R
REGISTRY="http://127.0.0.1:$PORT_R"

RULES="$TEST_DIR/rules.json"
LOG="$TEST_DIR/proxy.log"
python3 "$HERE/fault_proxy.py" --upstream "$REGISTRY" --port-file proxy.port --log "$LOG" --rules "$RULES" \
  > proxy.out 2>&1 &
PIDS+=($!)
wait_until 10 test -s proxy.port || { echo "the proxy did not start: $(cat proxy.out)"; exit 1; }
PROXY="http://127.0.0.1:$(cat proxy.port)"
wait_until 10 curl -sf -o /dev/null "$PROXY/v2/" || { echo "the proxy does not answer"; exit 1; }

mkdir -p config/gpurun app/data
cat > config/gpurun/config.yaml <<YAML
default_cloud: far
clouds:
  far: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "$PROXY"}
YAML
head -c $((24 * 1024 * 1024)) /dev/urandom > app/data/weights.bin
# manifest APP: an app whose image is scratch + the random file (one repository per app).
manifest() {
  cat > "app/$1.yaml" <<YAML
app: $1
images:
  big: {base: scratch, add: [./data]}
functions:
  f: {image: big, command: ["true"]}
YAML
}
export GPURUN_REGISTRY_TIMEOUT=2s
json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$2"; }
rules() { printf '%s\n' "$1" > "$RULES"; }
log_mark() { wc -l < "$LOG"; }
# proxy_sum MARK METHOD FIELD: the sum of FIELD over METHOD requests logged after line MARK.
proxy_sum() {
  tail -n +"$(($1 + 1))" "$LOG" | python3 -c "import json,sys; print(sum(r['$3'] for r in map(json.loads, sys.stdin) if r['method'] == '$2'))"
}
# proxy_count MARK METHOD STATUS
proxy_count() {
  tail -n +"$(($1 + 1))" "$LOG" | python3 -c "import json,sys; print(sum(1 for r in map(json.loads, sys.stdin) if r['method'] == '$2' and str(r['status']) == '$3'))"
}
# check_image APP: the registry itself (not the proxy) serves v1 of APP/big, and every blob of it
# has the digest its manifest names.
check_image() {
  local manifest digest blob
  manifest=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$REGISTRY/v2/$1/big/manifests/v1") ||
    { fail "$1: no manifest v1 on the registry"; return; }
  expect_eq "$1: manifest digest on the registry" "$DIGEST" "sha256:$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)"
  for digest in $(json '" ".join([d["config"]["digest"]] + [l["digest"] for l in d["layers"]])' "$manifest"); do
    blob=$(curl -sf "$REGISTRY/v2/$1/big/blobs/$digest" | sha256sum | cut -d' ' -f1)
    expect_eq "$1: blob $digest on the registry" "$digest" "sha256:$blob"
  done
}
# deploy APP: deploy --json of app APP; sets OUT ERR RC, and DIGEST, LAYER_SIZE, ELAPSED.
deploy() {
  local started=$SECONDS
  run_cmd deploy "app/$1.yaml" --json
  ELAPSED=$((SECONDS - started))
  DIGEST=""
  if [ "$RC" = 0 ]; then DIGEST=$(json 'd["image_pushes"][0]["digest"]' "$OUT"); fi
}
layer_size() { json 'max(l["size"] for l in d["layers"])' "$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$REGISTRY/v2/$1/big/manifests/v1")"; }

# --- no faults: the baseline through the proxy ---
manifest plain
rules '[]'
mark=$(log_mark)
deploy plain
expect_eq "no faults: rc ($ERR)" 0 "$RC"
check_image plain
LAYER=$(layer_size plain)
check; [ "$LAYER" -gt $((24 * 1024 * 1024)) ] || fail "the layer is compressible: $LAYER bytes"
PLAIN_PATCH=$(proxy_sum "$mark" PATCH forwarded)
check; [ "$PLAIN_PATCH" -gt "$LAYER" ] || fail "no faults: PATCH bodies ($PLAIN_PATCH) smaller than the layer ($LAYER)"

# --- the connection is cut 8 MiB into the layer's PATCH: the push goes on and succeeds ---
manifest dropped
CUT=$((8 * 1024 * 1024))
rules "[{\"method\": \"PATCH\", \"action\": \"drop\", \"bytes\": $CUT, \"after\": 1, \"times\": 1}]"
mark=$(log_mark)
deploy dropped
expect_eq "dropped connection: rc ($ERR)" 0 "$RC"
check_image dropped
expect_eq "dropped connection: one PATCH was cut" 1 "$(proxy_count "$mark" PATCH dropped)"
sent=$(proxy_sum "$mark" PATCH forwarded)
# What reached the registry: the cut part once, then the blob once more (Distribution 2.8 cancels
# an upload whose PATCH was cut, so it cannot be resumed; see docs/images.md). Never ~2x or more.
check; [ "$sent" -le $((PLAIN_PATCH + CUT)) ] || fail "dropped connection: $sent PATCH bytes forwarded, more than $PLAIN_PATCH + the $CUT cut"
check; [ "$sent" -lt $((LAYER * 3 / 2)) ] || fail "dropped connection: $sent PATCH bytes forwarded for a $LAYER byte layer"
reported=$(json 'd["image_pushes"][0]["bytes_uploaded"]' "$OUT")
check; [ "$reported" -ge "$PLAIN_PATCH" ] || fail "dropped connection: bytes_uploaded $reported hides the repeated part"

# --- transient 500s (two POSTs, then the layer's first PATCH) are retried with backoff ---
manifest flaky
rules '[{"method": "POST", "action": "error", "status": 500, "times": 2},
        {"method": "PATCH", "action": "error", "status": 503, "after": 1, "times": 1}]'
mark=$(log_mark)
deploy flaky
expect_eq "transient 500s: rc ($ERR)" 0 "$RC"
check_image flaky
expect_eq "transient 500s: POSTs answered 500" 2 "$(proxy_count "$mark" POST 500)"
expect_eq "transient 500s: PATCH answered 503" 1 "$(proxy_count "$mark" PATCH 503)"

# --- persistent 500 on the layer's PATCH: a clear error, no tag, nothing recorded ---
manifest broken
rules '[{"method": "PATCH", "action": "error", "status": 500, "after": 1}]'
deploy broken
expect_eq "persistent 500: rc (documented: 125)" 125 "$RC"
expect_contains "persistent 500: names the image, cloud, registry and repository" \
  "gpurun: error: pushing image 'big' to cloud 'far' (registry $PROXY, repository broken/big) failed: registry $PROXY: uploading sha256:" "$ERR"
expect_contains "persistent 500: what the server answered, what to check" \
  "to broken/big failed 4 times, the last with: HTTP 500 UNKNOWN (injected fault); check that the registry is healthy (its logs, free disk space) and try again; nothing was recorded" "$ERR"
expect_contains "persistent 500: no tag on the registry" "NAME_UNKNOWN" "$(curl -s "$REGISTRY/v2/broken/big/tags/list")"
run_cmd images --json
expect_not_contains "persistent 500: no image location recorded" '"broken"' "$OUT"
run_cmd deployments --all --json
expect_not_contains "persistent 500: no deployment recorded" '"broken"' "$OUT"

# --- faults lifted: the retry uploads only what is missing (the config got there before) ---
rules '[]'
mark=$(log_mark)
deploy broken
expect_eq "retry after 500s: rc ($ERR)" 0 "$RC"
check_image broken
expect_eq "retry after 500s: config skipped, layer uploaded" "1 1" \
  "$(json 'd["image_pushes"][0]["blobs_skipped"], d["image_pushes"][0]["blobs_uploaded"]' "$OUT" | tr -d '(),')"
LAYER_BROKEN=$(layer_size broken)
expect_eq "retry after 500s: bytes uploaded = the layer" "$LAYER_BROKEN" "$(json 'd["image_pushes"][0]["bytes_uploaded"]' "$OUT")"
expect_eq "retry after 500s: PATCH bytes through the proxy = the layer" "$LAYER_BROKEN" "$(proxy_sum "$mark" PATCH forwarded)"

# --- a stalled registry: the deploy gives up in bounded time, nothing tagged ---
manifest stalled
rules '[{"method": "PATCH", "action": "stall"}]'
deploy stalled
expect_eq "stall: rc" 125 "$RC"
check; [ "$ELAPSED" -le 40 ] || fail "stall: the deploy took ${ELAPSED}s with GPURUN_REGISTRY_TIMEOUT=2s"
expect_contains "stall: the error says the registry stalled" "the server stalled (nothing moved for 2 s); check that it is healthy and not overloaded" "$ERR"
expect_contains "stall: which push" "pushing image 'big' to cloud 'far' (registry $PROXY, repository stalled/big) failed" "$ERR"
expect_eq "stall: no tag on the registry" "" "$(curl -s "$REGISTRY/v2/stalled/big/tags/list" | grep -o '"v[0-9]*"')"
run_cmd images --json
expect_not_contains "stall: no image location recorded" '"stalled"' "$OUT"

# --- a malformed timeout is a usage error ---
OUT=$(GPURUN_REGISTRY_TIMEOUT=soon "$GPURUN" deploy app/stalled.yaml 2>&1); RC=$?
expect_eq "bad GPURUN_REGISTRY_TIMEOUT: rc" 2 "$RC"
expect_contains "bad GPURUN_REGISTRY_TIMEOUT: message" "GPURUN_REGISTRY_TIMEOUT='soon': expected a duration of at least 1s, such as 30s or 2m" "$OUT"

# --- stall lifted: the same deploy completes ---
rules '[]'
deploy stalled
expect_eq "stall lifted: rc ($ERR)" 0 "$RC"
check_image stalled

finish
