#!/usr/bin/env bash
# Images end to end against real registries (Debian's docker-registry on loopback): deploy pushes,
# a no-change redeploy uploads nothing, one changed file uploads one layer, the same image goes to
# two registries, a registry base is mounted or copied, plan's upload_to empties, a wrong password
# fails clearly and records nothing, and the local backend runs a function inside the image.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "install it with scripts/bootstrap --test-deps" docker-registry bwrap busybox htpasswd python3 curl

source "$HERE/registry.sh"
trap 'stop_registries; cleanup' EXIT

start_registry A
start_registry B
start_registry C "$(htpasswd -Bbn pusher right-password)"

json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$2"; }

mkdir -p app/src
python3 "$HERE/make_busybox_layout.py" app/base "$(command -v busybox)"
echo "only the image has this, version 1" > app/src/message.txt
mkdir -p config/gpurun
cat > config/gpurun/config.yaml <<YAML
default_cloud: local
clouds:
  local: {backend: local}
  hpc1: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "http://127.0.0.1:$PORT_A"}
  hpc2: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "http://127.0.0.1:$PORT_B"}
  locked: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "http://127.0.0.1:$PORT_C"}
  bare: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p}
YAML
cat > app/gpurun.yaml <<'YAML'
app: demo
images:
  tiny:
    base: oci:./base
    add: [./src]
    env: {FUNCTION_VAR: from-image}
functions:
  here:
    image: tiny
    cloud: local
    command: ["sh", "-c", "cat src/message.txt; echo $BASE_VAR $FUNCTION_VAR $CALLER; pwd; cat /etc/base-only.txt; ls /etc /opt; [ ! -e /usr/bin/apt ] && echo no-host-files"]
    env: {CALLER: from-function}
  there:
    image: tiny
    cloud: hpc1
    command: ["sh", "-c", "cat src/message.txt"]
  elsewhere:
    image: tiny
    cloud: hpc2
    command: ["sh", "-c", "cat src/message.txt"]
YAML
cd app

# --- plan before any deploy: every cloud needs the image ---
run_cmd plan --json
expect_eq "plan before deploy: rc" 0 "$RC"
expect_eq "plan before deploy: upload_to" "['local', 'hpc1', 'hpc2']" "$(json 'd["images"][0]["upload_to"]' "$OUT")"

# --- first deploy pushes everything to both registries ---
run_cmd deploy --json
expect_eq "first deploy: rc ($ERR)" 0 "$RC"
for cloud in hpc1 hpc2; do
  entry="[p for p in d['image_pushes'] if p['cloud'] == '$cloud'][0]"
  expect_eq "first deploy to $cloud: blobs uploaded, skipped" "4 0" "$(json "$entry['blobs_uploaded'], $entry['blobs_skipped']" "$OUT" | tr -d '(),')"
  check; [ "$(json "$entry['bytes_uploaded']" "$OUT")" -gt 500000 ] || fail "first deploy to $cloud uploaded too little"
done
DIGEST1=$(json 'd["image_pushes"][0]["digest"]' "$OUT")
expect_contains "progress: one line per finished blob (not a tty)" "gpurun: tiny -> hpc1: sha256:" "$ERR"
expect_contains "summary line" "gpurun: image tiny pushed to http://127.0.0.1:$PORT_A/demo/tiny:v1" "$ERR"
tags=$(curl -s "http://127.0.0.1:$PORT_B/v2/demo/tiny/tags/list")
expect_contains "tag: v1 on registry B" '"v1"' "$tags"
expect_contains "tag: short digest on registry B" "\"${DIGEST1:7:12}\"" "$tags"

# --- plan after deploy: nothing to upload ---
run_cmd plan --json
expect_eq "plan after deploy: upload_to empty" "[]" "$(json 'd["images"][0]["upload_to"]' "$OUT")"
run_cmd plan
expect_contains "plan table: UPLOAD TO is -" "tiny   local,hpc1,hpc2  -" "$OUT"

