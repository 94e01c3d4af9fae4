#include "commands/completer.hpp"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include "cloud/backend/registry.hpp"
#include "commands/completion_kinds.hpp"
#include "cloud/plan/config.hpp"
#include "cloud/state/state.hpp"
#include "gpu/catalog.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && util::iequals(text.substr(0, prefix.size()), prefix);
}

bool hidden(const CLI::Option* option) { return option->get_group().empty(); }
bool takes_value(const CLI::Option* option) { return option->get_items_expected_max() > 0; }
bool positional_only(const CLI::Option* option) { return option->get_positional() && !option->nonpositional(); }

std::string one_line(std::string text) {
  std::replace_if(text.begin(), text.end(), [](char c) { return c == '\t' || c == '\n' || c == '\r'; }, ' ');
  return text;
}

// The parse state after the words before the cursor.
struct Walk {
  std::vector<CLI::App*> chain;                             // root ... innermost subcommand
  std::map<const CLI::Option*, std::vector<std::string>> given;  // option -> values seen
  std::size_t positionals = 0;                              // positional words of the innermost app
  bool after_dashdash = false;
};

// The option named `name` ("--file", "-f") in the innermost app or, falling through, its parents.
CLI::Option* find_option(const Walk& walk, const std::string& name) {
  for (auto it = walk.chain.rbegin(); it != walk.chain.rend(); ++it) {
    for (auto* option : (*it)->get_options()) {
      if (!positional_only(option) && option->check_name(name)) return option;
    }
  }
  return nullptr;
}

CLI::App* find_subcommand(CLI::App* app, const std::string& word) {
  for (auto* sub : app->get_subcommands([](CLI::App*) { return true; })) {
    if (sub->check_name(word)) return sub;
  }
  return nullptr;
}

std::vector<CLI::Option*> positionals_of(CLI::App* app) {
  return app->get_options([](CLI::Option* option) { return positional_only(option); });
}

// The positional option that the innermost app's `index`-th positional word fills, or nullptr.
CLI::Option* positional_at(CLI::App* app, std::size_t index) {
  std::size_t seen = 0;
  for (auto* option : positionals_of(app)) {
    const auto width = static_cast<std::size_t>(std::max(option->get_items_expected_max(), 1));
    if (index < seen + width) return option;
    seen += width;
  }
  return nullptr;
}

bool is_option_word(const std::string& word) { return word.size() > 1 && word[0] == '-'; }

// Walks words[0, end): returns the option whose value comes next (nullptr when none).
CLI::Option* walk_words(Walk& walk, const std::vector<std::string>& words, std::size_t end) {
  CLI::Option* pending = nullptr;
  for (std::size_t i = 0; i < end; ++i) {
    const std::string& word = words[i];
    if (pending != nullptr) {
      walk.given[pending].push_back(word);
      pending = nullptr;
      continue;
    }
    if (!walk.after_dashdash && word == "--") {
      walk.after_dashdash = true;
      continue;
    }
    if (!walk.after_dashdash && starts_with(word, "--") && word.size() > 2) {
      const auto eq = word.find('=');
      auto* option = find_option(walk, word.substr(0, eq));
      if (option == nullptr) continue;
      if (eq != std::string::npos) {
        walk.given[option].push_back(word.substr(eq + 1));
      } else if (takes_value(option)) {
        pending = option;
      } else {
        walk.given[option];
      }
      continue;
    }
    if (!walk.after_dashdash && is_option_word(word)) {
      // A cluster of short flags; the first one taking a value takes the rest or the next word.
      for (std::size_t k = 1; k < word.size(); ++k) {
        auto* option = find_option(walk, std::string("-") + word[k]);
        if (option == nullptr) break;
        if (!takes_value(option)) {
          walk.given[option];
          continue;
        }
        if (k + 1 < word.size()) {
          walk.given[option].push_back(word.substr(k + 1 + (word[k + 1] == '=' ? 1 : 0)));
        } else {
          pending = option;
        }
        break;
      }
      continue;
    }
    if (!walk.after_dashdash && walk.positionals == 0) {
      if (auto* sub = find_subcommand(walk.chain.back(), word)) {
        walk.chain.push_back(sub);
        continue;
      }
    }
    if (auto* option = positional_at(walk.chain.back(), walk.positionals)) walk.given[option].push_back(word);
    ++walk.positionals;
  }
  return pending;
}

