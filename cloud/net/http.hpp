#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.hpp"

namespace gpurun::cloud::http {

// One HTTP request. `url` may be http(s)://...; with `unix_socket` set the request goes over
// that socket (the URL's host is then only used for the Host header, e.g. http://localhost/...).
struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // used when body_reader is empty
  // Streaming upload: called until it returns 0; body_size is sent as Content-Length when set.
  std::function<std::size_t(char* buffer, std::size_t size)> body_reader;
  std::optional<std::uint64_t> body_size;
  // Streaming download: receives the body in chunks instead of Response::body; false aborts.
  std::function<bool(const char* data, std::size_t size)> on_body;
  // Upload progress: total bytes sent so far.
  std::function<void(std::uint64_t sent)> on_upload_progress;
  // Asked about once a second, also while nothing moves (an idle stream); false stops the
  // transfer, which is then an Error. Lets another thread end a long follow.
  std::function<bool()> keep_going;
  std::string unix_socket;
  long connect_timeout_ms = 5'000;
  long timeout_ms = 0;            // whole request; 0 = none (streams can be long)
  long low_speed_timeout_s = 60;  // abort when under 1 byte/s for this long (a stalled peer)
  std::string ca_file;            // extra CA bundle for https
  std::string ca_pem;             // CA certificates (PEM) in memory, trusted instead of the system's
  // A TLS client certificate and its key (PEM), handed to libcurl in memory: never written to disk.
  std::string client_cert_pem;
  std::string client_key_pem;
  bool insecure_skip_tls_verify = false;  // a kubeconfig's insecure-skip-tls-verify: true
  bool follow_redirects = false;
};

struct Response {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names as received
  std::string body;
  // First header value with this name (case-insensitive), or empty.
  std::string header(std::string_view name) const;
};

// An HTTP client over libcurl that reuses connections between requests. Not thread-safe.
class Client {
 public:
  Client();
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Performs the request. Transport failures (refused, DNS, TLS, timeout, aborted) are an
  // Error (ExitCode::backend) naming the URL and curl's reason; any HTTP status is a Response.
  util::Result<Response> perform(const Request& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes a string for a URL query or path segment.
std::string url_encode(std::string_view text);

}  // namespace gpurun::cloud::http
