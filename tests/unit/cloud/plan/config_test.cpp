#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cloud/backend/registry.hpp"
#include "cloud/backend/slurm/slurm_settings.hpp"
#include "cloud/plan/config.hpp"
#include "tests/unit/temp_dir.hpp"
#include "util/files.hpp"

using namespace gpurun;

namespace {

std::string errors_of(const std::string& text) {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config(text, "config.yaml", diagnostics);
  CHECK_FALSE(config.ok());
  return util::format_diagnostics(diagnostics);
}

}  // namespace

TEST_CASE("config: the example config parses with clouds in order and local appended") {
  std::vector<util::Diagnostic> diagnostics;
  auto text = util::read_file(std::string(GPURUN_SOURCE_DIR) + "/examples/config.yaml");
  REQUIRE_MESSAGE(text.ok(), text.error().message);
  auto config = cloud::parse_config(*text, "config.yaml", diagnostics);
  REQUIRE_MESSAGE(config.ok(), util::format_diagnostics(diagnostics));
  CHECK(config->default_cloud == "aws");
  CHECK(config->cloud_names() == std::vector<std::string>{"aws", "gcp", "local"});
  const auto* gcp = config->find_cloud("gcp");
  REQUIRE(gcp != nullptr);
  CHECK(gcp->backend == "slurm");
  CHECK(slurm_settings(*gcp).partition == "gcp");
  REQUIRE(gcp->gpus.size() == 2);
  CHECK(gcp->gpus[0] == gpu::GpuSlot{"A100", 20, 2});
  CHECK(gcp->gpus[1] == gpu::GpuSlot{"A100", 40, 2});
  CHECK(slurm_settings(*gcp).gres == std::vector<std::pair<std::string, std::string>>{{"A100-20GB", "a100_20g"}, {"A100-40GB", "a100"}});
  CHECK(config->find_cloud("local")->backend == "local");
}

TEST_CASE("config: no config means only the local cloud, and it is the default") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("", "config.yaml", diagnostics);
  REQUIRE(config.ok());
  CHECK(config->cloud_names() == std::vector<std::string>{"local"});
  CHECK(config->default_cloud == "local");
  CHECK(config->catalog.any_pool == std::vector<std::string>{"T4", "A10G"});
}

TEST_CASE("config: unknown keys, bad backends and bad offers get positions and fixes") {
  CHECK(errors_of("default_cloud: aws\nclouds:\n  aws:\n    backend: slurn\n    endpoint: http://x:1\n    partition: p\n") ==
        "config.yaml:4:14: error: clouds.aws.backend: unknown backend 'slurn' (did you mean 'slurm'?)");
  CHECK(errors_of("clouds:\n  aws:\n    backend: slurm\n    endpoint: http://x:1\n    partition: p\n    gpu: [T4]\n") ==
        "config.yaml:6:5: error: clouds.aws.gpu: unknown key 'gpu' (did you mean 'gpus'?)");
  CHECK(errors_of("clouds:\n  aws:\n    backend: slurm\n    endpoint: x:1\n    partition: p\n") ==
        "config.yaml:4:15: error: clouds.aws.endpoint: endpoint 'x:1' must start with unix://, http:// or https://");
  CHECK(errors_of("clouds:\n  aws:\n    backend: slurm\n    partition: p\n") ==
        "config.yaml:3:5: error: clouds.aws: missing required key 'endpoint' (unix:///path.sock or http://host:port)");
  CHECK(errors_of("clouds:\n  local:\n    gpus: [\"T4:9\"]\n") ==
        "config.yaml:3:12: error: clouds.local.gpus[0]: T4 supports at most 8 GPUs per function (asked 9)");
  CHECK(errors_of("default_cloud: awz\nclouds:\n  aws: {backend: slurm, endpoint: \"http://h:1\", partition: p}\n") ==
        "config.yaml:1:16: error: default_cloud: unknown cloud 'awz' (did you mean 'aws'?)");
  CHECK(errors_of("any: [T4, A200]\n") ==
        "config.yaml:1:11: error: any[1]: unknown GPU type 'A200'; known types: T4, A10G, L4, A100, L40S, H100, H200, V100, A10, "
        "A40, L40, A6000, RTX6000Ada, RTXPRO6000, GH200, B200; to use another GPU, add it under 'catalog:' in the config (e.g. A200: "
        "{memory: [48], max: 8})");
  CHECK(errors_of("any: [T4, tesla-v100]\n") == "config.yaml:1:11: error: any[1]: unknown GPU type 'tesla-v100' (did you mean 'V100'?)");
  CHECK(errors_of("secrets:\n  wandb: {KEY: [1, 2]}\n") ==
        "config.yaml:2:16: error: secrets.wandb.KEY: expected a string value; quote it (\"...\")");
}

