#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "cloud/backend/registry.hpp"
#include "cloud/flows/run_flow.hpp"
#include "cloud/plan/run_builder.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;

namespace {

struct Fixture {
  test::TempDir dir;
  cloud::Config config;
  cloud::StateStore store;

  Fixture() : config(make_config()), store(std::move(cloud::StateStore::open(dir.path() + "/state").value())) {}

  static cloud::Config make_config() {
    std::vector<util::Diagnostic> diagnostics;
    return cloud::parse_config("", "c.yaml", diagnostics).value();
  }

  manifest::Manifest manifest(const std::string& text) {
    const std::string path = dir.path() + "/gpurun.yaml";
    std::ofstream(path) << text;
    manifest::ManifestContext context;
    context.catalog = &config.catalog;
    context.clouds = config.cloud_names();
    std::vector<util::Diagnostic> diagnostics;
    auto m = manifest::load_manifest(path, context, diagnostics);
    REQUIRE_MESSAGE(m.ok(), util::format_diagnostics(diagnostics));
    return *m;
  }

  cloud::RunSpec spec(const manifest::Manifest& m, const std::string& function, const cloud::RunOverrides& overrides = {},
                      std::optional<gpu::GpuRequest> request = std::nullopt) {
    const auto* f = m.find_function(function);
    REQUIRE(f != nullptr);
    cloud::PlacedFunction placed{f->name, "local", "local", std::nullopt, std::nullopt, f->image, {}};
    auto built = cloud::build_run_spec(m, *f, placed, request.value_or(f->gpu), config, overrides);
    REQUIRE_MESSAGE(built.ok(), built.error().message);
    return *built;
  }
};

}  // namespace

TEST_CASE("run spec: args are appended to argv commands and shell-quoted onto string commands") {
  Fixture fx;
  auto m = fx.manifest("app: a\nfunctions:\n  argv: {command: [echo, hi]}\n  shell: {command: echo hi}\n");
  cloud::RunOverrides overrides;
  overrides.args = {"it's", "$(x)"};
  CHECK(fx.spec(m, "argv", overrides).argv == std::vector<std::string>{"echo", "hi", "it's", "$(x)"});
  CHECK(fx.spec(m, "shell", overrides).argv == std::vector<std::string>{"/bin/sh", "-c", "echo hi 'it'\\''s' '$(x)'"});
  CHECK(fx.spec(m, "argv").cwd == m.dir);
}

TEST_CASE("run spec: --env overrides the manifest's env, secrets are names only") {
  Fixture fx;
  auto m = fx.manifest("app: a\nfunctions:\n  f: {command: [env], env: {A: \"1\", B: \"2\"}}\n");
  cloud::RunOverrides overrides;
  overrides.env = {{"B", "3"}, {"C", "4"}};
  const auto spec = fx.spec(m, "f", overrides);
  CHECK(spec.env == std::vector<std::pair<std::string, std::string>>{{"A", "1"}, {"B", "3"}, {"C", "4"}});
  const auto json = cloud::to_json(spec);
  auto back = cloud::run_spec_from_json(json);
  REQUIRE(back.ok());
  CHECK(back->env == spec.env);
  CHECK(back->argv == spec.argv);
}

TEST_CASE("run spec: the function's cpu and memory, kept through the stored JSON") {
  Fixture fx;
  auto m = fx.manifest("app: a\nfunctions:\n  big: {command: [env], cpu: 0.5, memory: 2GiB}\n  plain: {command: [env]}\n");
  const auto big = fx.spec(m, "big");
  CHECK(big.cpu == std::optional<double>(0.5));
  CHECK(big.memory_bytes == std::optional<std::uint64_t>(2ULL << 30));
  auto back = cloud::run_spec_from_json(cloud::to_json(big));
  REQUIRE(back.ok());
  CHECK(back->cpu == big.cpu);
  CHECK(back->memory_bytes == big.memory_bytes);
  const auto plain = cloud::run_spec_from_json(cloud::to_json(fx.spec(m, "plain")));
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->cpu.has_value());
  CHECK_FALSE(plain->memory_bytes.has_value());
}

TEST_CASE("run spec: GPU alternatives for the lease; any = the pool, then any local GPU") {
  Fixture fx;
  auto m = fx.manifest("app: a\nfunctions:\n  any: {command: [x], gpu: \"any:2\"}\n  a100: {command: [x], gpu: A100}\n"
                       "  list: {command: [x], gpu: [A100-80GB, T4]}\n  cpu: {command: [x]}\n");
  const auto any = fx.spec(m, "any");
  REQUIRE(any.gpu_alternatives.size() == 3);
  CHECK(any.gpu_alternatives[0].type == "T4");
  CHECK(any.gpu_alternatives[0].count == 2);
  CHECK(any.gpu_alternatives[1].type == "A10G");
  CHECK(any.gpu_alternatives[2].type.empty());
  CHECK(any.gpu_text == "2x any GPU");
  const auto a100 = fx.spec(m, "a100");
  REQUIRE(a100.gpu_alternatives.size() == 1);
  CHECK(a100.gpu_alternatives[0].min_memory_gb == 40);
  CHECK(a100.gpu_text == "1x A100-40GB");
  CHECK(fx.spec(m, "list").gpu_text == "1x A100-80GB or 1x T4");
  CHECK(fx.spec(m, "cpu").gpu_alternatives.empty());
}

