#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "gpu/catalog.hpp"
#include "manifest/manifest.hpp"

using namespace gpurun;
using namespace gpurun::manifest;
using namespace std::chrono_literals;

namespace {

const gpu::Catalog& test_catalog() {
  static const gpu::Catalog catalog = gpu::Catalog::builtin();
  return catalog;
}

ManifestContext test_context() { return ManifestContext{&test_catalog(), {"local", "gcp"}, {"wandb"}}; }

// Every diagnostic for `text`, formatted; also checks the summary error.
std::vector<std::string> errors_of(std::string_view text) {
  std::vector<util::Diagnostic> diagnostics;
  auto result = parse_manifest(text, "gpurun.yaml", test_context(), diagnostics);
  std::vector<std::string> out;
  for (const auto& d : diagnostics) out.push_back(util::format_diagnostic(d));
  if (diagnostics.empty()) {
    CHECK(result.ok());
  } else {
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().code == util::ExitCode::usage);
    CHECK(result.error().message ==
          "gpurun.yaml: " + std::to_string(diagnostics.size()) + (diagnostics.size() == 1 ? " error" : " errors"));
  }
  return out;
}

// The single diagnostic for `text`.
std::string error_of(std::string_view text) {
  const auto errors = errors_of(text);
  REQUIRE(errors.size() == 1);
  return errors.front();
}

std::string with_function(std::string_view body) {
  return "app: demo\nimages:\n  trainer: {base: scratch}\nvolumes:\n  datasets: {}\nfunctions:\n  train:\n" +
         std::string(body);
}

const char* example = R"(app: mnist
images:
  trainer:
    base: nvidia/cuda:12.4.1-runtime-ubuntu22.04
    add: [./src, {src: ./weights, dst: /models}]
    env: {PYTHONUNBUFFERED: "1"}
    workdir: /app
volumes:
  datasets: {}
functions:
  prep:
    command: ["python", "prep.py"]
    image: trainer
    volumes: {/data: datasets}
    cloud: gcp
  train:
    command: ./train --epochs 3
    image: trainer
    gpu: A100
    timeout: 2h
    retries: {max: 3, backoff: 2.0, initial_delay: 1s, max_delay: 60s}
    env: {EPOCHS: "3"}
    secrets: [wandb]
    cpu: 4
    memory: 16GiB
)";

}  // namespace

TEST_CASE("manifest: the issue's example parses into the model") {
  std::vector<util::Diagnostic> diagnostics;
  auto result = parse_manifest(example, "gpurun.yaml", test_context(), diagnostics);
  REQUIRE(result.ok());
  CHECK(diagnostics.empty());
  const Manifest& m = *result;
  CHECK(m.path == "gpurun.yaml");
  CHECK(m.dir == std::filesystem::current_path().string());
  CHECK(m.app == "mnist");
  REQUIRE(m.images.size() == 1);
  const Image& image = m.images[0];
  CHECK(image.name == "trainer");
  CHECK(image.base == "nvidia/cuda:12.4.1-runtime-ubuntu22.04");
  REQUIRE(image.add.size() == 2);
  CHECK(image.add[0].src == "./src");
  CHECK(image.add[0].dst.empty());
  CHECK(image.add[1].src == "./weights");
  CHECK(image.add[1].dst == "/models");
  CHECK(image.env == std::vector<std::pair<std::string, std::string>>{{"PYTHONUNBUFFERED", "1"}});
  CHECK(image.workdir == "/app");
  CHECK(image.position.line == 3);
  CHECK(image.position.column == 3);
  REQUIRE(m.volumes.size() == 1);
  CHECK(m.volumes[0].name == "datasets");
  REQUIRE(m.functions.size() == 2);

  const Function& prep = m.functions[0];
  CHECK(prep.name == "prep");
  CHECK(prep.argv == std::vector<std::string>{"python", "prep.py"});
  CHECK(prep.shell.empty());
  CHECK(prep.image == std::optional<std::string>("trainer"));
  REQUIRE(prep.volumes.size() == 1);
  CHECK(prep.volumes[0].path == "/data");
  CHECK(prep.volumes[0].volume == "datasets");
  CHECK(prep.cloud == std::optional<std::string>("gcp"));
  CHECK(prep.cloud_position.line == 15);
  CHECK(prep.cloud_position.column == 12);
  CHECK(prep.gpu.cpu_only());
  CHECK_FALSE(prep.gpu_as_written.has_value());
  CHECK_FALSE(prep.timeout.has_value());
  CHECK(prep.retries.max_retries == 0);

  const Function& train = m.functions[1];
  CHECK(train.argv.empty());
  CHECK(train.shell == "./train --epochs 3");
  REQUIRE(train.gpu.alternatives.size() == 1);
  CHECK(train.gpu.alternatives[0].type == "A100");
  CHECK(train.gpu_as_written == std::optional<std::string>("A100"));
  CHECK(train.gpu_position.line == 19);
  CHECK(train.gpu_position.column == 10);
  CHECK(train.timeout == std::optional<std::chrono::milliseconds>(2h));
  CHECK(train.retries.max_retries == 3);
  CHECK(train.retries.backoff == 2.0);
  CHECK(train.retries.initial_delay == 1s);
  CHECK(train.retries.max_delay == 60s);
  CHECK(train.env == std::vector<std::pair<std::string, std::string>>{{"EPOCHS", "3"}});
  CHECK(train.secrets == std::vector<std::string>{"wandb"});
  CHECK(train.cpu == std::optional<double>(4.0));
  CHECK(train.memory_bytes == std::optional<std::uint64_t>(16ULL << 30));
  CHECK(train.position.line == 16);
  CHECK(train.position.column == 3);
  CHECK(m.find_function("train") == &train);
  CHECK(m.find_function("nope") == nullptr);
  CHECK(m.find_image("trainer") == &image);
}

