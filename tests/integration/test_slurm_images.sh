#!/usr/bin/env bash
# Functions that run inside their images on a real Slurm cluster: `run` pushes the image to the
# cloud's registry (once), the batch script runs `gpurun node-exec`, which pulls the image by
# digest into a node-local cache and runs the command in it with bubblewrap.
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
require_tools "apt-get install slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin munge curl docker-registry bubblewrap busybox-static python3" \
  slurmctld slurmd slurmrestd munged sinfo scontrol curl docker-registry bwrap busybox python3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/registry.sh"
source "$HERE/slurm.sh"
trap 'stop_slurm_cluster; stop_registries; cleanup' EXIT
start_slurm_cluster
start_registry R
REGISTRY="http://127.0.0.1:$PORT_R"
CACHE=$CLUSTER/node-cache

write_slurm_config "    registry: \"$REGISTRY\"
    image_cache: $CACHE
  noregistry:
    backend: slurm
    endpoint: \"unix://$GPURUN_TEST_SLURM_SOCKET\"
    partition: aws
    log_dir: $CLUSTER/gpurun-logs"

mkdir -p app/src
python3 "$HERE/make_busybox_layout.py" app/base "$(command -v busybox)"
echo "only the image has this" > app/src/message.txt
cat > app/gpurun.yaml <<'YAML'
app: imgjobs
images:
  tiny:
    base: oci:./base
    add: [./src]
    env: {IMAGE_VAR: from-image}
volumes:
  shared: {}
functions:
  impossible:
    image: tiny
    volumes: {/etc/base-only.txt: shared}
    command: ["sh", "-c", "echo never"]
  writer:
    image: tiny
    volumes: {/data: shared}
    command: ["sh", "-c", "echo written-in-image > /data/note.txt"]
  reader:
    volumes: {/mnt/gpurun-test-volume: shared}
    command: ["sh", "-c", "cat /mnt/gpurun-test-volume/note.txt"]
  inside:
    image: tiny
    command: ["sh", "-c", "cat src/message.txt; pwd; echo image=$IMAGE_VAR fn=$FN_VAR part=$SLURM_JOB_PARTITION attempt=$GPURUN_ATTEMPT; [ ! -e /usr/bin/apt ] && echo no-host-files; echo login=${GPURUN_REGISTRY_PASSWORD:-none} pass=${GPURUN_PASS_ENV:-none}"]
    env: {FN_VAR: from-function}
  words:
    image: tiny
    command: ["sh", "-c", "printf '[%s]\\n' \"$@\"; printf 'env[%s]\\n' \"$TRICKY\"", "sh"]
  secret:
    image: tiny
    command: ["sh", "-c", "case $API_TOKEN in s3cr3t-*) echo secret-ok;; esac"]
    secrets: [svc]
  code:
    image: tiny
    command: ["sh", "-c", "exit 7"]
  gpujob:
    image: tiny
    gpu: T4:2
    command: ["sh", "-c", "echo devices=$CUDA_VISIBLE_DEVICES ld=$LD_LIBRARY_PATH"]
  nowhere:
    image: tiny
    cloud: noregistry
    command: ["true"]
YAML
cd app
export GPURUN_SECRET_SVC_API_TOKEN=s3cr3t-value

# --- dry run: the script runs gpurun node-exec with the image's digest; nothing is pushed ---
run_cmd run inside --dry-run
expect_eq "dry run: rc ($ERR)" 0 "$RC"
expect_contains "dry run: node-exec line" "node-exec --log $CLUSTER/gpurun-logs/DRYRUN.log --registry $REGISTRY --repository imgjobs/tiny --digest sha256:" "$OUT"
expect_contains "dry run: node-local cache" "--cache $CACHE --" "$OUT"
expect_contains "dry run: names passed into the image" '"GPURUN_PASS_ENV": "FN_VAR"' "$OUT"
expect_eq "dry run: nothing pushed" '{"repositories":[]}' "$(curl -s "$REGISTRY/v2/_catalog")"

# --- first run: pushes the image, the node pulls it and runs inside it ---
run_cmd run inside
expect_eq "first run: rc ($ERR)" 0 "$RC"
expect_contains "first run: pushed" "gpurun: image tiny pushed to $REGISTRY/imgjobs/tiny:" "$ERR"
expect_contains "first run: a file only the image has" "only the image has this" "$OUT"
expect_contains "first run: workdir" "/app" "$OUT"
expect_contains "first run: env of image, function and Slurm" "image=from-image fn=from-function part=aws attempt=1" "$OUT"
expect_contains "first run: the host's files are not there" "no-host-files" "$OUT"
expect_contains "first run: no registry login or plumbing in the workload" "login=none pass=none" "$OUT"
expect_contains "first run: the node pulled it" "gpurun: pulled image imgjobs/tiny@sha256:" "$ERR"
check; [ -n "$(ls "$CACHE/rootfs" 2>/dev/null)" ] || fail "no unpacked rootfs in the node cache $CACHE"
DIGEST=$(ls "$CACHE/rootfs" | head -1)
expect_contains "registry holds the short-digest tag" "\"${DIGEST:0:12}\"" "$(curl -s "$REGISTRY/v2/imgjobs/tiny/tags/list")"

