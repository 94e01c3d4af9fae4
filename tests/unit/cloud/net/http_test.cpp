#include <doctest/doctest.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "cloud/net/http.hpp"
#include "tests/unit/loopback_http.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;
using cloud::http::Client;
using cloud::http::Request;
using test::http_response;
using test::LoopbackHttp;
using test::SeenRequest;

namespace {

std::string echo(const SeenRequest& request) {
  std::string body = request.method + " " + request.target + " " + request.body;
  return http_response(200, body, "X-Method: " + request.method + "\r\nX-Content-Type: " +
                                      request.header("Content-Type") + "\r\n");
}


}  // namespace

TEST_CASE("http: GET returns status, headers and body, and reuses one connection") {
  LoopbackHttp server(echo);
  Client client;
  for (int i = 0; i < 3; ++i) {
    auto response = client.perform(Request{.url = server.url("/v2/?n=" + std::to_string(i))});
    REQUIRE(response.ok());
    CHECK(response->status == 200);
    CHECK(response->body == "GET /v2/?n=" + std::to_string(i) + " ");
    CHECK(response->header("x-method") == "GET");
    CHECK(response->header("Missing").empty());
  }
  CHECK(server.connections() == 1);
}

TEST_CASE("http: PUT, PATCH, POST and DELETE send their method and body verbatim") {
  LoopbackHttp server(echo);
  Client client;
  for (std::string method : {"PUT", "PATCH", "POST", "DELETE"}) {
    Request request{.method = method, .url = server.url("/x"), .headers = {{"Content-Type", "application/octet-stream"}}};
    request.body = method == "DELETE" ? "" : "payload-" + method;
    auto response = client.perform(request);
    REQUIRE(response.ok());
    CHECK(response->header("X-Method") == method);
    CHECK(response->body == method + " /x " + request.body);
    CHECK(response->header("X-Content-Type") == "application/octet-stream");
  }
  auto seen = server.requests();
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].header("Content-Length") == "11");
  CHECK(seen[0].header("Expect").empty());
  CHECK(seen[3].header("Content-Length") == "0");
}

TEST_CASE("http: HEAD has no body and 4xx/5xx are responses, not errors") {
  LoopbackHttp server([](const SeenRequest& request) {
    if (request.method == "HEAD") return std::string("HTTP/1.1 404 Not Found\r\nContent-Length: 57\r\n\r\n");
    return http_response(503, "busy");
  });
  Client client;
  auto head = client.perform(Request{.method = "HEAD", .url = server.url("/blob")});
  REQUIRE(head.ok());
  CHECK(head->status == 404);
  CHECK(head->body.empty());
  auto get = client.perform(Request{.url = server.url("/blob")});
  REQUIRE(get.ok());
  CHECK(get->status == 503);
  CHECK(get->body == "busy");
  CHECK(server.connections() == 1);
}

TEST_CASE("http: streamed upload with and without a known size, and upload progress") {
  LoopbackHttp server([](const SeenRequest& request) { return http_response(201, std::to_string(request.body.size())); });
  Client client;
  const std::size_t total = 3 * 1024 * 1024 + 17;
  for (bool known_size : {true, false}) {
    std::size_t produced = 0;
    std::uint64_t last_progress = 0;
    Request request{.method = "PATCH", .url = server.url("/upload")};
    request.body_reader = [&](char* buffer, std::size_t size) {
      std::size_t n = std::min(size, total - produced);
      for (std::size_t i = 0; i < n; ++i) buffer[i] = static_cast<char>('a' + (produced + i) % 26);
      produced += n;
      return n;
    };
    if (known_size) request.body_size = total;
    request.on_upload_progress = [&](std::uint64_t sent) { last_progress = sent; };
    auto response = client.perform(request);
    REQUIRE(response.ok());
    CHECK(response->status == 201);
    CHECK(response->body == std::to_string(total));
    CHECK(last_progress == total);
  }
  auto seen = server.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].header("Content-Length") == std::to_string(total));
  CHECK_FALSE(seen[0].chunked);
  CHECK(seen[1].chunked);
  CHECK(seen[1].body.substr(0, 3) == "abc");
}

