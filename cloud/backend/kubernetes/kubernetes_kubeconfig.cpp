#include "cloud/backend/kubernetes/kubernetes_kubeconfig.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "cloud/exec/process.hpp"
#include "cloud/plan/config.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/diagnostic.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using manifest::YamlNode;
namespace fs = std::filesystem;

// A named entry (cluster, user or context) with the directory of the file that defined it.
struct Named {
  YamlNode body;
  std::string dir;
};

// The merged view of the files read.
struct Merged {
  std::map<std::string, Named> clusters, users, contexts;
  std::vector<std::string> context_order;
  std::string current_context;
  std::string source;
};

util::Error bad_kubeconfig(const std::string& message) { return util::make_error(util::ExitCode::usage, message); }

std::string scalar_at(const YamlNode& map, std::string_view key) {
  const YamlNode* node = map.find(key);
  return node != nullptr && node->is_scalar() ? node->value : std::string();
}

// `clusters:` / `users:` / `contexts:`: a list of {name, <inner>: {...}}; first definition wins.
void merge_list(const YamlNode& root, std::string_view list_key, std::string_view inner_key, const std::string& dir,
                std::map<std::string, Named>& into, std::vector<std::string>* order) {
  const YamlNode* list = root.find(list_key);
  if (list == nullptr || !list->is_sequence()) return;
  for (const auto& item : list->items) {
    const std::string name = scalar_at(item, "name");
    const YamlNode* body = item.find(inner_key);
    if (name.empty() || into.count(name) != 0) continue;
    into[name] = Named{body != nullptr ? *body : YamlNode{}, dir};
    if (order != nullptr) order->push_back(name);
  }
}

util::Result<void> merge_file(const std::string& path, const std::string& text, Merged& merged) {
  auto document = manifest::parse_yaml(text, path);
  if (!document.errors.empty()) {
    return bad_kubeconfig("invalid kubeconfig: " + util::format_diagnostic(document.errors.front()));
  }
  const YamlNode& root = document.root;
  if (root.is_null()) return {};
  if (!root.is_map()) {
    return bad_kubeconfig(fmt::format("invalid kubeconfig {}: expected a mapping (apiVersion, clusters, users, contexts), got {}",
                                      path, root.describe_kind()));
  }
  const std::string dir = fs::path(path).parent_path().string();
  merge_list(root, "clusters", "cluster", dir, merged.clusters, nullptr);
  merge_list(root, "users", "user", dir, merged.users, nullptr);
  merge_list(root, "contexts", "context", dir, merged.contexts, &merged.context_order);
  if (merged.current_context.empty()) merged.current_context = scalar_at(root, "current-context");
  return {};
}

// Reads every file of `paths`; a single named file must exist, in a list missing ones are skipped.
util::Result<Merged> read_merged(const std::vector<std::string>& paths) {
  Merged merged;
  std::vector<std::string> read;
  for (const auto& path : paths) {
    int error_number = 0;
    auto text = util::read_file(path, error_number);
    if (!text) {
      if (error_number == ENOENT && paths.size() > 1) continue;
      return bad_kubeconfig(fmt::format("cannot read kubeconfig {}: {}; set the cloud's kubeconfig: or $KUBECONFIG to "
                                        "a readable file",
                                        path, std::strerror(error_number)));
    }
    if (auto ok = merge_file(path, *text, merged); !ok) return ok.error();
    read.push_back(path);
  }
  if (read.empty()) {
    return bad_kubeconfig(fmt::format("no kubeconfig found: none of {} exists; set the cloud's kubeconfig: or $KUBECONFIG",
                                      util::join(paths, ", ")));
  }
  merged.source = util::join(read, ":");
  return merged;
}

std::string resolve_path(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return path;
  return (fs::path(dir) / path).string();
}

// A PEM from `<key>-data` (base64) or the file `<key>` (relative to the kubeconfig's directory).
util::Result<std::string> pem_of(const Named& entry, const std::string& key, const std::string& what,
                                 const std::string& source) {
  if (std::string data = scalar_at(entry.body, key + "-data"); !data.empty()) {
    auto decoded = decode_base64(data);
    if (!decoded) {
      return bad_kubeconfig(fmt::format("{}-data of {} in kubeconfig {} is not base64; paste the output of `base64 -w0 FILE`",
                                        key, what, source));
    }
    return *decoded;
  }
  std::string file = scalar_at(entry.body, key);
  if (file.empty()) return std::string();
  file = resolve_path(entry.dir, file);
  int error_number = 0;
  auto text = util::read_file(file, error_number);
  if (!text) {
    return bad_kubeconfig(fmt::format("cannot read {} '{}' of {} (kubeconfig {}): {}; fix the path", key, file, what, source,
                                      std::strerror(error_number)));
  }
  return *text;
}