# --- second run: no push, no pull ---
run_cmd run inside
expect_eq "second run: rc ($ERR)" 0 "$RC"
expect_not_contains "second run: nothing pushed" "pushed" "$ERR"
expect_not_contains "second run: nothing pulled" "pulled image" "$ERR"
expect_contains "second run: still inside" "only the image has this" "$OUT"
run_cmd images --json
expect_contains "images: the cloud holds it" '"aws"' "$OUT"

# --- argv and env values arrive verbatim; secrets reach the job only ---
tricky='a "quoted" $(echo x) `echo y` $HOME
second line'
run_cmd run words --env "TRICKY=$tricky" -- 'it'"'"'s' '$(id)' '`id`' "two
lines"
expect_eq "words: rc ($ERR)" 0 "$RC"
expect_contains "words: argv verbatim" "[it's]
[\$(id)]
[\`id\`]
[two
lines]" "$OUT"
expect_contains "words: env verbatim" "env[$tricky]" "$OUT"
run_cmd run secret
expect_eq "secret: rc ($ERR)" 0 "$RC"
expect_contains "secret: reached the workload" "secret-ok" "$OUT"
check; leaked=$(grep -rl "s3cr3t-value" "$CLUSTER/gpurun-logs" "$GPURUN_STATE_DIR" 2>/dev/null); [ -z "$leaked" ] || fail "the secret value was written to $leaked"

# --- exit codes pass through ---
run_cmd run code
expect_eq "code: exit code passes through" 7 "$RC"

# --- GPUs: Slurm's devices are visible inside, the driver library dir is on the path ---
run_cmd run gpujob
expect_eq "gpujob: rc ($ERR)" 0 "$RC"
check; [[ "$OUT" =~ devices=[0-9]+,[0-9]+ ]] || fail "gpujob: expected two CUDA_VISIBLE_DEVICES inside the image, got [$OUT]"
expect_contains "gpujob: driver libraries on LD_LIBRARY_PATH" "ld=/usr/local/nvidia/lib64" "$OUT"

# --- volumes live on the cluster's shared filesystem, bound at their paths in images and on hosts ---
run_cmd run writer
expect_eq "volume writer: rc ($ERR)" 0 "$RC"
expect_eq "volume: the file is on the shared filesystem" "written-in-image" "$(cat "$CLUSTER/gpurun-logs/volumes/imgjobs/shared/note.txt" 2>&1)"
run_cmd run reader
expect_eq "volume reader (host run): rc ($ERR)" 0 "$RC"
expect_contains "volume reader sees it" "written-in-image" "$OUT"
check; [ ! -e /mnt/gpurun-test-volume ] || fail "the mount point was made on the host"

# --- a sandbox bubblewrap cannot set up (a volume where the image has a file) is gpurun's failure ---
run_cmd run impossible
expect_eq "impossible mount: exit 125" 125 "$RC"
expect_contains "impossible mount: bubblewrap's message" "bwrap: Can't mkdir /etc/base-only.txt: Not a directory" "$ERR"
expect_contains "impossible mount: gpurun says what failed" "gpurun: error: the sandbox could not be set up" "$ERR"
expect_not_contains "impossible mount: the workload never ran" "never" "$OUT"

# --- the node cache must be private: one others can write is refused, nothing runs from it ---
chmod 0777 "$CACHE"
run_cmd run inside
expect_eq "cache writable by others: exit 125" 125 "$RC"
expect_contains "cache writable by others: the fix" "gpurun: error: the image cache $CACHE is writable by other users (mode 0777); run 'chmod go-w $CACHE'" "$ERR"
expect_not_contains "cache writable by others: nothing ran" "only the image has this" "$OUT"
chmod 0700 "$CACHE"
# A rootfs without its completion marker (planted, or a killed pull) is not trusted: pulled again.
HEX=$(ls "$CACHE/rootfs" | grep -v json | head -1)
rm "$CACHE/rootfs/$HEX.json"
echo planted > "$CACHE/rootfs/$HEX/app/src/message.txt"
run_cmd run inside
expect_eq "no marker: rc ($ERR)" 0 "$RC"
expect_contains "no marker: pulled again" "gpurun: pulled image imgjobs/tiny@sha256:" "$ERR"
expect_contains "no marker: the image's own file" "only the image has this" "$OUT"
check; [ -e "$CACHE/rootfs/$HEX.json" ] || fail "no completion marker after the pull"

# --- a cloud without a registry: a clear usage error before anything is submitted ---
run_cmd run nowhere
expect_eq "no registry: exit 125 (gpurun's own failure)" 125 "$RC"
expect_contains "no registry: message" "image 'tiny' is used on cloud 'noregistry', which has no registry to push it to; add 'registry: http(s)://HOST[:PORT]' to cloud 'noregistry'" "$ERR"

# --- the node cannot pull (registry gone): the run fails and says why ---
rm -rf "$CACHE"
stop_registries
run_cmd run inside
expect_eq "registry down: exit 125" 125 "$RC"
expect_contains "registry down: the job says why" "gpurun: error: pulling sha256:" "$ERR"
expect_contains "registry down: what to check" "check that this node reaches the registry" "$ERR"

finish
