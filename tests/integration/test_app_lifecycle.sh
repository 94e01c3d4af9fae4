#!/usr/bin/env bash
# Deployments as immutable snapshots on the local backend, with a real docker-registry: a deployed
# app runs its frozen image even after its folder changed or is gone, an unchanged deploy keeps
# its version, app history/rollback/delete, volumes (ls/put/get/rm, and a volume a function's
# cloud cannot reach is an error), and prune (runs, logs, images, registry manifests).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"
source "$HERE/require_tools.sh"
require_tools "install it with scripts/bootstrap --test-deps" docker-registry bwrap busybox python3 curl
source "$HERE/registry.sh"
trap 'stop_registries; cleanup' EXIT
start_registry A
REGISTRY_DELETE=false start_registry B
json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$2"; }

mkdir -p config/gpurun
cat > config/gpurun/config.yaml <<YAML
default_cloud: local
clouds:
  local: {backend: local}
  hpc1: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "http://127.0.0.1:$PORT_A"}
  nodelete: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "http://127.0.0.1:$PORT_B"}
YAML
make_app() {
  mkdir -p app/src
  python3 "$HERE/make_busybox_layout.py" app/base "$(command -v busybox)"
  echo "$1" > app/src/message.txt
  cat > app/gpurun.yaml <<'YAML'
app: demo
images:
  tiny: {base: oci:./base, add: [./src]}
volumes:
  data: {}
functions:
  show:
    image: tiny
    cloud: local
    command: ["sh", "-c", "cat src/message.txt; cat /data/note.txt 2>/dev/null; echo written > /data/out.txt"]
    volumes: {/data: data}
  remote:
    image: tiny
    cloud: hpc1
    command: ["true"]
  sleeper:
    cloud: local
    command: ["sleep", "60"]
YAML
}
make_app "message one"

# --- deploy freezes the images; an unchanged deploy keeps the version ---
run_cmd deploy app/gpurun.yaml --json
expect_eq "deploy v1: rc ($ERR)" 0 "$RC"
expect_eq "deploy v1: version, unchanged" "1 False" "$(json 'd["version"], d["unchanged"]' "$OUT" | tr -d '(),')"
D1=$(json '[p["digest"] for p in d["image_pushes"]][0]' "$OUT")
run_cmd deploy app/gpurun.yaml
expect_eq "deploy again: rc ($ERR)" 0 "$RC"
expect_contains "deploy again: unchanged" "gpurun: demo unchanged (v1): nothing new to deploy" "$ERR"
run_cmd app history demo --json
expect_eq "history after an unchanged deploy: one version" "1" "$(json 'len(d)' "$OUT")"

# --- an edit that was never deployed does not run; neither does a deleted folder ---
echo "message two, not deployed" > app/src/message.txt
mkdir elsewhere && cd elsewhere
run_cmd run demo/show
expect_eq "run deployed: rc ($ERR)" 0 "$RC"
expect_contains "run deployed: the frozen image" "message one" "$OUT"
rm -rf ../app
run_cmd run demo/show
expect_eq "run with the folder gone: rc ($ERR)" 0 "$RC"
expect_contains "run with the folder gone: the frozen image" "message one" "$OUT"
cd ..

# --- v2, history, rollback ---
make_app "message two"
run_cmd deploy app/gpurun.yaml --json
expect_eq "deploy v2: version" "2" "$(json 'd["version"]' "$OUT")"
run_cmd app history demo --json
expect_eq "history: versions and changes" "[1, 2] ['first deploy'] ['image tiny']" \
  "$(json '[v["version"] for v in d], d[0]["changes"], d[1]["changes"]' "$OUT" | sed 's/^(//; s/)$//; s/], /] /g')"
