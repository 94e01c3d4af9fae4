#include "manifest/manifest.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <filesystem>
#include <fmt/format.h>
#include <unordered_map>
#include <unordered_set>

#include "gpu/catalog.hpp"
#include "manifest/checker.hpp"
#include "manifest/image_reference.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::manifest {

const Function* Manifest::find_function(std::string_view name) const {
  for (const auto& f : functions) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const Image* Manifest::find_image(std::string_view name) const {
  for (const auto& i : images) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int max_retries_limit = 10;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

// [a-z0-9][a-z0-9<extra>]{0,62}
bool valid_name(std::string_view name, std::string_view extra) {
  if (name.empty() || name.size() > 63 || !is_lower_alnum(name.front())) return false;
  for (char c : name) {
    if (!is_lower_alnum(c) && extra.find(c) == std::string_view::npos) return false;
  }
  return true;
}

// A valid spelling close to `name` (lower-cased, other characters replaced by '-'), or "".
std::string suggest_name(std::string_view name, std::string_view extra) {
  std::string out;
  for (char c : name) {
    const char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (is_lower_alnum(l) || extra.find(l) != std::string_view::npos) {
      out += l;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && !is_lower_alnum(out.front())) out.erase(out.begin());
  while (!out.empty() && !is_lower_alnum(out.back())) out.pop_back();
  if (out.size() > 63) out.resize(63);
  return valid_name(out, extra) ? out : std::string();
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
  for (char c : name) {
    if (!is_alnum(c) && c != '_') return false;
  }
  return true;
}

// Lexically normalised absolute path without a trailing '/': "/data/./x/" -> "/data/x".
std::string normal_path(std::string_view path) {
  if (path.find("//") == std::string_view::npos && path.find("/.") == std::string_view::npos &&
      (path.size() <= 1 || path.back() != '/')) {
    return std::string(path);
  }
  std::string out = fs::path(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// A signed decimal number ("-1", "0.5"), unquoted; nullopt for anything else.
std::optional<double> signed_number(const YamlNode& node) {
  if (!node.is_scalar() || node.quoted || node.value.empty()) return std::nullopt;
  double value = 0;
  const char* begin = node.value.data();
  const char* end = begin + node.value.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value)) return std::nullopt;
  return value;
}

// A signed whole number, unquoted.
std::optional<long long> signed_integer(const YamlNode& node) {
  if (!node.is_scalar() || node.quoted || node.value.empty()) return std::nullopt;
  long long value = 0;
  const char* begin = node.value.data();
  const char* end = begin + node.value.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// The node as the user wrote it, in flow style: "A100:40", "[H100, any]", "{type: A100, count: 2}".
std::string as_written(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::null: return "null";
    case YamlNode::Kind::scalar: return node.value;
    case YamlNode::Kind::sequence: {
      std::string out = "[";
      for (std::size_t i = 0; i < node.items.size(); ++i) {
        if (i > 0) out += ", ";
        out += as_written(node.items[i]);
      }
      return out + "]";
    }
    case YamlNode::Kind::map: {
      std::string out = "{";
      for (std::size_t i = 0; i < node.entries.size(); ++i) {
        if (i > 0) out += ", ";
        out += node.entries[i].first.value;
        out += ": ";
        out += as_written(node.entries[i].second);
      }
      return out + "}";
    }
  }
  return {};
}

// An OCI/Docker image reference: [domain/]path[:tag][@algorithm:hex].

const std::vector<std::string> top_keys{"app", "images", "volumes", "functions"};
const std::vector<std::string> image_keys{"base", "add", "env", "workdir"};
const std::vector<std::string> add_keys{"src", "dst"};
const std::vector<std::string> function_keys{"command", "image",   "volumes", "cloud", "gpu",   "timeout",
                                             "retries", "env",     "secrets", "cpu",   "memory"};
const std::vector<std::string> gpu_keys{"type", "memory", "count"};
const std::vector<std::string> retry_keys{"max", "backoff", "initial_delay", "max_delay"};

constexpr std::string_view name_rule = "use 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit";

// Names the manifest defines (images, volumes) or the config offers (clouds, secrets): hashed
// for lookups, listed in order for suggestions.
class NameSet {
 public:
  void add(std::string_view name) {
    if (set_.insert(name).second) list_.emplace_back(name);
  }
  bool contains(std::string_view name) const { return set_.count(name) != 0; }
  const std::vector<std::string>& list() const { return list_; }
  bool empty() const { return list_.empty(); }

 private:
  std::unordered_set<std::string_view> set_;
  std::vector<std::string> list_;
};

class Validator {
 public:
  Validator(Checker& check, const std::vector<util::Diagnostic>& out, const ManifestContext& context,
            const gpu::Catalog& catalog, Manifest& manifest)
      : check_(check), out_(out), catalog_(catalog), manifest_(manifest) {
    for (const auto& c : context.clouds) clouds_.add(c);
    clouds_.add("local");
    for (const auto& s : context.secrets) secrets_.add(s);
  }

  void run(const YamlNode& root) {
    if (root.is_null()) {
      check_.error(root_position(root), "",
                   "the manifest is empty; start with 'app: NAME' and a 'functions:' section");
      return;
    }
    if (!check_.expect_map(root, "")) return;
    check_.check_keys(root, "", top_keys);
    if (const auto* app = root.find("app")) {
      validate_app(*app);
    } else {
      check_.error(root, "", "missing required key 'app'; add e.g. 'app: my-app' (the application's name)");
    }
    if (const auto* images = root.find("images")) validate_images(*images);
    if (const auto* volumes = root.find("volumes")) validate_volumes(*volumes);
    if (const auto* functions = root.find("functions")) {
      validate_functions(*functions);
    } else {
      check_.error(root, "",
                   "missing required key 'functions'; declare at least one, e.g. 'functions: {train: {command: ./train}}'");
    }
  }

 private:
  static YamlNode root_position(const YamlNode& root) {
    YamlNode at;
    at.line = std::max(root.line, 1);
    at.column = std::max(root.column, 1);
    return at;
  }

  void validate_app(const YamlNode& node) {
    auto name = check_.string(node, "app");
    if (!name) return;
    if (!valid_name(*name, "-")) {
      std::string message = fmt::format(
          "invalid app name '{}': use 1-63 lowercase letters, digits or '-', starting with a letter or digit", *name);
      const auto suggestion = suggest_name(*name, "-");
      if (!suggestion.empty()) message += fmt::format(" (e.g. '{}')", suggestion);
      check_.error(node, "app", std::move(message));
      return;
    }
    manifest_.app = *name;
  }

  // Checks a name key of `images`, `volumes` or `functions`.
  bool check_name(const YamlNode& key, const std::string& path, std::string_view what) {
    if (valid_name(key.value, "_-")) return true;
    std::string message = fmt::format("invalid {} name '{}': {}", what, key.value, name_rule);
    const auto suggestion = suggest_name(key.value, "_-");
    if (!suggestion.empty()) message += fmt::format(" (e.g. '{}')", suggestion);
    check_.error(key, path, std::move(message));
    return false;
  }

  // ---- images ----

  void validate_images(const YamlNode& node) {
    if (node.is_null()) return;
    if (!check_.expect_map(node, "images")) return;
    for (const auto& [key, value] : node.entries) images_.add(key.value);
    manifest_.images.reserve(node.entries.size());
    for (const auto& [key, value] : node.entries) {
      const std::string path = join_path("images", key.value);
      bool ok = check_name(key, path, "image");
      Image image;
      image.name = key.value;
      image.position = {key.line, key.column};
      ok = validate_image(value, path, image) && ok;
      if (ok) manifest_.images.push_back(std::move(image));
    }
  }

  bool validate_image(const YamlNode& node, const std::string& path, Image& image) {
    if (!check_.expect_map(node, path)) return false;
    const std::size_t before = errors();
    check_.check_keys(node, path, image_keys);
    if (const auto* base = node.find("base")) {
      const std::string base_path = path + ".base";
      if (auto text = check_.string(*base, base_path)) {
        validate_base(*base, base_path, *text);
        image.base = *text;
      }
    } else {
      check_.error(node, path,
                   "missing required key 'base'; use an image reference (e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04), "
                   "'scratch' or 'oci:PATH[:TAG]'");
    }
    if (const auto* add = node.find("add")) validate_add(*add, path + ".add", image);
    if (const auto* env = node.find("env")) validate_env(*env, path + ".env", image.env);
    if (const auto* workdir = node.find("workdir")) {
      const std::string workdir_path = path + ".workdir";
      if (auto text = check_.string(*workdir, workdir_path)) {
        if (text->empty() || text->front() != '/') {
          check_.error(*workdir, workdir_path, fmt::format("workdir '{}' is not absolute; write '/{}'", *text, *text));
        } else {
          image.workdir = normal_path(*text);
        }
      }
    }
    return errors() == before;
  }

  void validate_base(const YamlNode& node, const std::string& path, const std::string& text) {
    if (text == "scratch") return;
    if (text.rfind("oci:", 0) == 0) {
      const std::string_view rest = std::string_view(text).substr(4);
      if (rest.empty() || rest.front() == ':') {
        check_.error(node, path,
                     fmt::format("'{}' names no OCI layout directory; write oci:PATH or oci:PATH:TAG", text));
      }
      return;
    }
    if (const auto problem = reference_problem(text)) {
      check_.error(node, path,
                   fmt::format("invalid image reference '{}': {}; expected [REGISTRY/]NAME[:TAG][@sha256:DIGEST] with a "
                               "lowercase name (e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04), 'scratch' or 'oci:PATH[:TAG]'",
                               text, *problem));
    }
  }

  void validate_add(const YamlNode& node, const std::string& path, Image& image) {
    if (!check_.expect_secret_sequence(node, path)) return;
    for (std::size_t i = 0; i < node.items.size(); ++i) {
      const YamlNode& item = node.items[i];
      const std::string item_path = fmt::format("{}[{}]", path, i);
      ImageAdd add;
      bool ok = true;
      if (item.is_map()) {
        check_.check_keys(item, item_path, add_keys);
        const auto* src = item.find("src");
        if (src == nullptr) {
          check_.error(item, item_path, "missing required key 'src'; give a path relative to the manifest's directory");
          ok = false;
        } else {
          ok = validate_add_source(*src, item_path + ".src", add.src);
        }
        if (const auto* dst = item.find("dst")) {
          const std::string dst_path = item_path + ".dst";
          if (auto text = check_.string(*dst, dst_path)) {
            if (text->empty() || text->front() != '/') {
              check_.error(*dst, dst_path,
                           fmt::format("destination '{}' is not absolute; write '/{}', or leave out 'dst' to keep the "
                                       "relative path under workdir",
                                       *text, *text));
              ok = false;
            } else {
              add.dst = *text;
            }
          } else {
            ok = false;
          }
        }
      } else if (item.is_scalar()) {
        ok = validate_add_source(item, item_path, add.src);
      } else {
        check_.error(item, item_path,
                     fmt::format("expected a path or {{src: PATH, dst: /ABSOLUTE/PATH}}, got {}", item.describe()));
        ok = false;
      }
      if (ok) image.add.push_back(std::move(add));
    }
  }

  bool validate_add_source(const YamlNode& node, const std::string& path, std::string& out) {
    auto text = check_.string(node, path);
    if (!text) return false;
    if (text->empty()) {
      check_.error(node, path, "empty path; give a file or directory relative to the manifest's directory");
      return false;
    }
    if (text->front() == '/') {
      check_.error(node, path,
                   fmt::format("'{}' is an absolute path; sources are relative to the manifest's directory: copy it "
                               "next to the manifest and write './{}'",
                               *text, fs::path(*text).filename().string()));
      return false;
    }
    const std::string normal = fs::path(*text).lexically_normal().string();
    if (normal == ".." || normal.rfind("../", 0) == 0) {
      check_.error(node, path,
                   fmt::format("'{}' leaves the manifest's directory; sources must stay inside it (move the files "
                               "there or the manifest up)",
                               *text));
      return false;
    }
    out = *text;
    return true;
  }

  void validate_env(const YamlNode& node, const std::string& path,
                    std::vector<std::pair<std::string, std::string>>& out) {
    if (!check_.expect_map(node, path)) return;
    out.reserve(node.entries.size());
    for (const auto& [key, value] : node.entries) {
      if (!valid_env_name(key.value)) {
        check_.error(key, join_path(path, key.value),
                     fmt::format("invalid environment variable name '{}': use letters, digits and '_', not starting "
                                 "with a digit",
                                 key.value));
        continue;
      }
      if (!value.is_scalar()) {
        check_.error(value, join_path(path, key.value),
                     fmt::format("expected a string value, got {}; quote it (\"...\")", value.describe()));
        continue;
      }
      out.emplace_back(key.value, value.value);
    }
  }

  // ---- volumes ----

  void validate_volumes(const YamlNode& node) {
    if (node.is_null()) return;
    if (!check_.expect_map(node, "volumes")) return;
    for (const auto& [key, value] : node.entries) volumes_.add(key.value);
    for (const auto& [key, value] : node.entries) {
      const std::string path = join_path("volumes", key.value);
      bool ok = check_name(key, path, "volume");
      if (!value.is_null()) {
        if (!check_.expect_map(value, path)) {
          ok = false;
        } else {
          for (const auto& [setting, setting_value] : value.entries) {
            check_.error(setting, join_path(path, setting.value),
                         fmt::format("unknown key '{}'; volumes take no settings: write '{}: {{}}'", setting.value,
                                     key.value));
            ok = false;
          }
        }
      }
      if (ok) manifest_.volumes.push_back(Volume{key.value, {key.line, key.column}});
    }
  }

  // ---- functions ----

  void validate_functions(const YamlNode& node) {
    if (!check_.expect_map(node, "functions")) return;
    if (node.entries.empty()) {
      check_.error(node, "functions",
                   "no functions defined; add at least one, e.g. 'train: {command: ./train}'");
      return;
    }
    manifest_.functions.reserve(node.entries.size());
    std::string path;
    for (const auto& [key, value] : node.entries) {
      path = join_path("functions", key.value);
      const std::size_t before = errors();
      check_name(key, path, "function");
      Function function;
      function.name = key.value;
      function.position = {key.line, key.column};
      validate_function(value, path, function);
      if (errors() == before) manifest_.functions.push_back(std::move(function));
    }
  }

  void validate_function(const YamlNode& node, const std::string& path, Function& f) {
    if (!check_.expect_map(node, path)) return;
    check_.check_keys(node, path, function_keys);
    if (const auto* command = node.find("command")) {
      validate_command(*command, path + ".command", f);
    } else {
      check_.error(node, path,
                   "missing required key 'command'; add the program to run, e.g. command: [\"python\", \"train.py\"]");
    }
    if (const auto* image = node.find("image")) {
      const std::string image_path = path + ".image";
      if (auto name = check_.string(*image, image_path)) {
        if (images_.contains(*name)) {
          f.image = std::move(*name);
        } else {
          undefined(*image, image_path, "image", *name, images_,
                    "define it under 'images:' or remove 'image' to run on the host");
        }
      }
    }
    if (const auto* volumes = node.find("volumes")) validate_mounts(*volumes, path + ".volumes", f, node.find("image") == nullptr);
    if (const auto* cloud = node.find("cloud")) {
      const std::string cloud_path = path + ".cloud";
      if (auto name = check_.string(*cloud, cloud_path)) {
        if (clouds_.contains(*name)) {
          f.cloud = std::move(*name);
          f.cloud_position = {cloud->line, cloud->column};
        } else {
          undefined(*cloud, cloud_path, "cloud", *name, clouds_, "add it to the config or remove 'cloud'");
        }
      }
    }
    if (const auto* gpu = node.find("gpu")) validate_gpu(*gpu, path + ".gpu", f);
    if (const auto* timeout = node.find("timeout")) {
      if (auto value = duration(*timeout, path + ".timeout")) {
        if (value->count() == 0) {
          check_.error(*timeout, path + ".timeout", "timeout must be more than 0; remove 'timeout' for no limit");
        } else {
          f.timeout = *value;
        }
      }
    }
    if (const auto* retries = node.find("retries")) validate_retries(*retries, path + ".retries", f.retries);
    if (const auto* env = node.find("env")) validate_env(*env, path + ".env", f.env);
    if (const auto* secrets = node.find("secrets")) validate_secrets(*secrets, path + ".secrets", f);
    if (const auto* cpu = node.find("cpu")) {
      const auto value = signed_number(*cpu);
      if (!value) {
        check_.error(*cpu, path + ".cpu", fmt::format("expected a number of CPU cores (e.g. 4 or 0.5), got {}", cpu->describe()));
      } else if (*value <= 0) {
        check_.error(*cpu, path + ".cpu", fmt::format("cpu must be more than 0 (got {}); ask for e.g. 0.5 or 4", cpu->value));
      } else {
        f.cpu = *value;
      }
    }
    if (const auto* memory = node.find("memory")) {
      const std::string memory_path = path + ".memory";
      if (auto text = check_.string(*memory, memory_path)) {
        const auto bytes = util::parse_size(*text);
        if (!bytes) {
          check_.error(*memory, memory_path,
                       fmt::format("invalid size '{}'; write e.g. 512MiB, 16GiB or 16GB (a plain number is MiB)", *text));
        } else if (*bytes == 0) {
          check_.error(*memory, memory_path, "memory must be more than 0; ask for e.g. 16GiB or remove 'memory'");
        } else {
          f.memory_bytes = *bytes;
        }
      }
    }
  }

  void undefined(const YamlNode& at, const std::string& path, std::string_view what, const std::string& name,
                 const NameSet& defined, std::string_view fix) {
    const bool config = what == "cloud" || what == "secret";
    const auto suggestion = util::did_you_mean(name, defined.list());
    if (suggestion) {
      check_.error(at, path,
                   fmt::format("{} {} '{}' (did you mean '{}'?)", config ? "unknown" : "undefined", what, name, *suggestion));
    } else if (defined.empty()) {
      check_.error(at, path,
                   fmt::format("{} {} '{}'; no {}s are defined; {}", config ? "unknown" : "undefined", what, name, what, fix));
    } else {
      check_.error(at, path,
                   fmt::format("{} {} '{}'; {} {}s: {}; {}", config ? "unknown" : "undefined", what, name,
                               config ? "configured" : "defined", what, util::join(defined.list(), ", "), fix));
    }
  }

  void validate_command(const YamlNode& node, const std::string& path, Function& f) {
    if (node.is_scalar()) {
      if (util::trim(node.value).empty()) {
        check_.error(node, path, "command is empty; give a shell command, e.g. './train --epochs 3'");
        return;
      }
      f.shell = node.value;
      return;
    }
    if (!node.is_sequence()) {
      check_.error(node, path,
                   fmt::format("expected a list of arguments or a shell command string, got {}", node.describe()));
      return;
    }
    if (node.items.empty()) {
      check_.error(node, path, "command is empty; give the program and its arguments, e.g. [\"python\", \"train.py\"]");
      return;
    }
    std::vector<std::string> argv;
    argv.reserve(node.items.size());
    bool ok = true;
    for (std::size_t i = 0; i < node.items.size(); ++i) {
      const YamlNode& item = node.items[i];
      if (!item.is_scalar()) {
        check_.error(item, fmt::format("{}[{}]", path, i),
                     fmt::format("expected a string argument, got {}", item.describe()));
        ok = false;
        continue;
      }
      argv.push_back(item.value);
    }
    if (!node.items.front().is_scalar()) return;
    if (node.items.front().value.empty()) {
      check_.error(node.items.front(), path + "[0]", "the program name (first item) is empty; put the program to run first");
      ok = false;
    }
    if (ok) f.argv = std::move(argv);
  }

  // `on_host`: the function runs on the host (no image), whose files decide what can be mounted.
  void validate_mounts(const YamlNode& node, const std::string& path, Function& f, bool on_host) {
    if (!check_.expect_map(node, path)) return;
    std::vector<std::pair<std::string, const YamlNode*>> seen;  // normalised path -> key
    for (const auto& [key, value] : node.entries) {
      const std::string mount_path = join_path(path, key.value);
      bool ok = true;
      std::string normal;
      if (key.value.empty() || key.value.front() != '/') {
        check_.error(key, mount_path,
                     fmt::format("mount path '{}' is not absolute; write '/{}'", key.value, key.value));
        ok = false;
      } else {
        normal = normal_path(key.value);
        struct stat st {};
        if (normal == "/") {
          check_.error(key, mount_path, "cannot mount a volume on '/'; pick a directory such as '/data'");
          ok = false;
        } else if (normal == "/proc" || normal == "/dev" || normal == "/sys" || normal.rfind("/proc/", 0) == 0 ||
                   normal.rfind("/sys/", 0) == 0) {
          check_.error(key, mount_path,
                       fmt::format("cannot mount a volume on '{}': the sandbox provides it; pick a directory such as '/data'",
                                   normal));
          ok = false;
        } else if (on_host && ::stat(normal.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
          check_.error(key, mount_path,
                       fmt::format("cannot mount a volume on '{}': it is a file on this machine and a volume is a directory; "
                                   "pick a path that is a directory or does not exist, such as '/data'",
                                   normal));
          ok = false;
        } else if (const auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == normal; });
                   it != seen.end()) {
          check_.error(key, mount_path,
                       fmt::format("mount path '{}' is the same as '{}' (line {}); mount one volume per path", key.value,
                                   it->second->value, it->second->line));
          ok = false;
        } else {
          seen.emplace_back(normal, &key);
        }
      }
      auto name = check_.string(value, mount_path);
      if (!name) continue;
      if (!volumes_.contains(*name)) {
        undefined(value, mount_path, "volume", *name, volumes_,
                  fmt::format("define it under 'volumes:' (e.g. 'volumes: {{{}: {{}}}}')", *name));
        ok = false;
      }
      if (ok) f.volumes.push_back(VolumeMount{std::move(normal), std::move(*name)});
    }
  }

  void validate_secrets(const YamlNode& node, const std::string& path, Function& f) {
    if (!check_.expect_secret_sequence(node, path)) return;
    for (std::size_t i = 0; i < node.items.size(); ++i) {
      const YamlNode& item = node.items[i];
      const std::string item_path = fmt::format("{}[{}]", path, i);
      auto name = check_.string(item, item_path);
      if (!name) continue;
      if (!secrets_.contains(*name)) {
        undefined(item, item_path, "secret", *name, secrets_, "define it in the config's 'secrets:' section");
        continue;
      }
      if (std::find(f.secrets.begin(), f.secrets.end(), *name) != f.secrets.end()) {
        check_.error(item, item_path, fmt::format("secret '{}' is listed twice; remove one", *name));
        continue;
      }
      f.secrets.push_back(std::move(*name));
    }
  }

  std::optional<std::chrono::milliseconds> duration(const YamlNode& node, const std::string& path) {
    auto text = check_.string(node, path);
    if (!text) return std::nullopt;
    auto value = util::parse_duration(*text);
    if (!value) {
      check_.error(node, path, fmt::format("invalid duration '{}'; write e.g. 30s, 10m, 2h or plain seconds", *text));
    }
    return value;
  }

  void validate_retries(const YamlNode& node, const std::string& path, RetryPolicy& out) {
    const auto max_retries = [&](const YamlNode& value, const std::string& at) -> std::optional<int> {
      const auto n = signed_integer(value);
      if (!n) {
        check_.error(value, at, fmt::format("expected a whole number of retries, got {}", value.describe()));
        return std::nullopt;
      }
      if (*n < 0 || *n > max_retries_limit) {
        check_.error(value, at,
                     fmt::format("retries must be between 0 and {} (got {})", max_retries_limit, value.value));
        return std::nullopt;
      }
      return static_cast<int>(*n);
    };
    if (node.is_scalar()) {
      if (auto n = max_retries(node, path)) out.max_retries = *n;
      return;
    }
    if (!node.is_map()) {
      check_.error(node, path,
                   fmt::format("expected a number of retries or {{max, backoff, initial_delay, max_delay}}, got {}",
                               node.describe()));
      return;
    }
    check_.check_keys(node, path, retry_keys);
    RetryPolicy policy;
    if (const auto* max = node.find("max")) {
      if (auto n = max_retries(*max, path + ".max")) policy.max_retries = *n;
    } else {
      check_.error(node, path, "missing required key 'max'; say how many retries to make after the first attempt");
    }
    if (const auto* backoff = node.find("backoff")) {
      const auto value = signed_number(*backoff);
      if (!value) {
        check_.error(*backoff, path + ".backoff", fmt::format("expected a number, got {}", backoff->describe()));
      } else if (*value < 1.0 || *value > 10.0) {
        check_.error(*backoff, path + ".backoff",
                     fmt::format("backoff must be between 1.0 and 10.0 (got {})", backoff->value));
      } else {
        policy.backoff = *value;
      }
    }
    const YamlNode* initial = node.find("initial_delay");
    if (initial != nullptr) {
      if (auto value = duration(*initial, path + ".initial_delay")) {
        if (*value > 1h) {
          check_.error(*initial, path + ".initial_delay",
                       fmt::format("initial_delay must be at most 1h (got {})", initial->value));
        } else {
          policy.initial_delay = *value;
        }
      }
    }
    if (const auto* max_delay = node.find("max_delay")) {
      if (auto value = duration(*max_delay, path + ".max_delay")) {
        if (*value < 1s || *value > 1h) {
          check_.error(*max_delay, path + ".max_delay",
                       fmt::format("max_delay must be between 1s and 1h (got {})", max_delay->value));
        } else if (*value < policy.initial_delay) {
          check_.error(*max_delay, path + ".max_delay",
                       fmt::format("max_delay ({}) is shorter than initial_delay ({}); raise it or lower initial_delay",
                                   max_delay->value, util::format_duration(policy.initial_delay)));
        } else {
          policy.max_delay = *value;
        }
      }
    }
    out = policy;
  }

  // ---- gpu ----

  void validate_gpu(const YamlNode& node, const std::string& path, Function& f) {
    f.gpu_position = {node.line, node.column};
    std::vector<gpu::GpuChoice> choices;
    bool ok = true;
    if (node.is_sequence()) {
      if (node.items.empty()) {
        check_.error(node, path,
                     "empty GPU list; list GPU types in order of preference (e.g. [H100, A100-80GB, any]) or remove "
                     "'gpu' for CPU only");
        return;
      }
      for (std::size_t i = 0; i < node.items.size(); ++i) {
        auto choice = gpu_choice(node.items[i], fmt::format("{}[{}]", path, i), false);
        if (choice) {
          choices.push_back(std::move(*choice));
        } else {
          ok = false;
        }
      }
    } else if (node.is_scalar()) {
      auto request = gpu_request(node, path);
      if (!request) return;
      f.gpu.any_of = request->any_of;
      choices = std::move(request->alternatives);
    } else if (node.is_map() && gpu_set(node)) {
      for (const auto& [key, value] : node.entries) {
        auto choice = gpu_choice(key, join_path(path, key.value), false);
        if (choice) {
          choices.push_back(std::move(*choice));
        } else {
          ok = false;
        }
      }
      f.gpu.any_of = true;
    } else {
      auto choice = gpu_choice(node, path, true);
      if (!choice) return;
      choices.push_back(std::move(*choice));
    }
    if (!ok) return;
    f.gpu.alternatives = std::move(choices);
    f.gpu_as_written = as_written(node);
    if (node.is_map() && f.gpu.any_of) {  // "{H100:8, A100:8}", not "{H100:8: null, ...}"
      std::vector<std::string> keys;
      for (const auto& entry : node.entries) keys.push_back(entry.first.value);
      f.gpu_as_written = "{" + util::join(keys, ", ") + "}";
    }
  }

  // A scalar `gpu:`: one spec, a comma list ("A10G,A100", "A10,A10G:2") or a set ("{H100:8, A100:8}").
  std::optional<gpu::GpuRequest> gpu_request(const YamlNode& node, const std::string& path) {
    if (util::iequals(util::trim(node.value), "none")) {
      check_.error(node, path, "'none' is for --gpu; remove 'gpu' for CPU only");
      return std::nullopt;
    }
    auto request = gpu::parse_gpu_request(node.value, catalog_);
    if (!request) {
      check_.error(node, path, request.error().message);
      return std::nullopt;
    }
    return std::move(*request);
  }

  // SkyPilot's set {H100:8, A100:8}, which YAML reads as a mapping whose keys have no values.
  static bool gpu_set(const YamlNode& node) {
    if (node.entries.empty()) return false;
    return std::all_of(node.entries.begin(), node.entries.end(),
                       [](const auto& entry) { return entry.second.is_null() && !is_gpu_key(entry.first.value); });
  }

  static bool is_gpu_key(const std::string& key) {
    return std::find(gpu_keys.begin(), gpu_keys.end(), key) != gpu_keys.end() || key == "name";
  }

  // Keys that other tools use in a GPU object: dstack's `name:`, SkyPilot's `{T4: 1}`.
  bool foreign_gpu_keys(const YamlNode& node, const std::string& path) {
    bool found = false;
    for (const auto& [key, value] : node.entries) {
      if (key.value == "name") {
        check_.error(key, join_path(path, key.value), "unknown key 'name' (did you mean 'type'?)");
        found = true;
      } else if (!is_gpu_key(key.value) && value.is_scalar() && catalog_.find(key.value) != nullptr) {
        check_.error(key, join_path(path, key.value),
                     fmt::format("write the GPU as one string '{}:{}' (no space after ':'), not the mapping '{}: {}'", key.value,
                                 value.value, key.value, value.value));
        found = true;
      }
    }
    return found;
  }

  std::optional<gpu::GpuChoice> gpu_choice(const YamlNode& node, const std::string& path, bool top) {
    if (node.is_scalar()) {
      auto choice = gpu::parse_gpu_choice(node.value, catalog_);
      if (!choice) {
        check_.error(node, path, choice.error().message);
        return std::nullopt;
      }
      return std::move(*choice);
    }
    if (!node.is_map()) {
      check_.error(node, path,
                   fmt::format("expected a GPU type (e.g. A100, A100-80GB:2, any), {{type, memory, count}}{}, got {}",
                               top ? " or a fallback list [H100, A100-80GB, any]" : "", node.describe()));
      return std::nullopt;
    }
    const std::size_t before = errors();
    if (foreign_gpu_keys(node, path)) return std::nullopt;
    check_.check_keys(node, path, gpu_keys);
    std::optional<std::string> type;
    if (const auto* t = node.find("type")) {
      type = check_.string(*t, path + ".type");
    } else {
      check_.error(node, path, "missing required key 'type'; name a GPU type (e.g. A100) or 'any'");
    }
    std::optional<std::string_view> memory;
    if (const auto* m = node.find("memory")) {
      if (!m->is_scalar() || m->value.empty()) {
        check_.error(*m, path + ".memory",
                     fmt::format("expected the GPU memory in GB (e.g. 40GB, 24GB+ or 16GB..24GB), got {}", m->describe()));
      } else {
        memory = m->value;
      }
    }
    std::optional<std::string_view> count;
    if (const auto* c = node.find("count")) {
      const auto n = signed_integer(*c);
      if (c->is_scalar() && !n && c->value.find("..") != std::string::npos) {
        count = c->value;  // a range: 1..2
      } else if (!n) {
        check_.error(*c, path + ".count", fmt::format("expected a whole number of GPUs or a range (e.g. 2 or 1..4), got {}", c->describe()));
      } else if (*n < 1 || *n > 1024) {
        check_.error(*c, path + ".count", fmt::format("count must be at least 1 (got {}); remove 'gpu' for CPU only", c->value));
      } else {
        count = c->value;
      }
    }
    if (errors() != before || !type) return std::nullopt;
    auto choice = gpu::make_gpu_choice(*type, memory, count, catalog_);
    if (!choice) {
      check_.error(node, path, choice.error().message);
      return std::nullopt;
    }
    return std::move(*choice);
  }

  // Diagnostics so far: a part is kept in the model only when validating it added none.
  std::size_t errors() const { return out_.size(); }

  Checker& check_;
  const std::vector<util::Diagnostic>& out_;
  const gpu::Catalog& catalog_;
  Manifest& manifest_;
  NameSet images_;
  NameSet volumes_;
  NameSet clouds_;
  NameSet secrets_;
};

std::string absolute_dir(const std::string& path) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(fs::path(path), ec);
  if (ec) return {};
  return absolute.lexically_normal().parent_path().string();
}

}  // namespace

