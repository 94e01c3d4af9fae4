#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "cloud/backend/kubernetes/kubernetes_follow.hpp"
#include "tests/unit/loopback_http.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;
using namespace gpurun::cloud;
using test::http_response;
using test::LoopbackHttp;
using test::SeenRequest;

namespace {

// A KubernetesApi for the loopback server at `url` (token auth, namespace ml).
KubernetesApi loopback_api(const test::TempDir& dir, const std::string& url) {
  const std::string path = dir.path() + "/kubeconfig";
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                      << "clusters:\n- name: c\n  cluster: {server: \"" << url << "\"}\n"
                      << "users:\n- name: u\n  user: {token: abc}\n"
                      << "contexts:\n- name: t\n  context: {cluster: c, user: u, namespace: ml}\n";
  KubernetesSettings settings;
  settings.kubeconfig = path;
  auto api = KubernetesApi::connect(settings, "k8s");
  REQUIRE_MESSAGE(api.ok(), api.error().message);
  return std::move(*api);
}

}  // namespace

TEST_CASE("PodLogFollow: follows the stream, resumes an ended one with sinceTime, stops promptly") {
  LoopbackHttp server([](const SeenRequest& seen) {
    if (seen.target == "/api/v1/namespaces/ml/pods/p/log?follow=true&timestamps=true") {
      // The first stream ends (a dropped connection) with a line cut short: that part is left out.
      return http_response(200, "2026-12-01T10:00:01.1Z one\n2026-12-01T10:00:01.2Z two\n2026-12-01T10:00:02.5Z thr");
    }
    if (seen.target == "/api/v1/namespaces/ml/pods/p/log?follow=true&timestamps=true&sinceTime=2026-12-01T10%3A00%3A01Z") {
      return http_response(200, "2026-12-01T10:00:01.2Z two\n2026-12-01T10:00:02.5Z three\n");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // a quiet stream
    return http_response(200, "");
  });
  test::TempDir dir;
  auto api = loopback_api(dir, "http://127.0.0.1:" + std::to_string(server.port()));
  auto follow = std::make_unique<PodLogFollow>(api.fork(), "/api/v1/namespaces/ml/pods/p/log", std::nullopt);
  std::string lines;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (lines.find("three") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    lines += follow->take_lines();
  }
  CHECK(lines ==
        "2026-12-01T10:00:01.1Z one\n2026-12-01T10:00:01.2Z two\n"
        "2026-12-01T10:00:01.2Z two\n2026-12-01T10:00:02.5Z three\n");
  // The third stream (from 10:00:02 on) is idle: the destructor stops it within about a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto requests = server.requests();
  REQUIRE(requests.size() >= 2);
  CHECK(requests[0].header("Authorization") == "Bearer abc");
  const auto stopping = std::chrono::steady_clock::now();
  follow.reset();
  CHECK(std::chrono::steady_clock::now() - stopping < std::chrono::milliseconds(1800));
}