TEST_CASE("run spec: ranges, memory-first specs and '!' become lease alternatives, largest count first") {
  Fixture fx;
  auto m = fx.manifest("app: a\nfunctions:\n  range: {command: [x], gpu: \"H100:1..2\"}\n  exact: {command: [x], gpu: \"H100!\"}\n"
                       "  mem: {command: [x], gpu: \"16GB..20GB:1..2\"}\n");
  auto text = [](const cloud::RunSpec& spec) {
    std::vector<std::string> out;
    for (const auto& a : spec.gpu_alternatives) {
      out.push_back(fmt::format("{}:{}-{}:{}", a.type, a.min_memory_gb, a.max_memory_gb, a.count));
    }
    return out;
  };
  CHECK(text(fx.spec(m, "range")) == std::vector<std::string>{"H100:80-0:2", "H100:80-0:1"});
  CHECK(text(fx.spec(m, "exact")) == std::vector<std::string>{"H100:80-80:1"});
  CHECK(text(fx.spec(m, "mem")) == std::vector<std::string>{"T4:16-16:2", "V100:16-16:2", "A100:20-20:2", "T4:16-16:1", "V100:16-16:1",
                                                            "A100:20-20:1", ":16-20:2", ":16-20:1"});
  const auto back = cloud::run_spec_from_json(cloud::to_json(fx.spec(m, "exact")));
  REQUIRE(back.ok());
  REQUIRE(back->gpu_alternatives.size() == 1);
  CHECK(back->gpu_alternatives[0].max_memory_gb == 80);
  CHECK(fx.spec(m, "range").gpu_text == "H100:1..2");
  CHECK(fx.spec(m, "mem").gpu_text == "16GB..20GB:1..2");
  CHECK(fx.spec(m, "exact").gpu_text == "1x H100-80GB");
}

TEST_CASE("run spec: planning is pure; the prepare step creates and records volumes") {
  Fixture fx;
  auto m = fx.manifest("app: a\nvolumes: {data: {}}\nfunctions:\n  f: {command: [x], volumes: {/data: data}}\n");
  auto spec = fx.spec(m, "f");
  REQUIRE(spec.mounts.size() == 1);
  CHECK(spec.mounts[0].path == "/data");
  CHECK(spec.mounts[0].host_path.empty());
  CHECK_FALSE(std::filesystem::exists(fx.store.dir() + "/volumes"));
  CHECK(fx.store.list_volumes("a").value().empty());

  auto backend = cloud::make_backend("local", nullptr).value();
  cloud::PlacedFunction placed{"f", "local", "local", std::nullopt, std::nullopt, std::nullopt, {"data"}};
  cloud::PrepareContext dry{fx.store, fx.config, m, {}, {}, true};
  REQUIRE(cloud::prepare_run(dry, *backend, placed, spec).ok());
  CHECK(spec.mounts[0].host_path == fx.store.dir() + "/volumes/a/data");
  CHECK_FALSE(std::filesystem::exists(spec.mounts[0].host_path));

  cloud::PrepareContext ctx{fx.store, fx.config, m, {}, {}, false, {}};
  REQUIRE(cloud::prepare_run(ctx, *backend, placed, spec).ok());
  CHECK(std::filesystem::is_directory(spec.mounts[0].host_path));
  const auto volumes = fx.store.list_volumes("a").value();
  REQUIRE(volumes.size() == 1);
  CHECK(volumes[0].cloud == "local");
}

TEST_CASE("run spec: retry delays grow by the backoff and stop at max_delay") {
  cloud::RunSpec spec;
  spec.initial_delay = std::chrono::milliseconds(1000);
  spec.backoff = 2.0;
  spec.max_delay = std::chrono::milliseconds(5000);
  CHECK(cloud::retry_delay(spec, 1).count() == 1000);
  CHECK(cloud::retry_delay(spec, 2).count() == 2000);
  CHECK(cloud::retry_delay(spec, 3).count() == 4000);
  CHECK(cloud::retry_delay(spec, 4).count() == 5000);
}

TEST_CASE("resolve_function: -f, then deployments; ambiguous names need APP/FUNCTION") {
  Fixture fx;
  const std::string other = fx.dir.path() + "/other.yaml";
  std::ofstream(other) << "app: b\nfunctions:\n  train: {command: [x]}\n";
  std::vector<util::Diagnostic> diagnostics;
  auto found = cloud::resolve_function("train", other, fx.config, fx.store, diagnostics);
  REQUIRE(found.ok());
  CHECK(found->manifest.app == "b");
  auto missing = cloud::resolve_function("trian", other, fx.config, fx.store, diagnostics);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == other + " has no function 'trian' (did you mean 'train'?)");
  CHECK(missing.error().code == util::ExitCode::usage);
  auto wrong_app = cloud::resolve_function("a/train", other, fx.config, fx.store, diagnostics);
  REQUIRE_FALSE(wrong_app.ok());
  CHECK(wrong_app.error().message == other + " is app 'b', not 'a'");
}