TEST_CASE("config: the catalog can be extended and overridden") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("catalog:\n  B200: {memory: [192], max: 8}\n  A100: {default: 80}\nclouds:\n  local:\n    gpus: [\"B200:2\"]\n",
                                    "config.yaml", diagnostics);
  REQUIRE_MESSAGE(config.ok(), util::format_diagnostics(diagnostics));
  REQUIRE(config->catalog.find("b200") != nullptr);
  CHECK(config->catalog.find("B200")->memory_gb == std::vector<int>{192});
  CHECK(config->catalog.find("A100")->default_memory_gb == 80);
  CHECK(config->find_cloud("local")->gpus[0] == gpu::GpuSlot{"B200", 192, 2});
}

TEST_CASE("config: a named config that does not exist is a usage error") {
  auto resolved = cloud::resolve_config_path(std::string("/nonexistent/gpurun.yaml"));
  REQUIRE_FALSE(resolved.ok());
  CHECK(resolved.error().code == util::ExitCode::usage);
  CHECK(resolved.error().message ==
        "config file '/nonexistent/gpurun.yaml' (--config) does not exist; check the path or create it");
}

TEST_CASE("config: secrets readable by others are refused with the chmod fix; values never shown") {
  test::TempDir dir;
  const std::string path = dir.path() + "/config.yaml";
  std::ofstream(path) << "secrets:\n  wandb: {WANDB_API_KEY: \"s3cr3t-value\"}\n";
  std::filesystem::permissions(path, std::filesystem::perms(0644));
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::load_config(path, diagnostics);
  REQUIRE_FALSE(config.ok());
  CHECK(config.error().message == "config file '" + path +
                                      "' holds secrets but others can read it (mode 0644); restrict it with: chmod 600 '" +
                                      path + "'");
  CHECK(config.error().message.find("s3cr3t") == std::string::npos);
  std::filesystem::permissions(path, std::filesystem::perms(0600));
  auto ok = cloud::load_config(path, diagnostics);
  REQUIRE(ok.ok());
  CHECK(ok->find_secret("wandb")->values[0].second == "s3cr3t-value");
}

TEST_CASE("config: a secret value shorter than 4 bytes is refused, named and never shown") {
  CHECK(errors_of("secrets:\n  hf: {TOKEN: \"x7z\", OK: abcd, LATER: \"\"}\n  db:\n    PASSWORD: |\n      ab\n") ==
        "config.yaml:2:15: error: secrets.hf.TOKEN: the value is shorter than 4 bytes (not shown); masking it in output "
        "would hide ordinary text: use the full secret, or leave it empty (\"\") and set GPURUN_SECRET_HF_TOKEN\n"
        "config.yaml:4:15: error: secrets.db.PASSWORD: the value is shorter than 4 bytes (not shown); masking it in "
        "output would hide ordinary text: use the full secret, or leave it empty (\"\") and set "
        "GPURUN_SECRET_DB_PASSWORD");
}