# --- no-change redeploy uploads 0 bytes ---
run_cmd deploy --json
expect_eq "redeploy: rc ($ERR)" 0 "$RC"
expect_eq "redeploy: bytes uploaded" "0 0" "$(json '[p["bytes_uploaded"] for p in d["image_pushes"] if p["cloud"] != "local"]' "$OUT" | tr -d '[],')"
expect_eq "redeploy: same digest" "$DIGEST1" "$(json 'd["image_pushes"][0]["digest"]' "$OUT")"
expect_eq "redeploy: unchanged keeps the version" "True 1" "$(json 'd["unchanged"], d["version"]' "$OUT" | tr -d '(),')"
expect_not_contains "redeploy: no new version tag" '"v2"' "$(curl -s "http://127.0.0.1:$PORT_A/v2/demo/tiny/tags/list")"

# --- one changed file: one layer (and the config) uploaded, the base skipped ---
echo "only the image has this, version 2" > src/message.txt
run_cmd plan --json
expect_eq "plan after a change: upload again" "['local', 'hpc1', 'hpc2']" "$(json 'd["images"][0]["upload_to"]' "$OUT")"
run_cmd deploy --json
expect_eq "changed deploy: rc ($ERR)" 0 "$RC"
entry="[p for p in d['image_pushes'] if p['cloud'] == 'hpc1'][0]"
expect_eq "changed deploy: uploaded config + one layer, skipped the two base layers" "2 2" "$(json "$entry['blobs_uploaded'], $entry['blobs_skipped']" "$OUT" | tr -d '(),')"
check; [ "$(json "$entry['bytes_uploaded']" "$OUT")" -lt 10000 ] || fail "changed deploy uploaded more than the small layer"
DIGEST2=$(json "$entry['digest']" "$OUT")
expect_contains "changed deploy: tag v2" '"v2"' "$(curl -s "http://127.0.0.1:$PORT_A/v2/demo/tiny/tags/list")"
check; [ "$DIGEST2" != "$DIGEST1" ] || fail "the digest did not change"

# --- gpurun images ---
run_cmd images --json
expect_eq "images: rc" 0 "$RC"
expect_eq "images: newest digest and its clouds" "$DIGEST2 hpc1,hpc2,local" \
  "$(json "[e['digest'] + ' ' + ','.join(sorted(c['cloud'] for c in e['clouds'])) for e in d if e['digest'] == '$DIGEST2'][0]" "$OUT")"
run_cmd images
expect_contains "images table" "demo  tiny   ${DIGEST2:0:19}" "$OUT"

# --- the local backend runs the function inside the image ---
run_cmd run here
expect_eq "run in image: rc ($ERR)" 0 "$RC"
expect_contains "run in image: a file only the image has" "only the image has this, version 2" "$OUT"
expect_contains "run in image: env (base, image, function)" "from-base from-image from-function" "$OUT"
expect_contains "run in image: cwd is the image workdir" "/app" "$OUT"
expect_contains "run in image: base layer file" "from the base" "$OUT"
expect_not_contains "run in image: whiteout removed the file" "removed.txt" "$OUT"
expect_not_contains "run in image: opaque directory hides the lower layer" "old.txt" "$OUT"
expect_contains "run in image: upper layer file in the opaque directory" "new.txt" "$OUT"
expect_contains "run in image: no host files" "no-host-files" "$OUT"
check; [ "$(ls "$GPURUN_STATE_DIR/images/rootfs" | wc -l)" -ge 1 ] || fail "no unpacked rootfs in the cache"

# --- volumes in an image run: mount points are made per run, never in the shared unpacked rootfs ---
cat > mounts.yaml <<'YAML'
app: mounts
images:
  tiny:
    base: oci:./base
    add: [./src]
    env: {FUNCTION_VAR: from-image}
volumes:
  shared: {}
