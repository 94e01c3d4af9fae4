#include <doctest/doctest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "cloud/net/http.hpp"
#include "cloud/images/image_layer.hpp"
#include "cloud/images/oci.hpp"
#include "cloud/images/registry.hpp"
#include "tests/unit/loopback_http.hpp"
#include "tests/unit/read_text.hpp"
#include "tests/unit/registry_server.hpp"
#include "tests/unit/require_tool.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;
using namespace gpurun::cloud;
namespace fs = std::filesystem;

namespace {

using RegistryServer = test::LoopbackRegistry;

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937_64 generator(seed);
  std::string bytes(size, '\0');
  for (auto& c : bytes) c = static_cast<char>(generator());
  return bytes;
}

// An image of two layers (deps, app) built from directories under `dir`.
struct BuiltImage {
  std::vector<registry::Blob> blobs;  // config, then layers
  std::string manifest;
  std::string manifest_digest;
};

BuiltImage build_image(const std::string& dir) {
  BuiltImage image;
  std::vector<oci::Descriptor> layers;
  std::vector<std::string> diff_ids;
  for (std::string part : {"deps", "app"}) {
    auto layer = build_layer(dir + "/" + part, {{".", ""}}, "/opt/" + part, dir + "/" + part + ".tar.gz");
    REQUIRE_MESSAGE(layer.ok(), layer.error().message);
    oci::Descriptor descriptor{std::string(oci::layer_media_type), layer->digest, layer->size};
    layers.push_back(descriptor);
    diff_ids.push_back(layer->diff_id);
    image.blobs.push_back(registry::Blob{descriptor, layer->path, ""});
  }
  std::string config = oci::canonical(oci::image_config(oci::BaseImage{}, {{"MODE", "test"}}, "/opt/app", diff_ids));
  auto config_descriptor = oci::describe(oci::config_media_type, config);
  image.blobs.insert(image.blobs.begin(), registry::Blob{config_descriptor, "", config});
  image.manifest = oci::canonical(oci::image_manifest(config_descriptor, layers));
  image.manifest_digest = oci::describe(oci::manifest_media_type, image.manifest).digest;
  return image;
}

void make_project(const std::string& dir) {
  write(dir + "/deps/lib.bin", random_bytes(3 * 1024 * 1024, 1));
  write(dir + "/app/main.py", "print('v1')\n");
}

std::uint64_t total_size(const BuiltImage& image) {
  std::uint64_t total = 0;
  for (const auto& blob : image.blobs) total += blob.descriptor.size;
  return total;
}

// The manifest a registry serves for repository:tag.
std::string fetch_manifest(const std::string& address, const std::string& repository, const std::string& tag) {
  http::Client client;
  http::Request request;
  request.url = "http://" + address + "/v2/" + repository + "/manifests/" + tag;
  request.headers = {{"Accept", std::string(oci::manifest_media_type)}};
  auto response = client.perform(request);
  REQUIRE(response.ok());
  CHECK(response->status == 200);
  return response->body;
}

}  // namespace

TEST_CASE("registry: base URLs, default tags") {
  CHECK(*registry::base_url("127.0.0.1:5055", false) == "http://127.0.0.1:5055");
  CHECK(*registry::base_url("localhost:5000/", false) == "http://localhost:5000");
  CHECK(*registry::base_url("ghcr.io", false) == "https://ghcr.io");
  CHECK(*registry::base_url("docker.io", false) == "https://registry-1.docker.io");
  CHECK(*registry::base_url("registry.lan:5000", true) == "http://registry.lan:5000");
  CHECK(*registry::base_url("http://127.0.0.1:5055", false) == "http://127.0.0.1:5055");
  CHECK(registry::base_url("http://registry.lan:5000", false).error().message ==
        "registry http://registry.lan:5000: plain http is only used for loopback registries; use https:// or mark the "
        "registry insecure");
  CHECK(registry::default_tags("sha256:0123456789abcdef0123", "v3") == std::vector<std::string>{"0123456789ab", "v3"});
}