TEST_CASE("config: secret values can come from GPURUN_SECRET_<NAME>_<KEY>") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("secrets:\n  wandb: {WANDB_API_KEY: \"\", OTHER: xyzw}\n", "config.yaml", diagnostics);
  REQUIRE(config.ok());
  const std::vector<std::string> environ = {"GPURUN_SECRET_WANDB_WANDB_API_KEY=from-env", "GPURUN_SECRET_HF_TOKEN=t",
                                            "PATH=/bin"};
  auto values = cloud::secret_values(*config, "wandb", environ);
  CHECK(values == std::vector<std::pair<std::string, std::string>>{{"WANDB_API_KEY", "from-env"}, {"OTHER", "xyzw"}});
  CHECK(cloud::secret_values(*config, "hf", environ) == std::vector<std::pair<std::string, std::string>>{{"TOKEN", "t"}});
  const auto names = cloud::known_secret_names(*config, environ);
  CHECK(std::find(names.begin(), names.end(), "hf") != names.end());
  CHECK(std::find(names.begin(), names.end(), "wandb") != names.end());
}

TEST_CASE("config: how slurm nodes run images") {
  CHECK(errors_of("clouds:\n  aws:\n    backend: slurm\n    endpoint: http://x:1\n    partition: p\n    container_runtime: apptainr\n") ==
        "config.yaml:6:24: error: clouds.aws.container_runtime: unknown container runtime 'apptainr' (did you mean 'apptainer'?)");
  CHECK(errors_of("clouds:\n  aws:\n    backend: slurm\n    endpoint: http://x:1\n    partition: p\n    container_runtime: docker\n") ==
        "config.yaml:6:24: error: clouds.aws.container_runtime: unknown container runtime 'docker'; use bubblewrap, pyxis or apptainer");
  CHECK(errors_of("clouds:\n  aws:\n    backend: slurm\n    endpoint: http://x:1\n    partition: p\n    image_cache: cache\n") ==
        "config.yaml:6:18: error: clouds.aws.image_cache: image_cache 'cache' must be an absolute path on the cluster's nodes");
}

TEST_CASE("config: a slurm cloud offering two memory variants of one type maps them to distinct GRES types") {
  const std::string head = "clouds:\n  gcp:\n    backend: slurm\n    endpoint: http://x:1\n    partition: p\n";
  CHECK(errors_of(head + "    gpus: [\"A100-40GB:8\", \"A100-80GB:8\"]\n") ==
        "config.yaml:6:11: error: clouds.gcp.gpus: cloud 'gcp' offers A100-40GB and A100-80GB, which Slurm would both receive as GRES "
        "type 'a100', so a request for one could land on the other; map each variant to its own GRES type, e.g. gres: {A100-40GB: "
        "a100_40g, A100-80GB: a100_80g}");
  // A map for the plain type alone still sends both variants as one GRES type.
  CHECK(errors_of(head + "    gpus: [\"V100-16GB:8\", \"V100-32GB:8\"]\n    gres: {V100: v100}\n") ==
        "config.yaml:6:11: error: clouds.gcp.gpus: cloud 'gcp' offers V100-16GB and V100-32GB, which Slurm would both receive as GRES "
        "type 'v100', so a request for one could land on the other; map each variant to its own GRES type, e.g. gres: {V100-16GB: "
        "v100_16g, V100-32GB: v100_32g}");
  // Two variants mapped to the same GRES type are no better.
  CHECK(errors_of(head + "    gpus: [\"A100-40GB:8\", \"A100-80GB:8\"]\n    gres: {A100-40GB: a100, A100-80GB: a100}\n") ==
        "config.yaml:6:11: error: clouds.gcp.gpus: cloud 'gcp' offers A100-40GB and A100-80GB, which Slurm would both receive as GRES "
        "type 'a100', so a request for one could land on the other; map each variant to its own GRES type, e.g. gres: {A100-40GB: "
        "a100_40g, A100-80GB: a100_80g}");
  CHECK(errors_of(head + "    gres: {RTX-PRO: x}\n") ==
        "config.yaml:6:12: error: clouds.gcp.gres.RTX-PRO: unknown GPU type 'RTX-PRO'; known types: T4, A10G, L4, A100, L40S, H100, "
        "H200, V100, A10, A40, L40, A6000, RTX6000Ada, RTXPRO6000, GH200, B200; to use another GPU, add it under 'catalog:' in the "
        "config (e.g. RTX-PRO: {memory: [48], max: 8})");

  std::vector<util::Diagnostic> diagnostics;
  // Distinct GRES types per variant; one variant alone may use the plain type; aliases with '-' work as keys.
  auto config = cloud::parse_config(head + "    gpus: [\"A100-40GB:8\", \"A100-80GB:8\", \"H100-94GB:8\", \"RTX-PRO-6000:8\"]\n"
                                           "    gres: {A100-40GB: a100_40g, A100-80GB: a100_80g, RTX-PRO-6000: rtxpro}\n",
                                    "config.yaml", diagnostics);
  REQUIRE_MESSAGE(config.ok(), util::format_diagnostics(diagnostics));
  CHECK(config->find_cloud("gcp")->gpus.size() == 4);
  // The local cloud has no GRES: two variants there are fine.
  auto local = cloud::parse_config("clouds:\n  local:\n    gpus: [\"A100-40GB:2\", \"A100-80GB:2\"]\n", "config.yaml", diagnostics);
  REQUIRE_MESSAGE(local.ok(), util::format_diagnostics(diagnostics));
}