functions:
  mounted:
    image: tiny
    cloud: local
    volumes: {/data/deep: shared, /etc/conf.d: shared}
    command: ["sh", "-c", "echo from-volume > /data/deep/f; cat /etc/conf.d/f; ls /etc/conf.d; cat /etc/base-only.txt; ls /data"]
  impossible:
    image: tiny
    cloud: local
    volumes: {/etc/base-only.txt: shared}
    command: ["sh", "-c", "echo never"]
YAML
rootfs_before=$(cd "$GPURUN_STATE_DIR/images/rootfs" && find . -printf '%p %y %m\n' | sort)
run_cmd run -f mounts.yaml mounted
expect_eq "image run with volumes: rc ($ERR)" 0 "$RC"
expect_eq "image run with volumes: the volume at its paths, the image's files beside them" \
  "$(printf 'from-volume\nf\nfrom the base\ndeep')" "$OUT"
expect_eq "image run with volumes: the unpacked rootfs is unchanged (no mount points left in it)" \
  "$rootfs_before" "$(cd "$GPURUN_STATE_DIR/images/rootfs" && find . -printf '%p %y %m\n' | sort)"
# A volume (a directory) where the image has a file: the sandbox cannot be set up. That is
# gpurun's failure (125) with bubblewrap's message, not the workload's.
run_cmd run -f mounts.yaml impossible
expect_eq "impossible mount: rc" 125 "$RC"
expect_contains "impossible mount: bubblewrap's message" \
  "run failed to set up its sandbox: bwrap: Can't mkdir /etc/base-only.txt: Not a directory" "$ERR"
expect_not_contains "impossible mount: not the workload's exit code" "exit code 1" "$ERR"
run_cmd ps --all --json
expect_contains "impossible mount: the reason is in the state" \
  "failed to set up its sandbox: bwrap: Can't mkdir /etc/base-only.txt: Not a directory" "$OUT"

# --- a registry base copied to another registry is streamed: not written to the local store ---
cat > copied.yaml <<YAML
app: copied
images:
  child:
    base: 127.0.0.1:$PORT_A/demo/tiny:v1
    add: [./src]
functions:
  two: {image: child, cloud: hpc2, command: ["sh", "-c", "cat /etc/base-only.txt"]}
YAML
base_manifest=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$PORT_A/v2/demo/tiny/manifests/v1")
BASE_LAYERS=$(json '" ".join(l["digest"] for l in d["layers"][:2])' "$base_manifest")
# deploy froze demo's oci: base layers into the store; a store without them shows that a copy
# from a registry base streams them and never writes them here.
for digest in $BASE_LAYERS; do rm -f "$GPURUN_STATE_DIR/images/blobs/sha256/${digest#sha256:}"; done
for digest in $BASE_LAYERS; do
  check; [ ! -e "$GPURUN_STATE_DIR/images/blobs/sha256/${digest#sha256:}" ] || fail "base layer $digest in the store before the copy"
done
run_cmd deploy copied.yaml --json
expect_eq "streamed copy: rc ($ERR)" 0 "$RC"
expect_eq "streamed copy: every base layer uploaded, none mounted" "0 5" \
  "$(json 'd["image_pushes"][0]["blobs_mounted"], d["image_pushes"][0]["blobs_uploaded"]' "$OUT" | tr -d '(),')"
for digest in $BASE_LAYERS; do
  check; [ ! -e "$GPURUN_STATE_DIR/images/blobs/sha256/${digest#sha256:}" ] || fail "streamed copy: base layer $digest was written to the local store"
  expect_eq "streamed copy: $digest on registry B has its digest" "$digest" \
    "sha256:$(curl -s "http://127.0.0.1:$PORT_B/v2/copied/child/blobs/$digest" | sha256sum | cut -d' ' -f1)"
done
check; [ -z "$(ls "$GPURUN_STATE_DIR/images/blobs/sha256" | grep -e '\.part' -e '\.tmp')" ] || fail "streamed copy: temporary files left in the store"

