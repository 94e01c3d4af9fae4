// Times parse_manifest on a generated manifest: `gpurun_manifest_bench [FUNCTIONS] [ROUNDS]`.
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "gpu/catalog.hpp"
#include "manifest/manifest.hpp"
#include "manifest/yaml_tree.hpp"

using namespace gpurun;

int main(int argc, char** argv) {
  const int functions = argc > 1 ? std::atoi(argv[1]) : 10'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  std::string text = "app: bench\nimages:\n  trainer:\n    base: nvidia/cuda:12.4.1-runtime-ubuntu22.04\n"
                     "    add: [./src, {src: ./weights, dst: /models}]\nvolumes:\n  datasets: {}\n  ckpt: {}\nfunctions:\n";
  const char* gpus[] = {"A100", "H100:2", "[H100, A100-80GB, any]", "{type: A100, memory: 40, count: 2}", "T4"};
  for (int i = 0; i < functions; ++i) {
    text += fmt::format(
        "  fn-{}:\n    command: [\"python\", \"train.py\", \"--shard\", \"{}\"]\n    image: trainer\n    gpu: {}\n"
        "    env: {{EPOCHS: \"3\", SHARD: \"{}\"}}\n    volumes: {{/data: datasets, /ckpt: ckpt}}\n    timeout: 2h\n",
        i, i, gpus[i % 5], i);
  }
  const gpu::Catalog catalog = gpu::Catalog::builtin();
  manifest::ManifestContext context{&catalog, {"local", "gcp"}, {"wandb"}};
  double best_yaml = 1e9;
  double best_total = 1e9;
  for (int r = 0; r < rounds; ++r) {
    // CPU time, so that other processes on a busy machine do not count.
    const std::clock_t start = std::clock();
    const std::size_t nodes = manifest::parse_yaml(text, "bench.yaml").root.entries.size();
    const std::clock_t mid = std::clock();
    if (nodes == 0) return 1;
    std::vector<util::Diagnostic> diagnostics;
    auto result = manifest::parse_manifest(text, "bench.yaml", context, diagnostics);
    const std::clock_t end = std::clock();
    if (!result || result->functions.size() != static_cast<std::size_t>(functions)) {
      fmt::print("unexpected: {} diagnostics\n", diagnostics.size());
      return 1;
    }
    best_yaml = std::min(best_yaml, 1000.0 * static_cast<double>(mid - start) / CLOCKS_PER_SEC);
    best_total = std::min(best_total, 1000.0 * static_cast<double>(end - mid) / CLOCKS_PER_SEC);
  }
  fmt::print("{} functions, {} bytes: parse_yaml {:.1f} ms, parse_manifest (yaml + validation) {:.1f} ms (CPU time, best of {})\n",
             functions, text.size(), best_yaml, best_total, rounds);
  return 0;
}