TEST_CASE("manifest: volume mounts keep file order; plain retries; gpu text as written") {
  auto result = errors_of(with_function(R"(    command: [run]
    volumes: {/z: datasets, /a/: datasets, /m: datasets}
    retries: 2
    gpu: [H100, A100-80GB, any]
)"));
  CHECK(result.empty());
  std::vector<util::Diagnostic> diagnostics;
  auto parsed = parse_manifest(with_function(R"(    command: [run]
    volumes: {/z: datasets, /a/: datasets, /m: datasets}
    retries: 2
    gpu: [H100, A100-80GB, any]
  other:
    command: x
    gpu: {type: A100, memory: 20, count: 2}
  third:
    command: x
    gpu: "A100:40"
)"),
                               "gpurun.yaml", test_context(), diagnostics);
  REQUIRE(parsed.ok());
  const Function& f = parsed->functions[0];
  REQUIRE(f.volumes.size() == 3);
  CHECK(f.volumes[0].path == "/z");
  CHECK(f.volumes[1].path == "/a");
  CHECK(f.volumes[2].path == "/m");
  CHECK(f.retries.max_retries == 2);
  CHECK(f.retries.backoff == 2.0);
  CHECK(f.gpu.alternatives.size() == 3);
  CHECK(f.gpu.alternatives[2].any);
  CHECK(f.gpu_as_written == std::optional<std::string>("[H100, A100-80GB, any]"));
  CHECK(parsed->functions[1].gpu_as_written == std::optional<std::string>("{type: A100, memory: 20, count: 2}"));
  CHECK(parsed->functions[1].gpu.alternatives[0].memory_gb == std::optional<int>(20));
  CHECK(parsed->functions[1].gpu.alternatives[0].count == 2);
  CHECK(parsed->functions[2].gpu_as_written == std::optional<std::string>("A100:40"));
}

TEST_CASE("manifest: YAML syntax errors") {
  CHECK(error_of("app: demo\nfunctions:\n  train: {command: [x\n") ==
        "gpurun.yaml:4:1: error: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at "
        "line 3, column 20); check the indentation and quote values that contain ': ', '#', '[' or '{'");
  CHECK(errors_of("app: demo\n---\napp: other\n") ==
        std::vector<std::string>{"gpurun.yaml:2:1: error: the file holds more than one YAML document ('---'); keep one",
                                 "gpurun.yaml:1:1: error: missing required key 'functions'; declare at least one, e.g. "
                                 "'functions: {train: {command: ./train}}'"});
}

TEST_CASE("manifest: empty file and wrong root") {
  CHECK(error_of("") == "gpurun.yaml:1:1: error: the manifest is empty; start with 'app: NAME' and a 'functions:' section");
  CHECK(error_of("- a\n") == "gpurun.yaml:1:1: error: expected a mapping (key: value lines), got a list");
}

TEST_CASE("manifest: unknown keys suggest the schema's keys") {
  CHECK(error_of(with_function("    command: x\n    gpus: A100\n")) ==
        "gpurun.yaml:9:5: error: functions.train.gpus: unknown key 'gpus' (did you mean 'gpu'?)");
  CHECK(error_of("app: demo\nfunction:\n  a: {command: x}\nfunctions:\n  b: {command: x}\n") ==
        "gpurun.yaml:2:1: error: function: unknown key 'function' (did you mean 'functions'?)");
  CHECK(error_of(with_function("    command: x\n    zzzzzz: 1\n")) ==
        "gpurun.yaml:9:5: error: functions.train.zzzzzz: unknown key 'zzzzzz'; allowed keys here: command, image, "
        "volumes, cloud, gpu, timeout, retries, env, secrets, cpu, memory");
}

TEST_CASE("manifest: duplicate keys") {
  CHECK(error_of(with_function("    command: x\n    gpu: A100\n    gpu: T4\n")) ==
        "gpurun.yaml:10:5: error: functions.train.gpu: duplicate key 'gpu' (first defined at line 9, column 5); "
        "remove one of them");
}

TEST_CASE("manifest: wrong types") {
  CHECK(error_of(with_function("    command: {a: b}\n")) ==
        "gpurun.yaml:8:14: error: functions.train.command: expected a list of arguments or a shell command string, "
        "got a mapping");
  CHECK(error_of(with_function("    command: x\n    env: [A]\n")) ==
        "gpurun.yaml:9:10: error: functions.train.env: expected a mapping (key: value lines), got a list");
  CHECK(error_of(with_function("    command: x\n    secrets: wandb\n")) ==
        "gpurun.yaml:9:14: error: functions.train.secrets: expected a list of secret names, got a string (not shown: it "
        "may be secret)");
  CHECK(error_of(with_function("    command: x\n    env: {A: [1]}\n")) ==
        "gpurun.yaml:9:14: error: functions.train.env.A: expected a string value, got a list; quote it (\"...\")");
  CHECK(error_of("app: demo\nfunctions: [a]\n") ==
        "gpurun.yaml:2:12: error: functions: expected a mapping (key: value lines), got a list");
}

TEST_CASE("manifest: missing required keys point at the parent mapping") {
  CHECK(error_of("functions:\n  a: {command: x}\n") ==
        "gpurun.yaml:1:1: error: missing required key 'app'; add e.g. 'app: my-app' (the application's name)");
  CHECK(error_of("app: demo\n") ==
        "gpurun.yaml:1:1: error: missing required key 'functions'; declare at least one, e.g. 'functions: {train: "
        "{command: ./train}}'");
  CHECK(error_of(with_function("    image: trainer\n")) ==
        "gpurun.yaml:8:5: error: functions.train: missing required key 'command'; add the program to run, e.g. "
        "command: [\"python\", \"train.py\"]");
  CHECK(error_of("app: demo\nimages:\n  t: {add: [./x]}\nfunctions:\n  a: {command: x}\n") ==
        "gpurun.yaml:3:6: error: images.t: missing required key 'base'; use an image reference (e.g. "
        "nvidia/cuda:12.4.1-runtime-ubuntu22.04), 'scratch' or 'oci:PATH[:TAG]'");
  CHECK(error_of("app: demo\nfunctions: {}\n") ==
        "gpurun.yaml:2:12: error: functions: no functions defined; add at least one, e.g. 'train: {command: ./train}'");
}

TEST_CASE("manifest: bad names") {
  CHECK(error_of("app: My App\nfunctions:\n  a: {command: x}\n") ==
        "gpurun.yaml:1:6: error: app: invalid app name 'My App': use 1-63 lowercase letters, digits or '-', starting "
        "with a letter or digit (e.g. 'my-app')");
  CHECK(error_of("app: demo\nfunctions:\n  Train: {command: x}\n") ==
        "gpurun.yaml:3:3: error: functions.Train: invalid function name 'Train': use 1-63 lowercase letters, digits, "
        "'_' or '-', starting with a letter or digit (e.g. 'train')");
  CHECK(error_of("app: demo\nimages:\n  _t: {base: scratch}\nfunctions:\n  a: {command: x}\n") ==
        "gpurun.yaml:3:3: error: images._t: invalid image name '_t': use 1-63 lowercase letters, digits, '_' or '-', "
        "starting with a letter or digit (e.g. 't')");
  CHECK(error_of("app: demo\nvolumes:\n  my.data: {}\nfunctions:\n  a: {command: x}\n") ==
        "gpurun.yaml:3:3: error: volumes[\"my.data\"]: invalid volume name 'my.data': use 1-63 lowercase letters, "
        "digits, '_' or '-', starting with a letter or digit (e.g. 'my-data')");
}

TEST_CASE("manifest: undefined images, volumes, clouds and secrets") {
  CHECK(error_of(with_function("    command: x\n    image: triner\n")) ==
        "gpurun.yaml:9:12: error: functions.train.image: undefined image 'triner' (did you mean 'trainer'?)");
  CHECK(error_of(with_function("    command: x\n    image: zzz\n")) ==
        "gpurun.yaml:9:12: error: functions.train.image: undefined image 'zzz'; defined images: trainer; define it "
        "under 'images:' or remove 'image' to run on the host");
  CHECK(error_of("app: demo\nfunctions:\n  a:\n    command: x\n    image: t\n") ==
        "gpurun.yaml:5:12: error: functions.a.image: undefined image 't'; no images are defined; define it under "
        "'images:' or remove 'image' to run on the host");
  CHECK(error_of(with_function("    command: x\n    volumes: {/data: dataset}\n")) ==
        "gpurun.yaml:9:22: error: functions.train.volumes[\"/data\"]: undefined volume 'dataset' (did you mean "
        "'datasets'?)");
  CHECK(error_of(with_function("    command: x\n    cloud: gpc\n")) ==
        "gpurun.yaml:9:12: error: functions.train.cloud: unknown cloud 'gpc' (did you mean 'gcp'?)");
  CHECK(error_of(with_function("    command: x\n    cloud: azure\n")) ==
        "gpurun.yaml:9:12: error: functions.train.cloud: unknown cloud 'azure'; configured clouds: local, gcp; add it "
        "to the config or remove 'cloud'");
  CHECK(error_of(with_function("    command: x\n    secrets: [wandb, wandbb]\n")) ==
        "gpurun.yaml:9:22: error: functions.train.secrets[1]: unknown secret 'wandbb' (did you mean 'wandb'?)");
  CHECK(error_of(with_function("    command: x\n    secrets: [wandb, wandb]\n")) ==
        "gpurun.yaml:9:22: error: functions.train.secrets[1]: secret 'wandb' is listed twice; remove one");
}

TEST_CASE("manifest: GPU specs are checked against the catalog") {
  CHECK(error_of(with_function("    command: x\n    gpu: A10O\n")) ==
        "gpurun.yaml:9:10: error: functions.train.gpu: unknown GPU type 'A10O'; known types: T4, A10G, L4, A100, L40S, H100, H200, "
        "V100, A10, A40, L40, A6000, RTX6000Ada, RTXPRO6000, GH200, B200; to use another GPU, add it under 'catalog:' in the config "
        "(e.g. A10O: {memory: [48], max: 8})");
  CHECK(error_of(with_function("    command: x\n    gpu: [H100, a-100]\n")) ==
        "gpurun.yaml:9:17: error: functions.train.gpu[1]: unknown GPU type 'a-100' (did you mean 'A100'?)");
  CHECK(error_of(with_function("    command: x\n    gpu: none\n")) ==
        "gpurun.yaml:9:10: error: functions.train.gpu: 'none' is for --gpu; remove 'gpu' for CPU only");
  CHECK(error_of(with_function("    command: x\n    gpu: T4:0.5\n")) ==
        "gpurun.yaml:9:10: error: functions.train.gpu: invalid GPU spec 'T4:0.5': gpurun gives whole GPUs, not a fraction (0.5); "
        "write T4:1");
  CHECK(error_of(with_function("    command: x\n    gpu: {name: A100, count: 2}\n")) ==
        "gpurun.yaml:9:11: error: functions.train.gpu.name: unknown key 'name' (did you mean 'type'?)");
  CHECK(error_of(with_function("    command: x\n    gpu: {T4: 1}\n")) ==
        "gpurun.yaml:9:11: error: functions.train.gpu.T4: write the GPU as one string 'T4:1' (no space after ':'), not the mapping "
        "'T4: 1'");
  CHECK(error_of(with_function("    command: x\n    gpu: {H100:8, V200:8}\n")) ==
        "gpurun.yaml:9:19: error: functions.train.gpu[\"V200:8\"]: unknown GPU type 'V200'; known types: T4, A10G, L4, A100, L40S, H100, "
        "H200, V100, A10, A40, L40, A6000, RTX6000Ada, RTXPRO6000, GH200, B200; to use another GPU, add it under 'catalog:' in the "
        "config (e.g. V200: {memory: [48], max: 8})");
  CHECK(error_of(with_function("    command: x\n    gpu: {type: A100, memory: lots}\n")) ==
        "gpurun.yaml:9:10: error: functions.train.gpu: expected the GPU memory in GB (e.g. 40GB, 24GB+ or 16GB..24GB), got 'lots'");
  CHECK(error_of(with_function("    command: x\n    gpu: []\n")) ==
        "gpurun.yaml:9:10: error: functions.train.gpu: empty GPU list; list GPU types in order of preference (e.g. "
        "[H100, A100-80GB, any]) or remove 'gpu' for CPU only");
  CHECK(error_of(with_function("    command: x\n    gpu: {type: A100, count: 0}\n")) ==
        "gpurun.yaml:9:30: error: functions.train.gpu.count: count must be at least 1 (got 0); remove 'gpu' for CPU "
        "only");
  CHECK(error_of(with_function("    command: x\n    gpu:\n")) ==
        "gpurun.yaml:9:9: error: functions.train.gpu: expected a GPU type (e.g. A100, A100-80GB:2, any), {type, "
        "memory, count} or a fallback list [H100, A100-80GB, any], got nothing (null)");
}

TEST_CASE("manifest: bad durations and sizes") {
  CHECK(error_of(with_function("    command: x\n    timeout: 2 hours\n")) ==
        "gpurun.yaml:9:14: error: functions.train.timeout: invalid duration '2 hours'; write e.g. 30s, 10m, 2h or "
        "plain seconds");
  CHECK(error_of(with_function("    command: x\n    timeout: 0\n")) ==
        "gpurun.yaml:9:14: error: functions.train.timeout: timeout must be more than 0; remove 'timeout' for no limit");
  CHECK(error_of(with_function("    command: x\n    memory: 16 gigs\n")) ==
        "gpurun.yaml:9:13: error: functions.train.memory: invalid size '16 gigs'; write e.g. 512MiB, 16GiB or 16GB (a "
        "plain number is MiB)");
  CHECK(error_of(with_function("    command: x\n    retries: {max: 1, initial_delay: soon}\n")) ==
        "gpurun.yaml:9:38: error: functions.train.retries.initial_delay: invalid duration 'soon'; write e.g. 30s, 10m, "
        "2h or plain seconds");
}

TEST_CASE("manifest: mount paths must be absolute and distinct") {
  CHECK(error_of(with_function("    command: x\n    volumes: {data: datasets}\n")) ==
        "gpurun.yaml:9:15: error: functions.train.volumes.data: mount path 'data' is not absolute; write '/data'");
  CHECK(error_of(with_function("    command: x\n    volumes:\n      /data: datasets\n      /data/: datasets\n")) ==
        "gpurun.yaml:11:7: error: functions.train.volumes[\"/data/\"]: mount path '/data/' is the same as '/data' "
        "(line 10); mount one volume per path");
  CHECK(error_of(with_function("    command: x\n    volumes: {/: datasets}\n")) ==
        "gpurun.yaml:9:15: error: functions.train.volumes[\"/\"]: cannot mount a volume on '/'; pick a directory such "
        "as '/data'");
}

TEST_CASE("manifest: mount paths that can never work are refused") {
  for (const std::string path : {"/proc", "/dev", "/sys", "/proc/sys", "/sys/fs/"}) {
    CAPTURE(path);
    const std::string normal = path.back() == '/' ? path.substr(0, path.size() - 1) : path;
    CHECK(error_of(with_function("    command: x\n    volumes: {" + path + ": datasets}\n")) ==
          "gpurun.yaml:9:15: error: functions.train.volumes[\"" + path + "\"]: cannot mount a volume on '" + normal +
              "': the sandbox provides it; pick a directory such as '/data'");
  }
  // A host function's mount path that is a file here can never become a directory.
  CHECK(error_of(with_function("    command: x\n    volumes: {/etc/passwd: datasets}\n")) ==
        "gpurun.yaml:9:15: error: functions.train.volumes[\"/etc/passwd\"]: cannot mount a volume on '/etc/passwd': it is "
        "a file on this machine and a volume is a directory; pick a path that is a directory or does not exist, such as "
        "'/data'");
  // In an image the path is the image's: the sandbox makes the mount point per run.
  CHECK(errors_of(with_function("    command: x\n    image: trainer\n    volumes: {/etc/passwd: datasets}\n")).empty());
  CHECK(errors_of(with_function("    command: x\n    volumes: {/etc: datasets, /no/such/dir: datasets}\n")).empty());
}

TEST_CASE("manifest: empty commands") {
  CHECK(error_of(with_function("    command: []\n")) ==
        "gpurun.yaml:8:14: error: functions.train.command: command is empty; give the program and its arguments, e.g. "
        "[\"python\", \"train.py\"]");
  CHECK(error_of(with_function("    command: \"  \"\n")) ==
        "gpurun.yaml:8:14: error: functions.train.command: command is empty; give a shell command, e.g. './train "
        "--epochs 3'");
  CHECK(error_of(with_function("    command: [\"\", x]\n")) ==
        "gpurun.yaml:8:15: error: functions.train.command[0]: the program name (first item) is empty; put the program "
        "to run first");
  CHECK(error_of(with_function("    command:\n")) ==
        "gpurun.yaml:8:13: error: functions.train.command: expected a list of arguments or a shell command string, got "
        "nothing (null)");
}

TEST_CASE("manifest: retries out of range") {
  CHECK(error_of(with_function("    command: x\n    retries: 11\n")) ==
        "gpurun.yaml:9:14: error: functions.train.retries: retries must be between 0 and 10 (got 11)");
  CHECK(error_of(with_function("    command: x\n    retries: -1\n")) ==
        "gpurun.yaml:9:14: error: functions.train.retries: retries must be between 0 and 10 (got -1)");
  CHECK(error_of(with_function("    command: x\n    retries: {max: 2, backoff: 0.5}\n")) ==
        "gpurun.yaml:9:32: error: functions.train.retries.backoff: backoff must be between 1.0 and 10.0 (got 0.5)");
  CHECK(error_of(with_function("    command: x\n    retries: {backoff: 2}\n")) ==
        "gpurun.yaml:9:14: error: functions.train.retries: missing required key 'max'; say how many retries to make "
        "after the first attempt");
  CHECK(error_of(with_function("    command: x\n    retries: {max: 1, initial_delay: 10s, max_delay: 5s}\n")) ==
        "gpurun.yaml:9:54: error: functions.train.retries.max_delay: max_delay (5s) is shorter than initial_delay "
        "(10s); raise it or lower initial_delay");
}

TEST_CASE("manifest: cpu must be positive") {
  CHECK(error_of(with_function("    command: x\n    cpu: 0\n")) ==
        "gpurun.yaml:9:10: error: functions.train.cpu: cpu must be more than 0 (got 0); ask for e.g. 0.5 or 4");
  CHECK(error_of(with_function("    command: x\n    cpu: -2\n")) ==
        "gpurun.yaml:9:10: error: functions.train.cpu: cpu must be more than 0 (got -2); ask for e.g. 0.5 or 4");
  CHECK(error_of(with_function("    command: x\n    cpu: four\n")) ==
        "gpurun.yaml:9:10: error: functions.train.cpu: expected a number of CPU cores (e.g. 4 or 0.5), got a string "
        "('four')");
}

TEST_CASE("manifest: image add sources stay inside the manifest's directory") {
  const auto image = [](std::string_view body) {
    return "app: demo\nimages:\n  t:\n    base: scratch\n" + std::string(body) + "functions:\n  a: {command: x}\n";
  };
  CHECK(error_of(image("    add: [/etc/passwd]\n")) ==
        "gpurun.yaml:5:11: error: images.t.add[0]: '/etc/passwd' is an absolute path; sources are relative to the "
        "manifest's directory: copy it next to the manifest and write './passwd'");
  CHECK(error_of(image("    add: [./a/../../secret]\n")) ==
        "gpurun.yaml:5:11: error: images.t.add[0]: './a/../../secret' leaves the manifest's directory; sources must "
        "stay inside it (move the files there or the manifest up)");
  CHECK(error_of(image("    add: [./ok, {src: ./w, dst: models}]\n")) ==
        "gpurun.yaml:5:33: error: images.t.add[1].dst: destination 'models' is not absolute; write '/models', or "
        "leave out 'dst' to keep the relative path under workdir");
  CHECK(error_of(image("    add: [{src: ..}]\n")) ==
        "gpurun.yaml:5:17: error: images.t.add[0].src: '..' leaves the manifest's directory; sources must stay inside "
        "it (move the files there or the manifest up)");
  CHECK(error_of(image("    workdir: app\n")) ==
        "gpurun.yaml:5:14: error: images.t.workdir: workdir 'app' is not absolute; write '/app'");
  CHECK(error_of(image("    env: {MY-VAR: x}\n")) ==
        "gpurun.yaml:5:11: error: images.t.env.MY-VAR: invalid environment variable name 'MY-VAR': use letters, "
        "digits and '_', not starting with a digit");
}

TEST_CASE("manifest: image bases") {
  const auto base = [](std::string_view ref) {
    return "app: demo\nimages:\n  t: {base: \"" + std::string(ref) + "\"}\nfunctions:\n  a: {command: x}\n";
  };
  for (const char* ok : {"scratch", "oci:./layout", "oci:/abs/layout:v1", "ubuntu", "ubuntu:22.04", "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
                         "ghcr.io/org/app:1.0", "localhost:5000/app", "registry.example.com:5000/a/b_c__d-e:tag",
                         "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}) {
    INFO(ok);
    CHECK(errors_of(base(ok)).empty());
  }
  CHECK(error_of(base("Nvidia/CUDA:12")) ==
        "gpurun.yaml:3:13: error: images.t.base: invalid image reference 'Nvidia/CUDA:12': the repository 'Nvidia/CUDA' "
        "must be lowercase letters, digits and separators; expected [REGISTRY/]NAME[:TAG][@sha256:DIGEST] with a "
        "lowercase name (e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04), 'scratch' or 'oci:PATH[:TAG]'");
  // One grammar: what the manifest accepts, the OCI code can pull (a 40-hex digest is refused by both).
  const std::string short_digest = "ubuntu@sha256:" + std::string(40, 'a');
  REQUIRE(errors_of(base(short_digest)).size() == 1);
  CHECK(error_of(base(short_digest)).find("the digest must be sha256: followed by 64 lowercase hex digits") !=
        std::string::npos);
  CHECK(errors_of(base("ubuntu:")).size() == 1);
  CHECK(errors_of(base("a b")).size() == 1);
  CHECK(errors_of(base("")).size() == 1);
  CHECK(error_of(base("oci:")) ==
        "gpurun.yaml:3:13: error: images.t.base: 'oci:' names no OCI layout directory; write oci:PATH or oci:PATH:TAG");
}

TEST_CASE("manifest: every error is reported in one go") {
  const auto errors = errors_of(R"(app: Bad_App
images:
  t: {base: scratch, wrkdir: /x}
functions:
  a:
    command: []
    gpus: A100
  b:
    command: x
    image: nope
    timeout: forever
    cpu: 0
  c:
    command: y
)");
  REQUIRE(errors.size() == 7);
  CHECK(errors[0] ==
        "gpurun.yaml:1:6: error: app: invalid app name 'Bad_App': use 1-63 lowercase letters, digits or '-', starting "
        "with a letter or digit (e.g. 'bad-app')");
  CHECK(errors[1] == "gpurun.yaml:3:22: error: images.t.wrkdir: unknown key 'wrkdir' (did you mean 'workdir'?)");
  CHECK(errors[2] == "gpurun.yaml:7:5: error: functions.a.gpus: unknown key 'gpus' (did you mean 'gpu'?)");
  CHECK(errors[3] ==
        "gpurun.yaml:6:14: error: functions.a.command: command is empty; give the program and its arguments, e.g. "
        "[\"python\", \"train.py\"]");
  CHECK(errors[4] ==
        "gpurun.yaml:10:12: error: functions.b.image: undefined image 'nope'; defined images: t; define it under "
        "'images:' or remove 'image' to run on the host");
  CHECK(errors[5] ==
        "gpurun.yaml:11:14: error: functions.b.timeout: invalid duration 'forever'; write e.g. 30s, 10m, 2h or plain "
        "seconds");
  CHECK(errors[6] == "gpurun.yaml:12:10: error: functions.b.cpu: cpu must be more than 0 (got 0); ask for e.g. 0.5 or 4");
}

TEST_CASE("manifest: anchors and merge keys") {
  std::vector<util::Diagnostic> diagnostics;
  auto result = parse_manifest(R"(app: demo
x-defaults: &defaults
  image: trainer
  gpu: T4
  timeout: 10m
)",
                               "gpurun.yaml", test_context(), diagnostics);
  REQUIRE(diagnostics.size() == 2);  // x-defaults is not a manifest key; functions is missing
  CHECK(util::format_diagnostic(diagnostics[0]) ==
        "gpurun.yaml:2:1: error: x-defaults: unknown key 'x-defaults'; allowed keys here: app, images, volumes, functions");

  diagnostics.clear();
  auto merged = parse_manifest(R"(app: demo
images:
  trainer: {base: scratch}
functions:
  a: &base
    command: [python, a.py]
    image: trainer
    gpu: T4
    timeout: 10m
  b:
    <<: *base
    command: [python, b.py]
    gpu: A100
)",
                               "gpurun.yaml", test_context(), diagnostics);
  REQUIRE(merged.ok());
  const Function& b = merged->functions[1];
  CHECK(b.argv == std::vector<std::string>{"python", "b.py"});
  CHECK(b.image == std::optional<std::string>("trainer"));
  CHECK(b.gpu_as_written == std::optional<std::string>("A100"));
  CHECK(b.timeout == std::optional<std::chrono::milliseconds>(10min));
}