TEST_CASE("registry: push, re-push, changed layer, mount, second registry") {
  if (!test::require_tool("docker-registry", "docker-registry")) return;
  RegistryServer server;
  test::TempDir dir;
  make_project(dir.path());
  BuiltImage image = build_image(dir.path());
  auto tags = registry::default_tags(image.manifest_digest, "v1");

  registry::Client client(server.address());
  auto first = client.push_image("app/img", image.blobs, image.manifest, tags);
  REQUIRE_MESSAGE(first.ok(), first.error().message);
  CHECK(first->digest == image.manifest_digest);
  CHECK(first->blobs_uploaded == 3);
  CHECK(first->bytes_uploaded == total_size(image));
  CHECK(fetch_manifest(server.address(), "app/img", "v1") == image.manifest);
  CHECK(fetch_manifest(server.address(), "app/img", tags[0]) == image.manifest);

  SUBCASE("an unchanged image uploads nothing, with one HEAD per blob") {
    registry::Client again(server.address());
    auto second = again.push_image("app/img", image.blobs, image.manifest, tags);
    REQUIRE_MESSAGE(second.ok(), second.error().message);
    CHECK(second->bytes_uploaded == 0);
    CHECK(second->blobs_skipped == 3);
    CHECK(again.request_counts().at("HEAD") == 3);
    CHECK(again.request_counts().count("POST") == 0);
    CHECK(again.request_counts().count("PATCH") == 0);
  }
  SUBCASE("a changed file uploads only its layer and the config") {
    write(dir.path() + "/app/main.py", "print('v2')\n");
    BuiltImage changed = build_image(dir.path());
    CHECK(changed.blobs[1].descriptor == image.blobs[1].descriptor);
    auto second = client.push_image("app/img", changed.blobs, changed.manifest, {"v2"});
    REQUIRE_MESSAGE(second.ok(), second.error().message);
    CHECK(second->blobs_skipped == 1);
    CHECK(second->blobs_uploaded == 2);
    CHECK(second->bytes_uploaded == changed.blobs[0].descriptor.size + changed.blobs[2].descriptor.size);
    CHECK(fetch_manifest(server.address(), "app/img", "v2") == changed.manifest);
    CHECK(fetch_manifest(server.address(), "app/img", "v1") == image.manifest);
  }
  SUBCASE("another repository of the same registry mounts the blobs") {
    auto mounted = client.push_image("app/other", image.blobs, image.manifest, {"v1"}, {"app/img"});
    REQUIRE_MESSAGE(mounted.ok(), mounted.error().message);
    CHECK(mounted->blobs_mounted == 3);
    CHECK(mounted->bytes_uploaded == 0);
    CHECK(fetch_manifest(server.address(), "app/other", "v1") == image.manifest);
  }
  SUBCASE("a second registry gets its own full copy") {
    RegistryServer other;
    registry::Client second_client(other.address());
    auto pushed = second_client.push_image("app/img", image.blobs, image.manifest, tags);
    REQUIRE_MESSAGE(pushed.ok(), pushed.error().message);
    CHECK(pushed->blobs_uploaded == 3);
    CHECK(pushed->bytes_uploaded == total_size(image));
    CHECK(fetch_manifest(other.address(), "app/img", "v1") == image.manifest);
  }
}

TEST_CASE("registry: an upload cut off mid-body continues in a new session (Distribution cancels the old one)") {
  if (!test::require_tool("docker-registry", "docker-registry")) return;
  RegistryServer server;
  test::TempDir dir;
  std::string data = random_bytes(6 * 1024 * 1024, 7);
  write(dir.path() + "/blob", data);
  registry::Blob blob{oci::describe(oci::layer_media_type, data), dir.path() + "/blob", ""};
  registry::Options options;
  int interruptions = 0;
  options.interrupt_upload = [&](std::uint64_t offset) {
    if (interruptions == 0 && offset >= 2 * 1024 * 1024) {
      ++interruptions;
      return true;
    }
    return false;
  };
  registry::Client client(server.address(), options);
  auto outcome = client.push_blob("app/img", blob);
  REQUIRE_MESSAGE(outcome.ok(), outcome.error().message);
  CHECK(interruptions == 1);
  CHECK(outcome->how == registry::BlobOutcome::How::uploaded);
  // The cut part and then the whole blob once more: counted, not hidden.
  CHECK(outcome->bytes_uploaded >= data.size() + 2 * 1024 * 1024);
  CHECK(outcome->bytes_uploaded < 2 * data.size());
  CHECK(client.request_counts().at("PATCH") == 2);
  CHECK(client.request_counts().at("POST") == 2);
  CHECK(client.request_counts().at("GET") == 1);  // the session's status: gone
  CHECK(*client.blob_exists("app/img", blob.descriptor.digest));
}