// The value given on the line for the first option that `matches`, if any.
std::optional<std::string> given_value(const Walk& walk, const std::function<bool(const CLI::Option*)>& matches) {
  for (const auto& [option, values] : walk.given) {
    if (matches(option) && !values.empty() && !values.back().empty()) return values.back();
  }
  return std::nullopt;
}

std::optional<std::string> config_on_line(const Walk& walk) {
  return given_value(walk, [](const CLI::Option* option) { return option->check_lname("config"); });
}

std::optional<std::string> manifest_on_line(const Walk& walk) {
  return given_value(walk, [](const CLI::Option* option) {
    return !positional_only(option) &&
           (option->check_lname("file") || option->get_type_name().substr(0, 8) == "MANIFEST");
  });
}

// --- Value sources ---------------------------------------------------------------------------

std::optional<cloud::Config> quiet_config(const Walk& walk) {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::load_config(config_on_line(walk), diagnostics);
  if (!config) return std::nullopt;
  return std::move(config).value();
}

std::optional<cloud::StateStore> quiet_state() {
  const std::string dir = cloud::default_state_dir();
  struct stat info{};
  if (dir.empty() || ::stat((dir + "/state.db").c_str(), &info) != 0) return std::nullopt;  // never create it
  auto store = cloud::StateStore::open(dir);
  if (!store) return std::nullopt;
  return std::move(store).value();
}

struct AppFunction {
  std::string app;
  std::string function;
  std::string origin;  // "manifest", "deployed v3"
};

void add_manifest_functions(const std::string& path, std::vector<AppFunction>& out) {
  std::string text;  // at most the YAML size limit is read
  if (manifest::read_yaml_file(path, text) != 0) return;
  auto document = manifest::parse_yaml(text, path);
  if (!document.errors.empty() || !document.root.is_map()) return;
  std::string app;
  if (const auto* node = document.root.find("app"); node != nullptr && node->is_scalar()) app = node->value;
  const auto* functions = document.root.find("functions");
  if (functions == nullptr || !functions->is_map()) return;
  for (const auto& [key, value] : functions->entries) out.push_back({app, key.value, "manifest"});
}

void add_deployed_functions(std::vector<AppFunction>& out) {
  auto state = quiet_state();
  if (!state) return;
  auto deployments = state->list_deployments(false);
  if (!deployments) return;
  for (const auto& deployment : *deployments) {
    for (const auto& function : deployment.functions) {
      out.push_back({deployment.app, function, "deployed v" + std::to_string(deployment.version)});
    }
  }
}

void complete_functions(const Walk& walk, const std::string& prefix, Completion& out) {
  std::vector<AppFunction> found;
  add_manifest_functions(manifest_on_line(walk).value_or("gpurun.yaml"), found);
  add_deployed_functions(found);
  std::map<std::string, std::set<std::string>> apps_of;
  for (const auto& f : found) apps_of[f.function].insert(f.app);
  std::set<std::string> emitted;
  for (const auto& f : found) {
    // APP/FUNCTION where the name is ambiguous, or where the word typed so far has the app.
    const std::string qualified = f.app + "/" + f.function;
    const bool ambiguous = apps_of[f.function].size() > 1;
    const bool typed_app = prefix.find('/') != std::string::npos;
    const std::string value = ambiguous || typed_app ? qualified : f.function;
    if (!starts_with(value, prefix) && !(ambiguous && starts_with(f.function, prefix))) continue;
    if (!emitted.insert(value).second) continue;
    out.candidates.push_back({value, f.app.empty() ? f.origin : f.app + " (" + f.origin + ")"});
  }
}

