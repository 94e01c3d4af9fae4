#!/usr/bin/env bash
# validate / plan / gpus through the real binary: exit codes, stdout vs stderr, JSON shape.
source "$(dirname "$0")/lib.sh"
SRC="$GPURUN_SOURCE_DIR"

run_cmd validate "$SRC/examples/mnist.yaml" --config "$SRC/examples/config.yaml"
expect_eq "validate ok exit" 0 "$RC"
expect_eq "validate prints nothing on stdout" "" "$OUT"

cat > bad.yaml <<'YAML'
app: demo
functions:
  train:
    command: ./train
    gpus: A100
    timeout: 2 weeks
  infer:
    command: []
    gpu: a-100
YAML
run_cmd validate bad.yaml
expect_eq "invalid manifest exit" 2 "$RC"
expect_contains "unknown key" "bad.yaml:5:5: error: functions.train.gpus: unknown key 'gpus' (did you mean 'gpu'?)" "$ERR"
expect_contains "unknown GPU" "bad.yaml:9:10: error: functions.infer.gpu: unknown GPU type 'a-100' (did you mean 'A100'?)" "$ERR"
expect_contains "all errors reported" "4 errors found" "$ERR"

# The manifest may come positionally, with -f, or as ./gpurun.yaml; --config before or after.
cp "$SRC/examples/mnist.yaml" gpurun.yaml
cp -r "$SRC/examples/src" src
run_cmd --config "$SRC/examples/config.yaml" plan --json
expect_eq "plan default manifest exit" 0 "$RC"
run_cmd plan -f gpurun.yaml --json --config "$SRC/examples/config.yaml"
expect_eq "plan -f exit" 0 "$RC"
json="$OUT"
expect_eq "plan json is only JSON" "mnist" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["app"])' "$json")"
expect_eq "train in gcp on A100-40GB" "gcp A100 40 1" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); f=[f for f in p["functions"] if f["name"]=="train"][0]
print(f["cloud"], f["gpu"]["type"], f["gpu"]["memory_gb"], f["gpu"]["count"])' "$json")"
expect_eq "evaluate (any) in aws on T4" "aws T4 any" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); f=[f for f in p["functions"] if f["name"]=="evaluate"][0]
print(f["cloud"], f["gpu"]["type"], f["gpu_requested"])' "$json")"
expect_eq "volume lives with the A100s" "datasets gcp" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); print(p["volumes"][0]["name"], p["volumes"][0]["cloud"])' "$json")"
expect_eq "image uploads" "aws,gcp aws,gcp" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); i=p["images"][0]; print(",".join(i["clouds"]), ",".join(i["upload_to"]))' "$json")"
expect_eq "keys" "backend,cloud,gpu,gpu_requested,image,name,volumes" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); print(",".join(sorted(p["functions"][0].keys())))' "$json")"

run_cmd plan --config "$SRC/examples/config.yaml"
expect_contains "table header" "FUNCTION  GPU ASKED" "$OUT"

# Unschedulable: exit 3 naming what was asked and what each cloud offers.
cat > big.yaml <<'YAML'
app: big
functions:
  huge: {command: "true", gpu: "H100:8"}
YAML
run_cmd plan big.yaml --config "$SRC/examples/config.yaml"
expect_eq "unschedulable exit" 3 "$RC"
expect_contains "unschedulable message" "function 'huge' asks for GPU H100:8; no cloud can run it: aws offers T4:4, A10G:4; gcp offers A100-20GB:2, A100-40GB:2" "$ERR"
run_cmd plan big.yaml --cloud nope
expect_eq "unknown --cloud exit" 2 "$RC"

# Usage errors are exit 2, help and version exit 0.
run_cmd plan --bogus
expect_eq "unknown flag exit" 2 "$RC"
run_cmd
expect_eq "no command exit" 2 "$RC"
run_cmd --help
expect_eq "help exit" 0 "$RC"
run_cmd --version
expect_eq "version exit" 0 "$RC"
expect_contains "version text" "gpurun " "$OUT"
run_cmd --config /nonexistent/config.yaml gpus
expect_eq "missing --config exit" 2 "$RC"
run_cmd validate nothing-here.yaml
expect_eq "missing manifest exit" 2 "$RC"

# gpus: the catalog, who offers what, and the declared local devices.
GPURUN_LOCAL_GPUS="T4:2,A100-40GB:1" run_cmd gpus --json --config "$SRC/examples/config.yaml"
expect_eq "gpus exit" 0 "$RC"
expect_eq "local devices" "GPURUN_LOCAL_GPUS 3" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); print(p["local"]["source"], len(p["local"]["devices"]))' "$OUT")"
expect_eq "A100 offered by gcp and local" "gcp,local" "$(python3 -c '
import json,sys; p=json.loads(sys.argv[1]); t=[t for t in p["types"] if t["name"]=="A100"][0]; print(",".join(c["cloud"] for c in t["clouds"]))' "$OUT")"
finish