# --- a registry base: mounted on the same registry, copied blob by blob to another ---
cat > derived.yaml <<YAML
app: derived
images:
  child:
    base: 127.0.0.1:$PORT_A/demo/tiny:v1
    add: [./src]
functions:
  one: {image: child, cloud: hpc1, command: ["sh", "-c", "cat /etc/base-only.txt"]}
  two: {image: child, cloud: hpc2, command: ["sh", "-c", "cat /etc/base-only.txt"]}
  three: {image: child, cloud: local, command: ["sh", "-c", "cat /etc/base-only.txt; cat src/message.txt"]}
YAML
run_cmd deploy derived.yaml --json
expect_eq "registry base deploy: rc ($ERR)" 0 "$RC"
entry="[p for p in d['image_pushes'] if p['cloud'] == 'hpc1'][0]"
expect_eq "registry base, same registry: base layers mounted" "3" "$(json "$entry['blobs_mounted']" "$OUT")"
entry="[p for p in d['image_pushes'] if p['cloud'] == 'hpc2'][0]"
expect_eq "registry base, other registry: base layers copied" "0 5" "$(json "$entry['blobs_mounted'], $entry['blobs_uploaded']" "$OUT" | tr -d '(),')"
run_cmd run -f derived.yaml three
expect_eq "run on a registry base: rc ($ERR)" 0 "$RC"
expect_contains "run on a registry base" "from the base" "$OUT"

# --- a slurm cloud without a registry ---
sed 's/cloud: hpc2/cloud: bare/' gpurun.yaml > bare.yaml
run_cmd deploy bare.yaml
expect_eq "no registry: rc" 2 "$RC"
expect_contains "no registry: names the fix" "image 'tiny' is used on cloud 'bare', which has no registry to push it to; add 'registry: http(s)://HOST[:PORT]' to cloud 'bare' in" "$ERR"

# --- wrong password: a clear error, nothing recorded ---
sed 's/cloud: hpc2/cloud: locked/' gpurun.yaml > locked.yaml
before=$("$GPURUN" deployments --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
OUT=$(GPURUN_REGISTRY_USER=pusher GPURUN_REGISTRY_PASSWORD=wrong-secret-pw "$GPURUN" deploy locked.yaml 2>"$TEST_DIR/.err"); RC=$?
ERR=$(cat "$TEST_DIR/.err")
expect_eq "wrong password: rc" 125 "$RC"
expect_contains "wrong password: which image, cloud, registry" "pushing image 'tiny' to cloud 'locked' (registry http://127.0.0.1:$PORT_C, repository demo/tiny) failed: registry http://127.0.0.1:$PORT_C: authentication failed (HTTP 401" "$ERR"
expect_contains "wrong password: what to check" "check the username and password (GPURUN_REGISTRY_USER and GPURUN_REGISTRY_PASSWORD" "$ERR"
expect_not_contains "wrong password: never printed" "wrong-secret-pw" "$ERR$OUT"
after=$("$GPURUN" deployments --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
expect_eq "wrong password: no deployment recorded" "$before" "$after"
run_cmd images --json
expect_not_contains "wrong password: no image location recorded" '"locked"' "$OUT"
expect_eq "wrong password: no tag on the registry" "" "$(curl -s -u pusher:right-password "http://127.0.0.1:$PORT_C/v2/demo/tiny/tags/list" | grep -o '"v[0-9]*"')"

# --- the right password from ~/.docker/config.json ---
mkdir -p "$TEST_DIR/home/.docker"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$PORT_C" "$(printf 'pusher:right-password' | base64)" > "$TEST_DIR/home/.docker/config.json"
OUT=$(HOME="$TEST_DIR/home" "$GPURUN" deploy locked.yaml --json 2>"$TEST_DIR/.err"); RC=$?
ERR=$(cat "$TEST_DIR/.err")
expect_eq "docker config login: rc ($ERR)" 0 "$RC"
expect_contains "docker config login: pushed" '"cloud": "locked"' "$OUT"

finish