expect_eq "history: frozen digest of v1" "$D1" "$(json 'd[0]["images"][0]["digest"]' "$OUT")"
cd elsewhere
run_cmd run demo/show
expect_contains "run v2" "message two" "$OUT"
cd ..
run_cmd app rollback demo
expect_eq "rollback: rc ($ERR)" 0 "$RC"
expect_eq "rollback: message" "gpurun: app demo rolled back to v1, recorded as v3" "$ERR"
run_cmd app history demo
expect_contains "history table: rollback" "rollback to v1" "$OUT"
run_cmd run demo/show
expect_contains "run after rollback: v1's image" "message one" "$OUT"
run_cmd app rollback demo v9
expect_eq "rollback to a missing version: rc" 2 "$RC"
expect_eq "rollback to a missing version: error" \
  "gpurun: error: app 'demo' has no version 9; its versions are v1 to v3 ('gpurun app history demo')" "$ERR"
run_cmd app list --json
expect_eq "app list: newest version" "demo 3" "$(json 'd[0]["app"] + " " + str(d[0]["version"])' "$OUT")"

# --- volumes ---
run_cmd volume ls --json
expect_eq "volume ls" "data demo local $GPURUN_STATE_DIR/volumes/demo/data" \
  "$(json 'd[0]["name"] + " " + d[0]["app"] + " " + d[0]["cloud"] + " " + d[0]["where"]' "$OUT")"
run_cmd plan app/gpurun.yaml
expect_contains "plan: where the volume lives and why" "data    local  created there earlier; a volume stays where it was created" "$OUT"

# --- completion offers app names, versions and volume names ---
run_cmd __complete app rollback demo ""
expect_eq "complete: versions, newest first" "3 2 1" "$(tail -n +2 <<<"$OUT" | cut -f1 | tr '\n' ' ' | sed 's/ $//')"
run_cmd __complete app history ""
expect_eq "complete: app names" "demo" "$(tail -n +2 <<<"$OUT" | cut -f1)"
run_cmd __complete volume put ""
expect_eq "complete: volume names" "data demo/data" "$(tail -n +2 <<<"$OUT" | cut -f1 | tr '\n' ' ' | sed 's/ $//')"

echo "a note put in" > note.txt
run_cmd volume put demo/data note.txt
expect_eq "volume put: rc ($ERR)" 0 "$RC"
run_cmd run demo/show
expect_contains "run sees the put file" "a note put in" "$OUT"
run_cmd volume get data out.txt got.txt
expect_eq "volume get: rc ($ERR)" 0 "$RC"
expect_eq "volume get: the run's file" "written" "$(cat got.txt)"
run_cmd volume get data ../etc/passwd
expect_eq "volume get ..: rc" 2 "$RC"
expect_eq "volume get ..: error" "gpurun: error: '../etc/passwd': a path inside a volume may not contain '..'" "$ERR"

# A volume created on local cannot be handed to a job on another cloud.
mkdir split && cat > split/gpurun.yaml <<'YAML'
app: split
volumes: {v: {}}
functions:
  near: {command: ["true"], cloud: local, volumes: {/v: v}}
  far: {command: ["true"], cloud: hpc1, volumes: {/v: v}}
  sleepy: {command: ["sleep", "60"], cloud: local}
YAML
run_cmd run -f split/gpurun.yaml near
expect_eq "split: near run creates the volume ($ERR)" 0 "$RC"
unreachable="function 'far' runs on cloud 'hpc1' but mounts volume 'v', which lives on cloud 'local' ($GPURUN_STATE_DIR/volumes/split/v) where 'hpc1' cannot reach it; add 'cloud: local' to the function, or move the volume: copy its files out ('gpurun volume get split/v / DIR'), remove it ('gpurun volume rm split/v') and deploy again"
run_cmd run -f split/gpurun.yaml far --dry-run
expect_eq "split: far run refused: rc" 125 "$RC"
expect_eq "split: far run refused" "gpurun: error: $unreachable" "$(tail -n 1 <<<"$ERR")"
run_cmd deploy split/gpurun.yaml
expect_eq "split: deploy refused: rc" 2 "$RC"
expect_contains "split: deploy refused" "gpurun: error: $unreachable" "$ERR"
expect_eq "split: deploy prints the warning once" 1 "$(grep -c "far mounts volume 'v'" <<<"$ERR")"
run_cmd volume rm split/v
expect_eq "volume rm without --yes: rc" 2 "$RC"
expect_eq "volume rm without --yes" "gpurun: error: gpurun volume rm deletes volume 'split/v' and every file in it ($GPURUN_STATE_DIR/volumes/split/v); pass --yes to do it without asking" "$ERR"
run_cmd volume rm split/v --yes
expect_eq "volume rm: rc ($ERR)" 0 "$RC"
check; [ ! -e "$GPURUN_STATE_DIR/volumes/split/v" ] || fail "volume rm left the directory"

