#include <doctest/doctest.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/app.hpp"
#include "commands/completer.hpp"
#include "commands/completion_kinds.hpp"
#include "cloud/state/state.hpp"
#include "tests/unit/read_text.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;

namespace {

class EnvGuard {
 public:
  explicit EnvGuard(std::string name) : name_(std::move(name)) {
    if (const char* value = std::getenv(name_.c_str())) saved_ = value;
  }
  ~EnvGuard() {
    if (saved_) ::setenv(name_.c_str(), saved_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

 private:
  std::string name_;
  std::optional<std::string> saved_;
};

struct Output {
  int code = 0;
  std::string out, err;
};

// Runs the real command tree in-process.
Output run(std::vector<std::string> args) {
  std::ostringstream out, err;
  commands::Context ctx{.global = {}, .out = out, .err = err};
  Output result;
  result.code = cli::run_cli(args, ctx);
  result.out = out.str();
  result.err = err.str();
  return result;
}

Output complete(std::vector<std::string> words) {
  words.insert(words.begin(), "__complete");
  return run(words);
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<std::string> values(const commands::Completion& completion) {
  std::vector<std::string> out;
  for (const auto& candidate : completion.candidates) out.push_back(candidate.value);
  return out;
}

// A tree with every value kind, standing for the commands being written on other branches.
struct KindsTree {
  CLI::App app{"test", "gpurun"};
  std::string config, file, function, gpu, cloud, run_id, out_dir, app_name, format;
  std::vector<std::string> env;
  bool json = false, follow = false;
  KindsTree() {
    app.add_option("--config", config)->type_name("FILE");
    app.fallthrough();
    auto* run = app.add_subcommand("run", "Run a function");
    commands::complete_as(run->add_option("function", function, "Function"), commands::ValueKind::function);
    run->add_option("-f,--file", file, "Manifest")->type_name("FILE");
    commands::complete_as(run->add_option("--gpu", gpu, "GPU"), commands::ValueKind::gpu);
    commands::complete_as(run->add_option("--cloud", cloud, "Cloud"), commands::ValueKind::cloud);
    run->add_option("-e,--env", env, "KEY=VALUE")->type_name("KEY=VALUE");
    commands::complete_as(run->add_option("--out", out_dir, "Directory"), commands::ValueKind::directory);
    run->add_flag("--json", json, "JSON");
    auto* cancel = app.add_subcommand("cancel", "Cancel a run");
    commands::complete_as(cancel->add_option("run", run_id, "Run"), commands::ValueKind::run);
    auto* logs = app.add_subcommand("logs", "Logs");
    logs->add_flag("--follow", follow, "Follow");
    logs->add_option("--format", format, "Format")->check(CLI::IsMember({"text", "json"}));
    auto* undeploy = app.add_subcommand("undeploy", "Undeploy");
    commands::complete_as(undeploy->add_option("app", app_name, "App"), commands::ValueKind::app);
  }
};

}  // namespace

TEST_CASE("completion: subcommands with descriptions; the hidden __complete is not offered") {
  auto all = complete({""});
  CHECK(all.code == 0);
  CHECK(all.err.empty());
  CHECK(all.out.rfind(":\nvalidate\tCheck a manifest", 0) == 0);
  CHECK(all.out.find("\ngpus\t") != std::string::npos);
  CHECK(all.out.find("\ncompletion\t") != std::string::npos);
  CHECK(all.out.find("__complete") == std::string::npos);
  CHECK(complete({"comp"}).out ==
        ":\ncompletion\tPrint the shell completion script for bash, zsh or fish (see docs/completion.md)\n");
  CHECK(complete({"zzz"}).out == ":\n");
}

TEST_CASE("completion: flags of a subcommand, short and long, then the global ones") {
  CHECK(complete({"plan", "-"}).out ==
        ":\n-h\tPrint this help message and exit\n--help\tPrint this help message and exit\n"
        "-f\tManifest file (same as the positional argument)\n--file\tManifest file (same as the positional argument)\n"
        "--cloud\tPin every function to this cloud\n--json\tPrint the plan as JSON on stdout\n"
        "--config\tConfig file (default: $GPURUN_CONFIG, then ~/.config/gpurun/config.yaml)\n");
  CHECK(complete({"plan", "--j"}).out == ":\n--json\tPrint the plan as JSON on stdout\n");
  CHECK(complete({"plan", "--json", "--j"}).out == ":\n");  // given already
  CHECK(complete({"--"}).out.find("\n--version\t") != std::string::npos);
  CHECK(complete({"gpus", "--"}).out.find("--version") == std::string::npos);
  // Nothing else can follow `gpus`: an empty word offers its flags.
  CHECK(complete({"gpus", ""}).out.find("\n--json\t") != std::string::npos);
}

TEST_CASE("completion: file values tell the shell to complete paths") {
  CHECK(complete({"plan", "-f", "ex"}).out == ":files\n");
  CHECK(complete({"validate", "--file", ""}).out == ":files\n");
  CHECK(complete({"validate", "--file=ex"}).out == ":files\n");
  CHECK(complete({"validate", ""}).out == ":files\n");  // the MANIFEST positional
  CHECK(complete({"--config", ""}).out == ":files\n");
}

TEST_CASE("completion: a fixed set of choices; words like --help are never acted on") {
  CHECK(complete({"completion", ""}).out == ":\nbash\nzsh\nfish\n");
  CHECK(complete({"completion", "z"}).out == ":\nzsh\n");
  auto help = complete({"--help", "--version", "plan", "--help", "--j"});
  CHECK(help.code == 0);
  CHECK(help.out == ":\n--json\tPrint the plan as JSON on stdout\n");
}

TEST_CASE("completion: cloud names from the config named on the line") {
  gpurun::test::TempDir dir;
  const std::string config = dir.path() + "/config.yaml";
  write(config, "default_cloud: gcp\nclouds:\n  gcp:\n    backend: local\n  gke:\n    backend: local\n");
  CHECK(complete({"--config", config, "plan", "--cloud", ""}).out == ":\ngcp\tlocal\ngke\tlocal\nlocal\tlocal\n");
  CHECK(complete({"plan", "--config=" + config, "--cloud=gk"}).out == ":\n--cloud=gke\tlocal\n");
  write(config, "clouds: [broken\n");
  auto broken = complete({"--config", config, "plan", "--cloud", ""});
  CHECK(broken.out == ":\n");
  CHECK(broken.err.empty());
}

TEST_CASE("completion: the completion command prints the installed scripts byte for byte") {
  const std::string dir = std::string(GPURUN_SOURCE_DIR) + "/completions/";
  CHECK(run({"completion", "bash"}).out == test::read_text(dir + "gpurun.bash"));
  CHECK(run({"completion", "zsh"}).out == test::read_text(dir + "_gpurun"));
  CHECK(run({"completion", "fish"}).out == test::read_text(dir + "gpurun.fish"));
  CHECK(run({"completion", "bash"}).out.find("complete -F _gpurun gpurun") != std::string::npos);
  auto bad = run({"completion", "tcsh"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("tcsh not in {bash,zsh,fish}") != std::string::npos);
}

TEST_CASE("completion: value kinds come from type names and IsMember checks") {
  KindsTree tree;
  CHECK(commands::value_completion(*tree.app.get_option("--config")).kind == commands::ValueKind::file);
  auto* logs = tree.app.get_subcommand("logs");
  auto format = commands::value_completion(*logs->get_option("--format"));
  CHECK(format.kind == commands::ValueKind::choices);
  CHECK(format.choices == std::vector<std::string>{"text", "json"});
  CHECK(commands::value_completion(*logs->get_option("--follow")).kind == commands::ValueKind::none);
  CHECK(tree.app.get_subcommand("run")->get_option("--gpu")->get_type_name() == "GPU");
}

TEST_CASE("completion: GPU specs: none, any, types, counts up to the max, memory variants, lists") {
  KindsTree tree;
  auto a1 = commands::complete(tree.app, {"run", "--gpu", "a1"});
  CHECK(a1.keep_order);
  // Counts go up to each type's per-node maximum in the catalog (A10G 8, A100 16, any 8).
  auto counted = [](const std::string& base, int most) {
    std::vector<std::string> out{base};
    for (int n = 2; n <= most; ++n) out.push_back(base + ":" + std::to_string(n));
    return out;
  };
  auto joined = [](std::vector<std::vector<std::string>> parts) {
    std::vector<std::string> out;
    for (auto& part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
  };
  CHECK(values(a1) == joined({counted("A10G", 8), counted("A100", 16), {"A100-20GB", "A100-40GB", "A100-80GB"}, counted("A10", 8)}));
  CHECK(values(commands::complete(tree.app, {"run", "--gpu", "A100-80GB"})) == counted("A100-80GB", 16));
  CHECK(values(commands::complete(tree.app, {"run", "--gpu", "an"})) == counted("any", 8));
  CHECK(values(commands::complete(tree.app, {"run", "--gpu=H1"})).front() == "--gpu=H100");
  CHECK(values(commands::complete(tree.app, {"run", "--gpu", "H100,an"})) == counted("H100,any", 8));
  auto all = values(commands::complete(tree.app, {"run", "--gpu", ""}));
  CHECK(all.front() == "none");
  CHECK(std::find(all.begin(), all.end(), "T4:8") != all.end());
  CHECK(std::find(all.begin(), all.end(), "T4:9") == all.end());
  CHECK(std::find(all.begin(), all.end(), "H200") != all.end());
}

TEST_CASE("completion: function names from the manifest on the line and from deployments") {
  gpurun::test::TempDir dir;
  EnvGuard state_env("GPURUN_STATE_DIR");
  ::setenv("GPURUN_STATE_DIR", (dir.path() + "/state").c_str(), 1);
  const std::string manifest = dir.path() + "/m.yaml";
  write(manifest, "app: demo\nfunctions:\n  train:\n    command: [python, train.py]\n  eval:\n    command: echo\n");
  KindsTree tree;
  auto only_manifest = commands::complete(tree.app, {"run", "-f", manifest, ""});
  CHECK(values(only_manifest) == std::vector<std::string>{"train", "eval"});
  CHECK(only_manifest.candidates[0].description == "demo (manifest)");
  CHECK(values(commands::complete(tree.app, {"run", "--file=" + manifest, "t"})) == std::vector<std::string>{"train"});
  CHECK(values(commands::complete(tree.app, {"run", "-f", dir.path() + "/missing.yaml", ""})).empty());
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/state"));  // completion never creates the state

  {
    auto store = cloud::StateStore::open();
    REQUIRE(store.ok());
    REQUIRE(store->record_deployment(cloud::Deployment{"audio", 0, "sha256:aa", "/a/gpurun.yaml", "/a", "{}", {"embed", "train"}, {}, "", 0}).ok());
    REQUIRE(store->record_deployment(cloud::Deployment{"demo", 0, "sha256:bb", manifest, dir.path(), "{}", {"eval", "train"}, {}, "", 0}).ok());
  }
  auto both = commands::complete(tree.app, {"run", "-f", manifest, ""});
  CHECK(values(both) == std::vector<std::string>{"demo/train", "eval", "embed", "audio/train"});
  CHECK(both.candidates[2].description == "audio (deployed v1)");
  CHECK(values(commands::complete(tree.app, {"run", "-f", manifest, "tr"})) == std::vector<std::string>{"demo/train", "audio/train"});
  CHECK(values(commands::complete(tree.app, {"run", "-f", manifest, "audio/"})) == std::vector<std::string>{"audio/embed", "audio/train"});
  CHECK(values(commands::complete(tree.app, {"undeploy", ""})) == std::vector<std::string>{"audio", "demo"});

  write(manifest, "app: demo\nfunctions: {train: [\n");  // broken YAML: the manifest adds nothing
  CHECK(values(commands::complete(tree.app, {"run", "-f", manifest, "e"})) == std::vector<std::string>{"embed", "eval"});
}

TEST_CASE("completion: run ids newest first, in that order, and nothing from a broken state") {
  gpurun::test::TempDir dir;
  EnvGuard state_env("GPURUN_STATE_DIR");
  ::setenv("GPURUN_STATE_DIR", dir.path().c_str(), 1);
  KindsTree tree;
  CHECK(values(commands::complete(tree.app, {"cancel", ""})).empty());
  std::vector<std::string> ids;
  {
    auto store = cloud::StateStore::open();
    REQUIRE(store.ok());
    for (const char* function : {"prep", "train", "eval"}) {
      auto run = store->create_run(cloud::NewRun{"demo", function, "local", "local", "", "{}", "", "", true});
      REQUIRE(run.ok());
      ids.insert(ids.begin(), run->run.id);
    }
  }
  auto runs = commands::complete(tree.app, {"cancel", ""});
  CHECK(runs.keep_order);
  std::vector<std::string> with_last{"@last"};
  with_last.insert(with_last.end(), ids.begin(), ids.end());
  CHECK(values(runs) == with_last);
  CHECK(runs.candidates[0].description == "newest run: " + ids[0] + " demo/eval queued");
  CHECK(runs.candidates[1].description == "demo/eval queued");
  CHECK(values(commands::complete(tree.app, {"cancel", "@"})) == std::vector<std::string>{"@last"});
  CHECK(values(commands::complete(tree.app, {"cancel", ids[1]})) == std::vector<std::string>{ids[1]});
  CHECK(commands::format_completion(commands::complete(tree.app, {"cancel", ids[2]})) == ":nosort\n" + ids[2] + "\tdemo/prep queued\n");

  // A broken database (its WAL gone too, or SQLite would read the pages from there).
  std::filesystem::remove(dir.path() + "/state.db-wal");
  std::filesystem::remove(dir.path() + "/state.db-shm");
  write(dir.path() + "/state.db", "this is not a database, not at all; it is long enough to have a header............");
  CHECK(values(commands::complete(tree.app, {"cancel", ""})).empty());
}

TEST_CASE("completion: directories, unknown kinds, short clusters and after --") {
  KindsTree tree;
  CHECK(commands::format_completion(commands::complete(tree.app, {"run", "--out", ""})) == ":dirs\n");
  CHECK(commands::format_completion(commands::complete(tree.app, {"run", "-e", ""})) == ":\n");
  CHECK(commands::format_completion(commands::complete(tree.app, {"run", "-fgpurun.yaml", "--json", "--j"})) == ":\n");
  CHECK(values(commands::complete(tree.app, {"logs", "--format", ""})) == std::vector<std::string>{"text", "json"});
  CHECK(values(commands::complete(tree.app, {"logs", "--", "-"})).empty());
  CHECK(values(commands::complete(tree.app, {"logs", "--fo"})) == std::vector<std::string>{"--follow", "--format"});
}