TEST_CASE("http: streamed download delivers chunks, and returning false aborts") {
  std::string big(2 * 1024 * 1024, 'z');
  LoopbackHttp server([&](const SeenRequest&) { return http_response(200, big); });
  Client client;
  std::size_t received = 0;
  Request request{.url = server.url("/blob")};
  request.on_body = [&](const char*, std::size_t size) {
    received += size;
    return true;
  };
  auto response = client.perform(request);
  REQUIRE(response.ok());
  CHECK(received == big.size());
  CHECK(response->body.empty());

  request.on_body = [](const char*, std::size_t) { return false; };
  auto aborted = client.perform(request);
  REQUIRE_FALSE(aborted.ok());
  CHECK(aborted.error().code == util::ExitCode::backend);
  CHECK(aborted.error().message == "cannot reach " + server.url("/blob") +
                                       ": the download was aborted by its receiver; check that the server is "
                                       "running and the address is right");
}

TEST_CASE("http: a refused connection names the URL without credentials") {
  int port = test::free_port();  // nobody listens on it
  Client client;
  auto response = client.perform(Request{.url = "http://alice:s3cret@127.0.0.1:" + std::to_string(port) + "/v2/"});
  REQUIRE_FALSE(response.ok());
  CHECK(response.error().code == util::ExitCode::backend);
  const std::string& message = response.error().message;
  CHECK(message.find("s3cret") == std::string::npos);
  CHECK(message.find("alice") == std::string::npos);
  CHECK(message.rfind("cannot reach http://127.0.0.1:" + std::to_string(port) + "/v2/: ", 0) == 0);
  CHECK_MESSAGE(message.find(": Failed to connect to 127.0.0.1 port " + std::to_string(port)) != std::string::npos, message);
  CHECK(message.find("; check that the server is running and the address is right") != std::string::npos);
}

TEST_CASE("http: a stalled server is abandoned after the low-speed timeout") {
  LoopbackHttp server([](const SeenRequest&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    return http_response(200, "late");
  });
  Client client;
  Request request{.url = server.url("/slow")};
  request.low_speed_timeout_s = 1;
  auto started = std::chrono::steady_clock::now();
  auto response = client.perform(request);
  auto elapsed = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(response.ok());
  CHECK(response.error().message ==
        server.url("/slow") + ": the server stalled (nothing moved for 1 s); check that it is healthy and not overloaded");
  CHECK(elapsed < std::chrono::milliseconds(2400));
}

TEST_CASE("http: keep_going false stops an idle transfer, as an Error") {
  LoopbackHttp server([](const SeenRequest& seen) {
    if (seen.target == "/idle") std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    return http_response(200, "body");
  });
  Client client;
  Request request{.url = server.url("/quick")};
  request.low_speed_timeout_s = 0;
  int asked = 0;
  request.keep_going = [&] { return ++asked > 0; };
  auto quick = client.perform(request);
  REQUIRE(quick.ok());
  CHECK(quick->body == "body");

  request.url = server.url("/idle");
  const auto started = std::chrono::steady_clock::now();
  request.keep_going = [&] { return std::chrono::steady_clock::now() - started < std::chrono::milliseconds(300); };
  auto stopped = client.perform(request);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.error().code == util::ExitCode::backend);
  CHECK(stopped.error().message == server.url("/idle") + ": the transfer was stopped by gpurun before it ended");
  CHECK(elapsed < std::chrono::milliseconds(2500));
}

TEST_CASE("http: requests over a unix socket") {
  test::TempDir dir;
  std::string socket_path = dir.path() + "/api.sock";
  LoopbackHttp server(echo, socket_path);
  Client client;
  Request request{.url = "http://localhost/v1/info"};
  request.unix_socket = socket_path;
  auto response = client.perform(request);
  REQUIRE(response.ok());
  CHECK(response->status == 200);
  CHECK(response->body == "GET /v1/info ");
  CHECK(server.requests().at(0).header("Host") == "localhost");
}

TEST_CASE("http: url_encode keeps unreserved characters only") {
  CHECK(cloud::http::url_encode("repository:app/img:pull,push") == "repository%3Aapp%2Fimg%3Apull%2Cpush");
  CHECK(cloud::http::url_encode("a-b_c.d~e") == "a-b_c.d~e");
  CHECK(cloud::http::url_encode("a b") == "a%20b");
}
