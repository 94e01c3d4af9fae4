#include <doctest/doctest.h>

#include "commands/dry_run.hpp"

using namespace gpurun;

TEST_CASE("dry_run_summary: the run in words, secret names only, every secret value masked") {
  cloud::RunSpec spec;
  spec.app = "demo";
  spec.function = "train";
  spec.cloud = "aws";
  spec.backend = "slurm";
  spec.argv = {"python", "train.py", "it's"};
  spec.cwd = "/src";
  spec.env = {{"EPOCHS", "3"}, {"LEAK", "sekrit-value"}};
  spec.secrets = {"hf"};
  spec.mounts = {{"/vol/demo/data", "/data", "data"}};
  spec.gpu_text = "1x T4";
  spec.timeout = std::chrono::minutes(5);
  spec.max_retries = 2;
  const std::string text = commands::dry_run_summary(spec, {{"hf", {{"HF_TOKEN", "sekrit-value"}}}});
  CHECK(text ==
        "dry run: nothing is started\n"
        "  function   train (app demo)\n"
        "  cloud      aws (backend slurm)\n"
        "  gpu        1x T4\n"
        "  command    python train.py 'it'\\''s'\n"
        "  directory  /src\n"
        "  env        EPOCHS=3\n"
        "  env        LEAK=***\n"
        "  secrets    hf (values hidden)\n"
        "  volume     data at /data (/vol/demo/data)\n"
        "  timeout    5m per attempt\n"
        "  retries    2 (delay 1s times 2 per retry, at most 1m)\n");
}