TEST_CASE("manifest: load_manifest reads files and reports missing ones") {
  const auto dir = std::filesystem::temp_directory_path() / ("gpurun_manifest_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "sub");
  const auto file = (dir / "sub" / "gpurun.yaml").string();
  {
    std::ofstream out(file);
    out << "app: demo\nfunctions:\n  a: {command: x}\n";
  }
  std::vector<util::Diagnostic> diagnostics;
  auto loaded = load_manifest(file, test_context(), diagnostics);
  REQUIRE(loaded.ok());
  CHECK(loaded->path == file);
  CHECK(loaded->dir == (dir / "sub").string());
  CHECK(loaded->functions.size() == 1);

  const auto missing = (dir / "nope.yaml").string();
  auto failed = load_manifest(missing, test_context(), diagnostics);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == util::ExitCode::usage);
  CHECK(failed.error().message == "cannot read manifest '" + missing +
                                      "': No such file or directory; pass the manifest with -f FILE or create "
                                      "./gpurun.yaml");
  CHECK(diagnostics.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("manifest: the GPU forms users bring from SkyPilot, dstack and Modal") {
  auto gpu_of = [](const std::string& spec) {
    std::vector<util::Diagnostic> diagnostics;
    auto parsed = parse_manifest(with_function("    command: x\n    gpu: " + spec + "\n"), "gpurun.yaml", test_context(), diagnostics);
    REQUIRE_MESSAGE(parsed.ok(), (diagnostics.empty() ? std::string() : diagnostics.front().message));
    return parsed->functions[0];
  };
  // SkyPilot's any-of set: YAML reads it as a mapping of keys without values.
  const auto set = gpu_of("{H100:8, A100:8}");
  CHECK(set.gpu.any_of);
  REQUIRE(set.gpu.alternatives.size() == 2);
  CHECK(gpu::to_string(set.gpu.alternatives[0]) == "H100:8");
  CHECK(gpu::to_string(set.gpu.alternatives[1]) == "A100:8");
  CHECK(set.gpu_as_written == std::optional<std::string>("{H100:8, A100:8}"));
  // The comma forms, as on --gpu.
  const auto comma = gpu_of("A10G,A100");
  REQUIRE(comma.gpu.alternatives.size() == 2);
  CHECK(gpu::to_string(comma.gpu.alternatives[1]) == "A100");
  const auto shared = gpu_of("A10,A10G:2");
  REQUIRE(shared.gpu.alternatives.size() == 2);
  CHECK(gpu::to_string(shared.gpu.alternatives[0]) == "A10:2");
  CHECK(gpu::to_string(shared.gpu.alternatives[1]) == "A10G:2");
  // dstack's memory-first specs and ranges; Modal's '!'.
  CHECK(gpu::to_string(gpu_of("24GB").gpu.alternatives[0]) == "24GB");
  CHECK(gpu::to_string(gpu_of("16GB..24GB").gpu.alternatives[0]) == "16GB..24GB");
  CHECK(gpu::to_string(gpu_of("H100:1..2").gpu.alternatives[0]) == "H100:1..2");
  CHECK(gpu_of("H100:1..2").gpu_as_written == std::optional<std::string>("H100:1..2"));
  CHECK(gpu::to_string(gpu_of("H100!").gpu.alternatives[0]) == "H100!");
  CHECK(gpu::to_string(gpu_of("{type: A100, memory: 40GB+, count: 1..2}").gpu.alternatives[0]) == "A100:40GB+:1..2");
  CHECK(gpu::to_string(gpu_of("[\"80GB:8\", A100:8]").gpu.alternatives[0]) == "80GB:8");
}

// Finding 6 of issue 14: nothing given in place of the secrets list is echoed.
TEST_CASE("manifest: a value in place of the secrets list is never echoed") {
  CHECK(error_of(with_function("    command: x\n    secrets: sk-s3cr3t-value\n")) ==
        "gpurun.yaml:9:14: error: functions.train.secrets: expected a list of secret names, got a string (not shown: "
        "it may be secret)");
  CHECK(error_of(with_function("    command: x\n    secrets: {wandb: sk-s3cr3t-value}\n")) ==
        "gpurun.yaml:9:14: error: functions.train.secrets: expected a list of secret names, got a mapping (not shown: "
        "it may be secret)");
}

// Findings 1-5 of issue 14 through the manifest: a positioned error, exit 2, in milliseconds.
TEST_CASE("manifest: a file over the size limit is refused without reading all of it") {
  char pattern[] = "/tmp/gpurun-manifest-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string path = std::string(pattern) + "/gpurun.yaml";
  std::ofstream(path) << "app: big\n";
  std::filesystem::resize_file(path, 200u << 20);  // sparse: 200 MB of NUL bytes after the first line
  std::vector<util::Diagnostic> diagnostics;
  const auto start = std::chrono::steady_clock::now();
  auto result = load_manifest(path, test_context(), diagnostics);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == util::ExitCode::usage);
  REQUIRE(diagnostics.size() == 1);
  CHECK(util::format_diagnostic(diagnostics[0]) ==
        path + ":2:8388600: error: the file is larger than 8 MiB; no manifest or config needs that, split it");
  std::filesystem::remove_all(pattern);
}

TEST_CASE("manifest: reader errors and nesting past the limit are positioned") {
  using namespace std::string_literals;
  CHECK(error_of("app: demo\nfunctions:\n  a:\n    command: \"ec\0ho\"\n"s) ==
        "gpurun.yaml:4:17: error: invalid YAML: control characters are not allowed (byte 0x00); the file must be "
        "UTF-8 text without control characters");
  CHECK(error_of("app: demo\nfunctions:\n  a:\n    command: [" + std::string(70, '[') + std::string(71, ']') + "\n") ==
        "gpurun.yaml:4:75: error: functions.a.command[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
        "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
        "[0][0][0][0]: lists and mappings are nested more than 64 deep; no manifest or config needs that, flatten this "
        "part");
}