void complete_runs(const std::string& prefix, Completion& out) {
  out.keep_order = true;
  auto state = quiet_state();
  if (!state) return;
  auto runs = state->list_runs(true);
  if (!runs) return;
  for (const auto& run : *runs) {
    if (!starts_with(run.id, prefix)) continue;
    out.candidates.push_back({run.id, one_line(run.app + "/" + run.function + " " + std::string(cloud::to_string(run.status)))});
  }
}

void complete_apps(const std::string& prefix, Completion& out) {
  auto state = quiet_state();
  if (!state) return;
  auto deployments = state->list_deployments(false);
  if (!deployments) return;
  for (const auto& d : *deployments) {
    if (starts_with(d.app, prefix)) out.candidates.push_back({d.app, "deployed v" + std::to_string(d.version)});
  }
}

void complete_clouds(const Walk& walk, const std::string& prefix, Completion& out) {
  auto config = quiet_config(walk);
  if (!config) return;
  for (const auto& c : config->clouds) {
    if (starts_with(c.name, prefix)) out.candidates.push_back({c.name, c.backend});
  }
}

// GPU specs: none, any, any:N, every TYPE and TYPE:N up to its max, TYPE-NNGB variants (with :N
// once the variant is typed). Case-insensitive; after a comma the fallback list goes on.
void complete_gpus(const Walk& walk, const std::string& word, Completion& out) {
  out.keep_order = true;
  const auto comma = word.rfind(',');
  const std::string head = comma == std::string::npos ? "" : word.substr(0, comma + 1);
  const std::string prefix = comma == std::string::npos ? word : word.substr(comma + 1);
  auto config = quiet_config(walk);
  const gpu::Catalog catalog = config ? config->catalog : gpu::Catalog::builtin();
  auto add = [&](const std::string& spec, const std::string& description) {
    if (istarts_with(spec, prefix)) out.candidates.push_back({head + spec, description});
  };
  if (head.empty()) add("none", "CPU only");
  int any_max = 0;
  for (const auto& name : catalog.any_pool) {
    if (const auto* type = catalog.find(name)) any_max = std::max(any_max, type->max_count);
  }
  add("any", "one of " + util::join(catalog.any_pool, ", "));
  for (int n = 2; n <= any_max; ++n) add("any:" + std::to_string(n), "");
  for (const auto& type : catalog.types()) {
    const std::string memory = std::to_string(type.default_memory_gb) + " GB";
    add(type.name, memory);
    for (int n = 2; n <= type.max_count; ++n) add(type.name + ":" + std::to_string(n), std::to_string(n) + " x " + memory);
    if (type.memory_gb.size() < 2) continue;
    for (int gb : type.memory_gb) {
      const std::string variant = type.name + "-" + std::to_string(gb) + "GB";
      add(variant, std::to_string(gb) + " GB");
      if (!istarts_with(prefix, variant)) continue;
      for (int n = 2; n <= type.max_count; ++n) add(variant + ":" + std::to_string(n), "");
    }
  }
}

void complete_value(const Walk& walk, const CLI::Option& option, const std::string& word, Completion& out) {
  const auto values = value_completion(option);
  switch (values.kind) {
    case ValueKind::file: out.files = true; break;
    case ValueKind::directory: out.directories = true; break;
    case ValueKind::function: complete_functions(walk, word, out); break;
    case ValueKind::run: complete_runs(word, out); break;
    case ValueKind::gpu: complete_gpus(walk, word, out); break;
    case ValueKind::cloud: complete_clouds(walk, word, out); break;
    case ValueKind::app: complete_apps(word, out); break;
    case ValueKind::choices:
      for (const auto& choice : values.choices) {
        if (starts_with(choice, word)) out.candidates.push_back({choice, ""});
      }
      break;
    case ValueKind::none: break;
  }
}