util::Result<void> fill_cluster(const Named& cluster, const std::string& name, const std::string& source,
                                KubeCredentials& out) {
  out.server = scalar_at(cluster.body, "server");
  if (out.server.empty()) {
    return bad_kubeconfig(fmt::format("cluster '{}' in kubeconfig {} has no server; add its https://host:port", name, source));
  }
  out.insecure_skip_tls_verify = scalar_at(cluster.body, "insecure-skip-tls-verify") == "true";
  auto ca = pem_of(cluster, "certificate-authority", fmt::format("cluster '{}'", name), source);
  if (!ca) return ca.error();
  out.ca_pem = *ca;
  return {};
}

KubeExecPlugin exec_plugin_of(const YamlNode& exec, const std::string& dir) {
  KubeExecPlugin plugin;
  plugin.api_version = scalar_at(exec, "apiVersion");
  plugin.command = scalar_at(exec, "command");
  if (plugin.command.find('/') != std::string::npos) plugin.command = resolve_path(dir, plugin.command);
  if (const YamlNode* args = exec.find("args"); args != nullptr && args->is_sequence()) {
    for (const auto& arg : args->items) plugin.args.push_back(arg.value);
  }
  if (const YamlNode* env = exec.find("env"); env != nullptr && env->is_sequence()) {
    for (const auto& item : env->items) plugin.env.emplace_back(scalar_at(item, "name"), scalar_at(item, "value"));
  }
  return plugin;
}

util::Result<void> fill_user(const Named& user, const std::string& name, const std::string& source, KubeCredentials& out) {
  const std::string what = fmt::format("user '{}'", name);
  if (user.body.find("username") != nullptr || user.body.find("auth-provider") != nullptr) {
    return bad_kubeconfig(fmt::format("{} in kubeconfig {} uses {}, which gpurun does not support; use a token, a client "
                                      "certificate or an exec plugin",
                                      what, source, user.body.find("username") != nullptr ? "username/password" : "auth-provider"));
  }
  out.token = scalar_at(user.body, "token");
  if (std::string file = scalar_at(user.body, "tokenFile"); out.token.empty() && !file.empty()) {
    file = resolve_path(user.dir, file);
    int error_number = 0;
    auto text = util::read_file(file, error_number);
    if (!text) {
      return bad_kubeconfig(fmt::format("cannot read tokenFile '{}' of {} (kubeconfig {}): {}; fix the path", file, what,
                                        source, std::strerror(error_number)));
    }
    out.token = std::string(util::trim(*text));
  }
  auto cert = pem_of(user, "client-certificate", what, source);
  if (!cert) return cert.error();
  auto key = pem_of(user, "client-key", what, source);
  if (!key) return key.error();
  if (cert->empty() != key->empty()) {
    return bad_kubeconfig(fmt::format("{} in kubeconfig {} has a client {} without its {}; give both", what, source,
                                      cert->empty() ? "key" : "certificate", cert->empty() ? "certificate" : "key"));
  }
  out.client_cert_pem = std::move(*cert);
  out.client_key_pem = std::move(*key);
  if (const YamlNode* exec = user.body.find("exec"); exec != nullptr && exec->is_map()) {
    out.exec = exec_plugin_of(*exec, user.dir);
    if (out.exec->command.empty()) {
      return bad_kubeconfig(fmt::format("the exec plugin of {} in kubeconfig {} has no command", what, source));
    }
  }
  return {};
}

std::string context_list(const Merged& merged) {
  return merged.context_order.empty() ? std::string("it defines none") : util::join(merged.context_order, ", ");
}

}  // namespace

std::vector<std::string> kubeconfig_paths(const std::string& configured, const std::string& kubeconfig_env,
                                          const std::string& home) {
  auto expand = [&](const std::string& path) {
    return path.rfind("~/", 0) == 0 ? home + path.substr(1) : path;
  };
  if (!configured.empty()) return {expand(configured)};
  std::vector<std::string> paths;
  for (const auto& entry : util::split(kubeconfig_env, ':')) {
    if (!entry.empty()) paths.push_back(expand(entry));
  }
  if (paths.empty()) paths.push_back(home + "/.kube/config");
  return paths;
}