TEST_CASE("registry: an upload resumes from the session's Range where the registry keeps it") {
  // A fake registry (fault injection: the first PATCH is cut after 1 MiB, and unlike
  // Distribution it keeps the session and reports what it holds).
  std::string data = random_bytes(3 * 1024 * 1024, 9);
  const auto descriptor = oci::describe(oci::layer_media_type, data);
  std::mutex mutex;
  std::string stored;
  bool committed = false;
  test::LoopbackHttp fake([&](const test::SeenRequest& request) -> std::string {
    std::lock_guard lock(mutex);
    auto range = [&] { return "Range: 0-" + std::to_string(stored.empty() ? 0 : stored.size() - 1) + "\r\n"; };
    if (request.method == "HEAD") return test::http_response(404, "");
    if (request.method == "POST") return "HTTP/1.1 202 Accepted\r\nLocation: /v2/app/img/blobs/uploads/u1\r\nRange: 0-0\r\nContent-Length: 0\r\n\r\n";
    if (request.method == "PATCH") {
      if (stored.empty()) {
        stored = request.body.substr(0, 1024 * 1024);
        return "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      }
      stored += request.body;
      return "HTTP/1.1 202 Accepted\r\nLocation: /v2/app/img/blobs/uploads/u1\r\n" + range() + "Content-Length: 0\r\n\r\n";
    }
    if (request.method == "GET") return "HTTP/1.1 204 No Content\r\n" + range() + "Content-Length: 0\r\n\r\n";
    if (request.method == "PUT") {
      committed = stored == data && request.target.find("digest=" + http::url_encode(descriptor.digest)) != std::string::npos;
      return "HTTP/1.1 201 Created\r\nDocker-Content-Digest: " + descriptor.digest + "\r\nContent-Length: 0\r\n\r\n";
    }
    return test::http_response(400, "");
  });
  registry::Options options;
  options.initial_backoff = std::chrono::milliseconds(1);
  registry::Client client("127.0.0.1:" + std::to_string(fake.port()), options);
  auto outcome = client.push_blob("app/img", registry::Blob{descriptor, "", data});
  REQUIRE_MESSAGE(outcome.ok(), outcome.error().message);
  CHECK(committed);
  CHECK(client.request_counts().at("POST") == 1);
  CHECK(client.request_counts().at("PATCH") == 2);
  // The second PATCH carried only the part the session lacked.
  const auto requests = fake.requests();
  std::vector<std::size_t> patch_sizes;
  for (const auto& r : requests) {
    if (r.method == "PATCH") patch_sizes.push_back(r.body.size());
  }
  CHECK(patch_sizes == std::vector<std::size_t>{data.size(), data.size() - 1024 * 1024});
}

TEST_CASE("registry: a blob copied between registries is streamed, checked, and never committed when wrong") {
  if (!test::require_tool("docker-registry", "docker-registry")) return;
  RegistryServer source_server;
  RegistryServer target_server;
  std::string data = random_bytes(9 * 1024 * 1024, 11);
  registry::Blob blob{oci::describe(oci::layer_media_type, data), "", data};
  registry::Client source(source_server.address());
  REQUIRE(source.push_blob("base/img", blob).ok());
  registry::Client target(target_server.address());
  SUBCASE("copied once, then skipped") {
    auto copied = target.copy_blob(source, "base/img", "app/img", blob.descriptor);
    REQUIRE_MESSAGE(copied.ok(), copied.error().message);
    CHECK(copied->how == registry::BlobOutcome::How::uploaded);
    CHECK(copied->bytes_uploaded == data.size());
    CHECK(*target.get_small_blob("app/img", blob.descriptor.digest) == data);
    auto again = target.copy_blob(source, "base/img", "app/img", blob.descriptor);
    REQUIRE(again.ok());
    CHECK(again->how == registry::BlobOutcome::How::skipped);
  }
  SUBCASE("a source that serves other bytes: the upload is aborted, nothing committed") {
    // A fake source (fault injection): right size, wrong content.
    std::string wrong = data;
    wrong[wrong.size() / 2] ^= 1;
    test::LoopbackHttp fake([&](const test::SeenRequest&) { return test::http_response(200, wrong); });
    registry::Options options;
    options.initial_backoff = std::chrono::milliseconds(1);
    options.max_attempts = 2;
    registry::Client fake_source("127.0.0.1:" + std::to_string(fake.port()), options);
    registry::Client strict_target(target_server.address(), options);
    auto copied = strict_target.copy_blob(fake_source, "base/img", "app/img", blob.descriptor);
    REQUIRE_FALSE(copied.ok());
    CHECK(copied.error().code == util::ExitCode::backend);
    const std::string wrong_digest = oci::describe("", wrong).digest;
    CHECK(copied.error().message ==
          "registry " + target_server.address() + ": copying " + blob.descriptor.digest + " from 127.0.0.1:" +
              std::to_string(fake.port()) + "/base/img to app/img failed 2 times, the last with: registry 127.0.0.1:" +
              std::to_string(fake.port()) + " sent " + std::to_string(data.size()) + " bytes with digest " + wrong_digest +
              " for " + blob.descriptor.digest + " (" + std::to_string(data.size()) +
              " bytes); nothing was committed, check both registries and try again");
    CHECK_FALSE(*strict_target.blob_exists("app/img", blob.descriptor.digest));
    CHECK_FALSE(*strict_target.blob_exists("app/img", wrong_digest));
  }
}

TEST_CASE("registry: backoff doubles up to its cap") {
  using std::chrono::milliseconds;
  CHECK(registry::backoff_delay(1, milliseconds(200)) == milliseconds(200));
  CHECK(registry::backoff_delay(2, milliseconds(200)) == milliseconds(400));
  CHECK(registry::backoff_delay(4, milliseconds(200)) == milliseconds(1600));
  CHECK(registry::backoff_delay(10, milliseconds(200)) == milliseconds(10'000));
  CHECK(registry::backoff_delay(200, milliseconds(200), milliseconds(3000)) == milliseconds(3000));
}

TEST_CASE("registry: upload session Range headers") {
  CHECK(registry::parse_upload_range("0-0") == std::optional<std::uint64_t>(0));
  CHECK(registry::parse_upload_range("0-1048575") == std::optional<std::uint64_t>(1048576));
  CHECK(registry::parse_upload_range(" bytes=0-99 ") == std::optional<std::uint64_t>(100));
  CHECK_FALSE(registry::parse_upload_range("").has_value());
  CHECK_FALSE(registry::parse_upload_range("5-99").has_value());
  CHECK_FALSE(registry::parse_upload_range("0-").has_value());
  CHECK_FALSE(registry::parse_upload_range("0-x").has_value());
}

TEST_CASE("registry: GPURUN_REGISTRY_TIMEOUT") {
  ::unsetenv("GPURUN_REGISTRY_TIMEOUT");
  CHECK(*registry::idle_timeout_from_env(std::chrono::seconds(60)) == std::chrono::seconds(60));
  ::setenv("GPURUN_REGISTRY_TIMEOUT", "5s", 1);
  CHECK(*registry::idle_timeout_from_env() == std::chrono::seconds(5));
  ::setenv("GPURUN_REGISTRY_TIMEOUT", "2m", 1);
  CHECK(*registry::idle_timeout_from_env() == std::chrono::seconds(120));
  for (const char* bad : {"soon", "500ms", "-3"}) {
    ::setenv("GPURUN_REGISTRY_TIMEOUT", bad, 1);
    auto parsed = registry::idle_timeout_from_env();
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code == util::ExitCode::usage);
    CHECK(parsed.error().message ==
          std::string("GPURUN_REGISTRY_TIMEOUT='") + bad + "': expected a duration of at least 1s, such as 30s or 2m");
  }
  ::unsetenv("GPURUN_REGISTRY_TIMEOUT");
}

TEST_CASE("registry: basic auth with htpasswd, and a wrong password") {
  if (!test::require_tool("docker-registry", "docker-registry")) return;
  if (!test::require_tool("htpasswd", "apache2-utils")) return;
  test::TempDir dir;
  std::string line_file = dir.path() + "/line";
  REQUIRE(std::system(("htpasswd -Bbn alice 's3cret pass' > " + line_file).c_str()) == 0);
  RegistryServer server(test::read_text(line_file));
  make_project(dir.path());
  BuiltImage image = build_image(dir.path());

  registry::Options good;
  good.credentials = registry::Credentials{"alice", "s3cret pass"};
  registry::Client client(server.address(), good);
  auto pushed = client.push_image("app/img", image.blobs, image.manifest, {"v1"});
  REQUIRE_MESSAGE(pushed.ok(), pushed.error().message);
  CHECK(pushed->blobs_uploaded == 3);

  registry::Options bad;
  bad.credentials = registry::Credentials{"alice", "wrong"};
  registry::Client wrong(server.address(), bad);
  auto refused = wrong.push_image("app/img", image.blobs, image.manifest, {"v1"});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == util::ExitCode::backend);
  CHECK(refused.error().message ==
        "registry " + server.address() +
            ": authentication failed (HTTP 401); check the username and password");
  CHECK(refused.error().message.find("wrong") == std::string::npos);

  registry::Client anonymous(server.address());
  auto no_login = anonymous.blob_exists("app/img", image.blobs[0].descriptor.digest);
  REQUIRE_FALSE(no_login.ok());
  CHECK(no_login.error().message ==
        "registry " + server.address() + ": it requires a login (HTTP 401); give a username and password for it");
}

TEST_CASE("registry: bearer token flow (fake token service and registry front)") {
  // Docker Hub / GHCR style: 401 + Bearer challenge -> GET realm?service=&scope= -> token -> retry.
  int port = 0;
  test::LoopbackHttp server([&port](const test::SeenRequest& request) {
    if (request.target.rfind("/token?", 0) == 0) {
      if (request.header("Authorization") != "Basic YWxpY2U6czNjcmV0") return test::http_response(401, "{}");
      if (request.target != "/token?service=fake&scope=repository%3Aapp%2Fimg%3Apull%2Cpush") {
        return test::http_response(400, "bad query " + request.target);
      }
      return test::http_response(200, R"({"token":"tok-123"})");
    }
    if (request.header("Authorization") != "Bearer tok-123") {
      return test::http_response(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
                                 "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:" + std::to_string(port) +
                                     "/token\",service=\"fake\",scope=\"repository:app/img:pull,push\"\r\n");
    }
    return std::string("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  });
  port = server.port();
  registry::Options options;
  options.credentials = registry::Credentials{"alice", "s3cret"};
  registry::Client client("127.0.0.1:" + std::to_string(port), options);
  auto exists = client.blob_exists("app/img", "sha256:" + std::string(64, 'a'));
  REQUIRE_MESSAGE(exists.ok(), exists.error().message);
  CHECK(*exists);
  CHECK(client.request_counts().at("token") == 1);
  auto again = client.blob_exists("app/img", "sha256:" + std::string(64, 'b'));
  REQUIRE(again.ok());
  CHECK(client.request_counts().at("token") == 1);  // the token is reused
  CHECK(client.request_counts().at("HEAD") == 3);

  registry::Options wrong;
  wrong.credentials = registry::Credentials{"alice", "nope"};
  registry::Client refused("127.0.0.1:" + std::to_string(port), wrong);
  auto denied = refused.blob_exists("app/img", "sha256:" + std::string(64, 'a'));
  REQUIRE_FALSE(denied.ok());
  CHECK(denied.error().message == "registry 127.0.0.1:" + std::to_string(port) +
                                      ": the token service refused the login (HTTP 401); check the username and password");
}