bool is_help_or_version(const CLI::App* app, const CLI::Option* option) {
  return option == app->get_help_ptr() || option == app->get_help_all_ptr() || option->check_lname("version");
}

// Flags of the innermost app, then its parents' (global) options, leaving out options already
// given that take one value at most and the parents' --help/--version.
void complete_flags(const Walk& walk, const std::string& word, Completion& out) {
  std::set<std::string> emitted;
  for (auto it = walk.chain.rbegin(); it != walk.chain.rend(); ++it) {
    const bool parent = it != walk.chain.rbegin();
    for (const auto* option : (*it)->get_options()) {
      if (positional_only(option) || hidden(option)) continue;
      if (parent && is_help_or_version(*it, option)) continue;
      if (walk.given.count(option) != 0 && option->get_items_expected_max() <= 1) continue;
      const std::string description = one_line(option->get_description());
      for (const auto& s : option->get_snames()) {
        if (starts_with("-" + s, word) && emitted.insert("-" + s).second) out.candidates.push_back({"-" + s, description});
      }
      for (const auto& l : option->get_lnames()) {
        if (starts_with("--" + l, word) && emitted.insert("--" + l).second) out.candidates.push_back({"--" + l, description});
      }
    }
  }
}

void complete_subcommands(const Walk& walk, const std::string& word, Completion& out) {
  for (auto* sub : walk.chain.back()->get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_group().empty() || sub->get_name().empty()) continue;
    if (starts_with(sub->get_name(), word)) out.candidates.push_back({sub->get_name(), one_line(sub->get_description())});
  }
}

Completion complete_unguarded(CLI::App& root, const std::vector<std::string>& words) {
  Completion out;
  const std::string word = words.empty() ? "" : words.back();
  Walk walk;
  walk.chain.push_back(&root);
  CLI::Option* pending = walk_words(walk, words, words.empty() ? 0 : words.size() - 1);
  if (pending != nullptr) {
    complete_value(walk, *pending, word, out);
    return out;
  }
  if (!walk.after_dashdash && starts_with(word, "--") && word.find('=') != std::string::npos) {
    const auto eq = word.find('=');
    auto* option = find_option(walk, word.substr(0, eq));
    if (option == nullptr || !takes_value(option)) return out;
    complete_value(walk, *option, word.substr(eq + 1), out);
    for (auto& candidate : out.candidates) candidate.value = word.substr(0, eq + 1) + candidate.value;
    return out;
  }
  if (!walk.after_dashdash && starts_with(word, "-")) {
    complete_flags(walk, word, out);
    return out;
  }
  if (!walk.after_dashdash && walk.positionals == 0) complete_subcommands(walk, word, out);
  if (auto* option = positional_at(walk.chain.back(), walk.positionals)) complete_value(walk, *option, word, out);
  if (!walk.after_dashdash && out.candidates.empty() && !out.files && !out.directories && positional_at(walk.chain.back(), walk.positionals) == nullptr &&
      walk.chain.back()->get_subcommands([](CLI::App* sub) { return !sub->get_group().empty(); }).empty()) {
    complete_flags(walk, word, out);  // nothing else can come here: offer the flags
  }
  return out;
}

}  // namespace

Completion complete(CLI::App& root, const std::vector<std::string>& words) {
  try {
    return complete_unguarded(root, words);
  } catch (...) {
    return {};
  }
}

std::string format_completion(const Completion& completion) {
  std::vector<std::string> directives;
  if (completion.files) directives.emplace_back("files");
  if (completion.directories) directives.emplace_back("dirs");
  if (completion.keep_order) directives.emplace_back("nosort");
  std::string out = ":" + util::join(directives, ",") + "\n";
  for (const auto& candidate : completion.candidates) {
    out += candidate.value;
    if (!candidate.description.empty()) out += "\t" + candidate.description;
    out += '\n';
  }
  return out;
}

}  // namespace gpurun::commands