// Finding 6 of issue 14: a string in place of a secret's mapping was echoed ("got a string ('sk-...')").
TEST_CASE("config: a secret value in the wrong shape is never echoed") {
  CHECK(errors_of("secrets:\n  wandb: sk-s3cr3t-value\n") ==
        "config.yaml:2:10: error: secrets.wandb: expected a mapping (key: value lines), got a string (not shown: it may "
        "be secret)");
  CHECK(errors_of("secrets: sk-s3cr3t-value\n") ==
        "config.yaml:1:10: error: secrets: expected a mapping (key: value lines), got a string (not shown: it may be "
        "secret)");
  CHECK(errors_of("secrets:\n  wandb: [s3cr3t-1]\n  hf: 12345678\n") ==
        "config.yaml:2:10: error: secrets.wandb: expected a mapping (key: value lines), got a list (not shown: it may be "
        "secret)\n"
        "config.yaml:3:7: error: secrets.hf: expected a mapping (key: value lines), got a number (not shown: it may be "
        "secret)");
}

// Findings 1-5 of issue 14 hold for the config too: it is read by the same YAML reader.
TEST_CASE("config: the YAML limits apply to the config file") {
  CHECK(errors_of("clouds: " + std::string(100, '[') + std::string(100, ']') + "\n") ==
        "config.yaml:1:72: error: clouds" + [] {
          std::string p;
          for (int i = 0; i < 63; ++i) p += "[0]";
          return p;
        }() + ": lists and mappings are nested more than 64 deep; no manifest or config needs that, flatten this part");
  using namespace std::string_literals;
  CHECK(errors_of("any: [T4]\nclouds:\n  x: {backend: \"lo\0cal\"}\n"s) ==
        std::string("config.yaml:3:19: error: invalid YAML: control characters are not allowed (byte 0x00); the file "
                    "must be UTF-8 text without control characters"));
  test::TempDir dir;
  const std::string path = dir.path() + "/config.yaml";
  std::ofstream(path) << "clouds: {}\n";
  std::filesystem::resize_file(path, 200u << 20);  // sparse: 200 MB of NUL bytes after the first line
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::load_config(path, diagnostics);
  REQUIRE_FALSE(config.ok());
  CHECK(util::format_diagnostics(diagnostics) ==
        path + ":2:8388598: error: the file is larger than 8 MiB; no manifest or config needs that, split it");
}