# An app whose registry refuses deletes: prune warns and keeps its manifest.
mkdir kept && python3 "$HERE/make_busybox_layout.py" kept/base "$(command -v busybox)"
cat > kept/gpurun.yaml <<'YAML'
app: kept
images: {tiny: {base: oci:./base}}
functions: {far: {image: tiny, cloud: nodelete, command: ["true"]}}
YAML
run_cmd deploy kept/gpurun.yaml --json
expect_eq "kept: deploy ($ERR)" 0 "$RC"
DK=$(json 'd["image_pushes"][0]["digest"]' "$OUT")
run_cmd app delete kept --yes
expect_eq "kept: app delete ($ERR)" 0 "$RC"

# --- delete, then prune ---
run_cmd app delete demo
expect_eq "app delete without --yes: rc" 2 "$RC"
expect_eq "app delete without --yes" "gpurun: error: gpurun app delete deletes app 'demo' (3 versions); pass --yes to do it without asking" "$ERR"
SLEEPER=$("$GPURUN" run demo/sleeper --detach)
run_cmd app delete demo --yes
expect_eq "app delete: rc ($ERR)" 0 "$RC"
expect_contains "app delete: cancels the active run" "gpurun: cancelled run $SLEEPER (sleeper)" "$ERR"
expect_contains "app delete: says so" "gpurun: deleted app demo (3 versions)" "$ERR"
run_cmd wait "$SLEEPER" --timeout 20s
expect_eq "app delete: the run ended cancelled" 130 "$RC"
run_cmd run demo/show
expect_eq "run of a deleted app: rc" 125 "$RC"
check; curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$PORT_A/v2/demo/tiny/manifests/$D1" \
  || fail "the registry lost the manifest before prune"
ACTIVE=$("$GPURUN" run -f split/gpurun.yaml sleepy --detach)
runs_before=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) - 1)')  # ended ones
check; [ "$runs_before" -ge 6 ] || fail "expected at least 6 runs before prune, got $runs_before"
run_cmd prune --older-than 0s
expect_eq "prune without --yes: rc" 2 "$RC"
run_cmd prune --older-than 0s --dry-run
expect_eq "prune --dry-run: rc ($ERR)" 0 "$RC"
expect_contains "prune --dry-run: says what" "would prune $runs_before runs" "$OUT"
expect_eq "prune --dry-run: nothing gone" "$((runs_before + 1))" "$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
run_cmd prune --older-than 0s --yes
expect_eq "prune: rc ($ERR)" 0 "$RC"
expect_contains "prune: runs" "pruned $runs_before runs" "$OUT"
expect_contains "prune: registry manifests" "2 registry manifests" "$OUT"
expect_contains "prune: garbage collection" "garbage collection" "$ERR"
expect_contains "prune: a registry without deletes is skipped with a warning" \
  "gpurun: warning: registry http://127.0.0.1:$PORT_B does not allow deletes (HTTP 405 UNSUPPORTED): its manifests were kept; set storage.delete.enabled: true in its config to let gpurun remove them" "$ERR"
expect_eq "prune: the manifest on that registry is still there" "200" \
  "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$PORT_B/v2/kept/tiny/manifests/$DK")"
expect_eq "prune: ps --all shows only the active run" "$ACTIVE running" \
  "$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print(" ".join(r["id"] + " " + r["status"] for r in json.load(sys.stdin)))')"
expect_eq "prune: only the active run's dir is left" "$ACTIVE" "$(ls "$GPURUN_STATE_DIR/runs")"
"$GPURUN" cancel "$ACTIVE" >/dev/null 2>&1
expect_eq "prune: no root filesystem left" "" "$(ls "$GPURUN_STATE_DIR/images/rootfs")"
expect_eq "prune: the registry manifest is gone" "404" \
  "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$PORT_A/v2/demo/tiny/manifests/$D1")"
finish