util::Result<Manifest> parse_manifest(std::string_view text, const std::string& path, const ManifestContext& context,
                                      std::vector<util::Diagnostic>& diagnostics) {
  const std::size_t before = diagnostics.size();
  Manifest manifest;
  manifest.path = path;
  manifest.dir = absolute_dir(path);
  YamlDocument doc = parse_yaml(text, path);
  const bool broken = !doc.errors.empty() && doc.root.is_null();
  for (auto& e : doc.errors) diagnostics.push_back(std::move(e));
  if (!broken) {
    static const gpu::Catalog builtin = gpu::Catalog::builtin();
    Checker check(path, diagnostics);
    Validator validator(check, diagnostics, context, context.catalog != nullptr ? *context.catalog : builtin, manifest);
    validator.run(doc.root);
  }
  const std::size_t count = diagnostics.size() - before;
  if (count > 0) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("{}: {} error{}", path, count, count == 1 ? "" : "s"));
  }
  return manifest;
}

util::Result<Manifest> load_manifest(const std::string& path, const ManifestContext& context,
                                     std::vector<util::Diagnostic>& diagnostics) {
  const auto fail = [&path](int error) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("cannot read manifest '{}': {}; pass the manifest with -f FILE or create "
                                        "./gpurun.yaml",
                                        path, std::strerror(error)));
  };
  std::string text;
  if (const int error = read_yaml_file(path, text); error != 0) return fail(error);
  return parse_manifest(text, path, context, diagnostics);
}

}  // namespace gpurun::manifest
