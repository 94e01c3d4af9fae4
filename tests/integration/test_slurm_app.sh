#!/usr/bin/env bash
# Deployments, rollback, volumes and prune on a real Slurm cluster with a real docker-registry:
# a deployed image runs by its frozen digest after the folder changed and is gone, an unchanged
# deploy keeps its version, rollback runs the older digest, a volume lives on the cluster's
# shared filesystem (volume put/get/ls), a local volume is never handed to a Slurm job, and
# prune forgets ended Slurm runs with their log files and deletes a deleted app's manifests.
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
json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$2"; }

mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: aws
clouds:
  aws:
    backend: slurm
    endpoint: "unix://$GPURUN_TEST_SLURM_SOCKET"
    partition: aws
    gpus: ["T4:4"]
    gres: {T4: t4}
    log_dir: $CLUSTER/gpurun-logs
    registry: "http://127.0.0.1:$PORT_R"
    image_cache: $CLUSTER/node-cache
  local: {backend: local}
YAML
make_app() {
  mkdir -p app/src
  python3 "$HERE/make_busybox_layout.py" app/base "$(command -v busybox)"
  echo "$1" > app/src/message.txt
  cat > app/gpurun.yaml <<'YAML'
app: jobs
images:
  tiny: {base: oci:./base, add: [./src]}
volumes:
  data: {}
functions:
  show:
    image: tiny
    command: ["sh", "-c", "cat src/message.txt; cat /data/in.txt 2>/dev/null; echo from-the-job > /data/out.txt"]
    volumes: {/data: data}
YAML
}
make_app "slurm message one"

run_cmd deploy app/gpurun.yaml --json
expect_eq "deploy v1: rc ($ERR)" 0 "$RC"
D1=$(json 'd["image_pushes"][0]["digest"]' "$OUT")
expect_eq "deploy v1: volume on the shared filesystem" "aws $CLUSTER/gpurun-logs/volumes/jobs/data" \
  "$(json 'd["volumes"][0]["cloud"] + " " + d["volumes"][0]["path"]' "$OUT")"
run_cmd deploy app/gpurun.yaml
expect_contains "deploy again: unchanged" "gpurun: jobs unchanged (v1)" "$ERR"

echo "put from here" > in.txt
run_cmd volume put jobs/data in.txt
expect_eq "volume put: rc ($ERR)" 0 "$RC"
echo "never deployed" > app/src/message.txt
mkdir elsewhere && cd elsewhere
run_cmd run jobs/show
expect_eq "run deployed on Slurm: rc ($ERR)" 0 "$RC"
expect_contains "run deployed on Slurm: frozen image" "slurm message one" "$OUT"
expect_contains "run deployed on Slurm: the put file" "put from here" "$OUT"
rm -rf ../app
run_cmd run jobs/show
expect_eq "run with the folder gone: rc ($ERR)" 0 "$RC"
expect_contains "run with the folder gone: frozen image" "slurm message one" "$OUT"
run_cmd volume get jobs/data out.txt
expect_eq "volume get: the job's file" "from-the-job" "$(cat out.txt 2>/dev/null)"
cd ..

make_app "slurm message two"
run_cmd deploy app/gpurun.yaml --json
expect_eq "deploy v2: version" 2 "$(json 'd["version"]' "$OUT")"
run_cmd run jobs/show
expect_contains "run v2" "slurm message two" "$OUT"
run_cmd app rollback jobs
expect_eq "rollback: rc ($ERR)" 0 "$RC"
run_cmd run jobs/show
expect_eq "run after rollback: rc ($ERR)" 0 "$RC"
expect_contains "run after rollback: v1's digest" "slurm message one" "$OUT"
run_cmd app history jobs --json
expect_eq "history: v3 is a rollback to v1's digest" "rollback to v1 $D1" "$(json 'd[2]["changes"][0] + " " + d[2]["images"][0]["digest"]' "$OUT")"

# A volume created locally is never handed to a Slurm job.
cat > split.yaml <<'YAML'
app: split
volumes: {v: {}}
functions:
  near: {command: ["true"], cloud: local, volumes: {/v: v}}
  far: {command: ["true"], cloud: aws, volumes: {/v: v}}
YAML
run_cmd run -f split.yaml near
expect_eq "split: local run creates the volume ($ERR)" 0 "$RC"
run_cmd run -f split.yaml far
expect_eq "split: Slurm run refused: rc" 125 "$RC"
expect_eq "split: Slurm run refused" "gpurun: error: function 'far' runs on cloud 'aws' but mounts volume 'v', which lives on cloud 'local' ($GPURUN_STATE_DIR/volumes/split/v) where 'aws' cannot reach it; add 'cloud: local' to the function, or move the volume: copy its files out ('gpurun volume get split/v / DIR'), remove it ('gpurun volume rm split/v') and deploy again" "$(tail -n 1 <<<"$ERR")"
run_cmd volume ls --json
expect_eq "volume ls: both volumes" "jobs/data@aws split/v@local" "$(json '" ".join(v["app"] + "/" + v["name"] + "@" + v["cloud"] for v in d)' "$OUT")"

# Delete, then prune: the Slurm runs' log files and the registry manifests go.
run_cmd app delete jobs --yes
expect_eq "app delete: rc ($ERR)" 0 "$RC"
logs_before=$(ls "$CLUSTER/gpurun-logs" | grep -c '\.log$')
check; [ "$logs_before" -ge 4 ] || fail "expected Slurm run logs before prune, got $logs_before"
run_cmd prune --older-than 0s --yes
expect_eq "prune: rc ($ERR)" 0 "$RC"
expect_contains "prune: registry manifests" "2 registry manifests" "$OUT"
expect_eq "prune: Slurm run logs gone" "0" "$(ls "$CLUSTER/gpurun-logs" | grep -c '\.log$')"
expect_eq "prune: ps --all is empty" "[]" "$("$GPURUN" ps --all --json | tr -d ' \n')"
expect_eq "prune: v1's manifest deleted" "404" \
  "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$PORT_R/v2/jobs/tiny/manifests/$D1")"
expect_contains "prune: the volume stays" "jobs/data@aws" "$("$GPURUN" volume ls --json | python3 -c 'import json,sys; print(" ".join(v["app"]+"/"+v["name"]+"@"+v["cloud"] for v in json.load(sys.stdin)))')"
finish