util::Result<KubeCredentials> load_kubeconfig(const std::vector<std::string>& paths, const std::string& context) {
  auto merged = read_merged(paths);
  if (!merged) return merged.error();
  const std::string& source = merged->source;
  KubeCredentials out;
  out.source = source;
  out.context = context.empty() ? merged->current_context : context;
  if (out.context.empty()) {
    return bad_kubeconfig(fmt::format("kubeconfig {} sets no current-context; set the cloud's context: ({})", source,
                                      context_list(*merged)));
  }
  auto ctx = merged->contexts.find(out.context);
  if (ctx == merged->contexts.end()) {
    return bad_kubeconfig(fmt::format("context '{}' is not in kubeconfig {}; use one of: {}", out.context, source,
                                      context_list(*merged)));
  }
  const std::string cluster_name = scalar_at(ctx->second.body, "cluster");
  const std::string user_name = scalar_at(ctx->second.body, "user");
  out.namespace_name = scalar_at(ctx->second.body, "namespace");
  auto cluster = merged->clusters.find(cluster_name);
  if (cluster == merged->clusters.end()) {
    return bad_kubeconfig(fmt::format("context '{}' in kubeconfig {} names cluster '{}', which no file defines",
                                      out.context, source, cluster_name));
  }
  if (auto ok = fill_cluster(cluster->second, cluster_name, source, out); !ok) return ok.error();
  if (user_name.empty()) return out;
  auto user = merged->users.find(user_name);
  if (user == merged->users.end()) {
    return bad_kubeconfig(fmt::format("context '{}' in kubeconfig {} names user '{}', which no file defines", out.context,
                                      source, user_name));
  }
  if (auto ok = fill_user(user->second, user_name, source, out); !ok) return ok.error();
  return out;
}

namespace {

// Runs the plugin to its end and returns its stdout (exit code in `code`, stderr's text in `errors`).
util::Result<std::string> run_plugin(const KubeExecPlugin& plugin, int& code, std::string& errors) {
  ProcessSpec spec;
  spec.argv.push_back(plugin.command);
  spec.argv.insert(spec.argv.end(), plugin.args.begin(), plugin.args.end());
  spec.env = process_environment();
  for (const auto& [name, value] : plugin.env) spec.env.push_back(name + "=" + value);
  const std::string api = plugin.api_version.empty() ? "client.authentication.k8s.io/v1beta1" : plugin.api_version;
  spec.env.push_back(R"(KUBERNETES_EXEC_INFO={"apiVersion":")" + api +
                     R"(","kind":"ExecCredential","spec":{"interactive":false}})");
  auto child = ChildProcess::spawn(spec);
  if (!child) return child.error();
  std::string out;
  std::vector<char> buffer(64 * 1024);
  while (child->stdout_fd() >= 0 || child->stderr_fd() >= 0) {
    child->pump_output(buffer, 1000, [&](bool from_stderr, const char* data, std::size_t size) {
      (from_stderr ? errors : out).append(data, size);
    });
  }
  code = child->wait();
  return out;
}

}  // namespace

util::Result<void> run_exec_plugin(KubeCredentials& credentials) {
  if (!credentials.exec) return {};
  const KubeExecPlugin& plugin = *credentials.exec;
  auto fail = [&](const std::string& why) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("credential plugin '{}' (context '{}', kubeconfig {}) {}", plugin.command,
                                        credentials.context, credentials.source, why));
  };
  int code = 0;
  std::string errors;
  auto out = run_plugin(plugin, code, errors);
  if (!out) return fail("could not start: " + out.error().message + "; install it or fix the exec command");
  if (code != 0) {
    std::string last(util::trim(errors));
    if (auto nl = last.rfind('\n'); nl != std::string::npos) last = last.substr(nl + 1);
    return fail(fmt::format("exited with {}{}; run it by hand to see why", code, last.empty() ? "" : ": " + last.substr(0, 300)));
  }
  auto json = nlohmann::json::parse(*out, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("status") || !json["status"].is_object()) {
    return fail("printed no ExecCredential JSON with a status; check that it is a Kubernetes credential plugin");
  }
  const auto& status = json["status"];
  credentials.token = status.value("token", std::string());
  credentials.client_cert_pem = status.value("clientCertificateData", std::string());
  credentials.client_key_pem = status.value("clientKeyData", std::string());
  if (credentials.token.empty() && (credentials.client_cert_pem.empty() || credentials.client_key_pem.empty())) {
    return fail("returned neither status.token nor status.clientCertificateData and clientKeyData");
  }
  return {};
}

std::optional<std::string> decode_base64(std::string_view text) {
  std::string clean;
  for (char c : text) {
    if (c != '\n' && c != '\r' && c != ' ') clean += c;
  }
  while (clean.size() % 4 != 0) clean += '=';
  std::string out(clean.size() / 4 * 3, '\0');
  int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (length < 0) return std::nullopt;
  std::size_t padding = 0;
  for (auto it = clean.rbegin(); it != clean.rend() && *it == '='; ++it) ++padding;
  if (padding > 2) return std::nullopt;
  out.resize(static_cast<std::size_t>(length) - padding);
  return out;
}

}  // namespace gpurun::cloud
