#pragma once

// The Kubernetes REST API over gpurun's libcurl client (cloud/net/http): one cluster, one
// namespace, the credentials of one kubeconfig context. No kubectl.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cloud/backend/kubernetes/kubernetes_kubeconfig.hpp"
#include "cloud/backend/kubernetes/kubernetes_settings.hpp"
#include "cloud/net/http.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// One answer of the API: the HTTP status and the body parsed as JSON (null when not JSON).
struct ApiReply {
  long status = 0;
  nlohmann::json body;
  std::string text;
  bool ok() const { return status >= 200 && status < 300; }
};

class KubernetesApi {
 public:
  // Reads the kubeconfig of `settings` (running its exec plugin), decides the namespace (the
  // settings', else the context's, else "default"). `cloud` names the cloud in messages.
  static util::Result<KubernetesApi> connect(const KubernetesSettings& settings, const std::string& cloud);

  const std::string& namespace_name() const { return namespace_; }
  const KubeCredentials& credentials() const { return credentials_; }

  // METHOD `path` ("/api/v1/namespaces/ml/pods?...") with an optional JSON body. Transport failures
  // are an Error; every HTTP status is an ApiReply.
  util::Result<ApiReply> call(const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body = std::nullopt);
  // The same, where anything but 2xx (and `also_ok`, e.g. 404 for deletes) is an Error that says
  // what was refused and how to fix it (401: credentials, 403: RBAC with the verb and resource).
  util::Result<ApiReply> expect(const std::string& method, const std::string& path,
                                const std::optional<nlohmann::json>& body = std::nullopt, long also_ok = 0);
  // GET `path` streaming the body to `on_body` (false stops) with the low-speed timeout off (log
  // follows); `keep_going` (asked about once a second, also while idle) false stops it too.
  util::Result<long> stream(const std::string& path, const std::function<bool(const char*, std::size_t)>& on_body,
                            const std::function<bool()>& keep_going = {});
  // A copy with its own HTTP client (a client is not thread-safe): for use on another thread.
  KubernetesApi fork() const;

  // The namespaced collection path: "/api/v1/namespaces/<ns>/<resource>" or, for jobs,
  // "/apis/batch/v1/namespaces/<ns>/jobs".
  std::string collection(const std::string& resource) const;

 private:
  KubernetesApi() = default;
  http::Request request_for(const std::string& method, const std::string& path) const;

  std::string cloud_;
  std::string namespace_;
  KubeCredentials credentials_;
  std::shared_ptr<http::Client> client_;
};

// The message of a non-2xx reply to METHOD `path` on `cloud` ("kubernetes cloud 'k8s': POST jobs
// forbidden (403): <the API's message>; grant ..."), exit code backend.
util::Error api_error(const std::string& cloud, const std::string& method, const std::string& path, const ApiReply& reply);

}  // namespace gpurun::cloud
