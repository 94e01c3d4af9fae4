#include "cloud/backend/kubernetes/kubernetes_api.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// "/api/v1/namespaces/ml/pods/x/log?follow=true" -> "pods"; the resource a path names.
std::string resource_of(const std::string& path) {
  auto query = path.find('?');
  const auto parts = util::split(path.substr(0, query), '/');
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i] == "namespaces" && i + 2 < parts.size()) {
      std::string resource = parts[i + 2];
      if (i + 4 < parts.size()) resource += "/" + parts[i + 4];
      return resource;
    }
  }
  return parts.empty() ? path : parts.back();
}

std::string verb_of(const std::string& method, const std::string& path) {
  if (method == "POST") return "create";
  if (method == "DELETE") return "delete";
  if (method == "PATCH") return "patch";
  if (path.find("watch=true") != std::string::npos) return "watch";
  const std::string resource = resource_of(path);
  const auto segments = util::split(path.substr(0, path.find('?')), '/');
  // ".../<resource>/<name>" is a get, ".../<resource>" a list.
  return !segments.empty() && segments.back() == resource.substr(0, resource.find('/')) ? "list" : "get";
}

}  // namespace

util::Error api_error(const std::string& cloud, const std::string& method, const std::string& path, const ApiReply& reply) {
  std::string message = reply.body.is_object() ? reply.body.value("message", std::string()) : std::string();
  if (message.empty()) message = std::string(util::trim(reply.text.substr(0, 300)));
  const std::string what = fmt::format("kubernetes cloud '{}': {} {}", cloud, method, path.substr(0, path.find('?')));
  std::string fix;
  if (reply.status == 401) {
    fix = "the API server refused the credentials; check the kubeconfig's user (token, certificate or exec plugin)";
  } else if (reply.status == 403) {
    fix = fmt::format("grant the kubeconfig's user RBAC to {} {} in the namespace", verb_of(method, path), resource_of(path));
  } else if (reply.status == 404) {
    fix = "check the cloud's namespace";
  } else if (reply.status == 422 || reply.status == 400) {
    fix = "the cluster rejected the object gpurun sent; check the function's settings";
  } else {
    fix = "check that the API server is healthy";
  }
  return util::make_error(util::ExitCode::backend, fmt::format("{}: {} ({}); {}", what, message, reply.status, fix));
}

util::Result<KubernetesApi> KubernetesApi::connect(const KubernetesSettings& settings, const std::string& cloud) {
  const auto paths = kubeconfig_paths(settings.kubeconfig, env_or_empty("KUBECONFIG"), env_or_empty("HOME"));
  auto credentials = load_kubeconfig(paths, settings.context);
  if (!credentials) {
    return util::make_error(credentials.error().code, fmt::format("kubernetes cloud '{}': {}", cloud, credentials.error().message));
  }
  if (auto ran = run_exec_plugin(*credentials); !ran) return ran.error();
  KubernetesApi api;
  api.cloud_ = cloud;
  api.namespace_ = !settings.namespace_name.empty()           ? settings.namespace_name
                   : !credentials->namespace_name.empty()     ? credentials->namespace_name
                                                              : std::string("default");
  api.credentials_ = std::move(*credentials);
  while (!api.credentials_.server.empty() && api.credentials_.server.back() == '/') api.credentials_.server.pop_back();
  api.client_ = std::make_shared<http::Client>();
  return api;
}

http::Request KubernetesApi::request_for(const std::string& method, const std::string& path) const {
  http::Request request;
  request.method = method;
  request.url = credentials_.server + path;
  request.headers.emplace_back("Accept", "application/json");
  if (!credentials_.token.empty()) request.headers.emplace_back("Authorization", "Bearer " + credentials_.token);
  request.ca_pem = credentials_.ca_pem;
  request.client_cert_pem = credentials_.client_cert_pem;
  request.client_key_pem = credentials_.client_key_pem;
  request.insecure_skip_tls_verify = credentials_.insecure_skip_tls_verify;
  request.timeout_ms = 60'000;
  return request;
}

util::Result<ApiReply> KubernetesApi::call(const std::string& method, const std::string& path,
                                           const std::optional<nlohmann::json>& body) {
  http::Request request = request_for(method, path);
  if (body) {
    request.body = body->dump();
    request.headers.emplace_back("Content-Type", "application/json");
  }
  auto response = client_->perform(request);
  if (!response) {
    return util::make_error(response.error().code, fmt::format("kubernetes cloud '{}': {}", cloud_, response.error().message));
  }
  ApiReply reply;
  reply.status = response->status;
  reply.text = std::move(response->body);
  reply.body = nlohmann::json::parse(reply.text, nullptr, false);
  if (reply.body.is_discarded()) reply.body = nullptr;
  return reply;
}

util::Result<ApiReply> KubernetesApi::expect(const std::string& method, const std::string& path,
                                             const std::optional<nlohmann::json>& body, long also_ok) {
  auto reply = call(method, path, body);
  if (!reply) return reply.error();
  if (!reply->ok() && reply->status != also_ok) return api_error(cloud_, method, path, *reply);
  return reply;
}

util::Result<long> KubernetesApi::stream(const std::string& path, const std::function<bool(const char*, std::size_t)>& on_body,
                                         const std::function<bool()>& keep_going) {
  http::Request request = request_for("GET", path);
  request.timeout_ms = 0;
  request.low_speed_timeout_s = 0;  // a follow is quiet while the workload is
  request.on_body = on_body;
  request.keep_going = keep_going;
  auto response = client_->perform(request);
  if (!response) return response.error();
  if (response->status < 200 || response->status >= 300) {
    ApiReply reply{response->status, nlohmann::json::parse(response->body, nullptr, false), response->body};
    return api_error(cloud_, "GET", path, reply);
  }
  return response->status;
}

KubernetesApi KubernetesApi::fork() const {
  KubernetesApi copy = *this;
  copy.client_ = std::make_shared<http::Client>();
  return copy;
}

std::string KubernetesApi::collection(const std::string& resource) const {
  if (resource == "jobs") return "/apis/batch/v1/namespaces/" + namespace_ + "/jobs";
  return "/api/v1/namespaces/" + namespace_ + "/" + resource;
}

}  // namespace gpurun::cloud
