#include "cloud/images/registry.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "util/files.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud::registry {

namespace {

const char* const accept_manifests =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

bool is_loopback(std::string_view host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]" || host == "::1";
}

std::string host_of(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') return std::string(authority.substr(0, authority.find(']') + 1));
  return std::string(authority.substr(0, authority.find(':')));
}

std::string base64(std::string_view text) {
  std::string out(4 * ((text.size() + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  out.resize(static_cast<std::size_t>(length));
  return out;
}

// Parses `Scheme key="value",key2="value2"`.
std::map<std::string, std::string> parse_challenge(const std::string& header, std::string& scheme) {
  std::map<std::string, std::string> params;
  auto space = header.find(' ');
  scheme = util::to_lower(header.substr(0, space));
  if (space == std::string::npos) return params;
  std::size_t i = space + 1;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    auto equals = header.find('=', i);
    if (equals == std::string::npos) break;
    std::string key = util::to_lower(std::string(util::trim(header.substr(i, equals - i))));
    i = equals + 1;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      while (i < header.size() && header[i] != '"') {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i++];
      }
      ++i;
    } else {
      auto end = header.find(',', i);
      value = std::string(util::trim(header.substr(i, end == std::string::npos ? std::string::npos : end - i)));
      i = end == std::string::npos ? header.size() : end;
    }
    params[key] = value;
  }
  return params;
}

// "CODE (message)" from a registry's JSON error body, or empty.
std::string registry_errors(const std::string& body) {
  auto value = nlohmann::json::parse(body, nullptr, false);
  if (value.is_discarded() || !value.is_object() || !value.contains("errors") || !value["errors"].is_array()) return "";
  std::vector<std::string> parts;
  for (const auto& error : value["errors"]) {
    if (!error.is_object()) continue;
    std::string text = error.value("code", "");
    std::string message = error.value("message", "");
    if (!message.empty()) text += " (" + message + ")";
    parts.push_back(text);
  }
  return util::join(parts, ", ");
}

std::string base64_decode(std::string_view text) {
  std::string out(3 * (text.size() / 4) + 3, '\0');
  int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (length < 0) return "";
  out.resize(static_cast<std::size_t>(length));
  std::size_t padding = 0;
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) ++padding;
  out.resize(out.size() - std::min(padding, out.size()));
  return out;
}

http::Request make_request(std::string method, std::string url) {
  http::Request request;
  request.method = std::move(method);
  request.url = std::move(url);
  return request;
}

bool retriable_status(long status) { return status >= 500 || status == 429; }

std::string with_query(const std::string& url, const std::string& query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}

// Reads a blob (file or memory) from an offset for a streamed request body.
class BlobReader {
 public:
  BlobReader(const Blob& blob, std::uint64_t offset) : blob_(blob), offset_(offset) {
    if (!blob.path.empty()) {
      file_.reset(std::fopen(blob.path.c_str(), "rb"));
      if (file_) std::fseek(file_.get(), static_cast<long>(offset), SEEK_SET);
    }
  }
  bool ok() const { return blob_.path.empty() || file_ != nullptr; }
  std::uint64_t offset() const { return offset_; }
  std::size_t read(char* buffer, std::size_t size) {
    std::size_t got = 0;
    if (file_) {
      got = std::fread(buffer, 1, size, file_.get());
    } else if (offset_ < blob_.data.size()) {
      got = std::min<std::size_t>(size, blob_.data.size() - offset_);
      std::copy_n(blob_.data.data() + offset_, got, buffer);
    }
    offset_ += got;
    return got;
  }

 private:
  const Blob& blob_;
  std::uint64_t offset_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, std::fclose};
};

// A bounded byte buffer between one producer thread and one consumer: the producer blocks while
// it is full, the consumer while it is empty. The producer closes it with a verdict (empty = the
// stream is complete and correct); the consumer abandons it when it stops reading.
class BytePipe {
 public:
  explicit BytePipe(std::size_t capacity) : ring_(capacity) {}

  // False once the consumer has abandoned the pipe.
  bool write(const char* data, std::size_t size) {
    std::unique_lock lock(mutex_);
    while (size > 0) {
      space_.wait(lock, [&] { return used_ < ring_.size() || abandoned_; });
      if (abandoned_) return false;
      const std::size_t tail = (head_ + used_) % ring_.size();
      const std::size_t n = std::min({size, ring_.size() - used_, ring_.size() - tail});
      std::copy_n(data, n, ring_.data() + tail);
      used_ += n;
      data += n;
      size -= n;
      ready_.notify_one();
    }
    return true;
  }
  void close(std::string verdict) {
    std::lock_guard lock(mutex_);
    closed_ = true;
    verdict_ = std::move(verdict);
    ready_.notify_all();
  }
  // Up to `size` bytes; 0 once closed and drained.
  std::size_t read(char* out, std::size_t size) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return used_ > 0 || closed_; });
    const std::size_t n = std::min({size, used_, ring_.size() - head_});
    std::copy_n(ring_.data() + head_, n, out);
    head_ = (head_ + n) % ring_.size();
    used_ -= n;
    space_.notify_one();
    return n;
  }
  // Waits for the producer to finish; its verdict (empty = good).
  std::string wait_verdict() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_; });
    return verdict_;
  }
  void abandon() {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
    space_.notify_all();
  }

 private:
  std::vector<char> ring_;
  std::size_t head_ = 0;
  std::size_t used_ = 0;
  bool closed_ = false;
  bool abandoned_ = false;
  std::string verdict_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable space_;
};

constexpr std::size_t copy_buffer_bytes = 4 * 1024 * 1024;

}  // namespace

std::chrono::milliseconds backoff_delay(int attempt, std::chrono::milliseconds initial, std::chrono::milliseconds cap) {
  auto delay = initial;
  for (int i = 1; i < attempt && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

std::optional<std::uint64_t> parse_upload_range(std::string_view range) {
  range = util::trim(range);
  if (range.rfind("bytes=", 0) == 0) range.remove_prefix(6);
  auto dash = range.find('-');
  if (dash == std::string_view::npos || util::trim(range.substr(0, dash)) != "0") return std::nullopt;
  auto end = util::parse_uint(util::trim(range.substr(dash + 1)));
  if (!end) return std::nullopt;
  return *end == 0 ? 0 : static_cast<std::uint64_t>(*end) + 1;
}

util::Result<std::chrono::seconds> idle_timeout_from_env(std::chrono::seconds fallback) {
  const char* text = std::getenv("GPURUN_REGISTRY_TIMEOUT");
  if (text == nullptr || *text == '\0') return fallback;
  auto duration = util::parse_duration(text);
  if (!duration || *duration < std::chrono::seconds(1)) {
    return util::Error{util::ExitCode::usage, std::string("GPURUN_REGISTRY_TIMEOUT='") + text +
                                                  "': expected a duration of at least 1s, such as 30s or 2m"};
  }
  return std::chrono::duration_cast<std::chrono::seconds>(*duration);
}

util::Result<std::string> base_url(std::string_view registry, bool insecure) {
  std::string text(registry);
  while (!text.empty() && text.back() == '/') text.pop_back();
  if (text == "docker.io" || text == "index.docker.io") return std::string("https://registry-1.docker.io");
  if (text.rfind("https://", 0) == 0) return text;
  if (text.rfind("http://", 0) == 0) {
    if (!insecure && !is_loopback(host_of(std::string_view(text).substr(7)))) {
      return util::Error{util::ExitCode::usage, "registry " + text +
                                                    ": plain http is only used for loopback registries; use https:// "
                                                    "or mark the registry insecure"};
    }
    return text;
  }
  if (text.empty() || text.find('/') != std::string::npos) {
    return util::Error{util::ExitCode::usage, "registry '" + text + "': expected host[:port] or an http(s):// URL"};
  }
  return (insecure || is_loopback(host_of(text)) ? "http://" : "https://") + text;
}

std::vector<std::string> default_tags(const std::string& manifest_digest, const std::string& version) {
  std::vector<std::string> tags;
  auto colon = manifest_digest.find(':');
  tags.push_back(manifest_digest.substr(colon == std::string::npos ? 0 : colon + 1, 12));
  if (!version.empty()) tags.push_back(version);
  return tags;
}

Client::Client(std::string registry, Options options) : registry_(std::move(registry)), options_(std::move(options)) {
  auto url = base_url(registry_, options_.insecure);
  if (url) {
    base_ = *url;
  } else {
    base_error_ = url.error();
  }
}

std::string Client::absolute(const std::string& location) const {
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) return location;
  return base_ + (location.empty() || location.front() != '/' ? "/" : "") + location;
}

util::Error Client::failure(const std::string& what, const http::Response& response, const std::string& advice) const {
  std::string detail = registry_errors(response.body);
  // A server error was already retried: what helps is the registry's own health.
  const std::string fix = retriable_status(response.status)
                              ? "the registry kept failing (" + std::to_string(options_.max_attempts) +
                                    " attempts); check that it is healthy (its logs, free disk space) and try again"
                              : advice;
  return util::Error{util::ExitCode::backend, "registry " + registry_ + ": " + what + " failed with HTTP " +
                                                  std::to_string(response.status) +
                                                  (detail.empty() ? "" : " " + detail) + "; " + fix};
}

util::Result<void> Client::authenticate(const http::Response& challenge, const std::string& scope) {
  std::string scheme;
  auto params = parse_challenge(challenge.header("WWW-Authenticate"), scheme);
  if (scheme == "basic") {
    if (!options_.credentials) {
      return util::Error{util::ExitCode::backend, "registry " + registry_ +
                                                      ": it requires a login (HTTP 401); give a username and password for it"};
    }
    basic_ = true;
    return {};
  }
  if (scheme != "bearer" || params["realm"].empty()) {
    return util::Error{util::ExitCode::backend, "registry " + registry_ + ": unsupported authentication challenge '" +
                                                    challenge.header("WWW-Authenticate") + "'"};
  }
  std::string url = params["realm"];
  std::vector<std::string> query;
  if (!params["service"].empty()) query.push_back("service=" + http::url_encode(params["service"]));
  for (const auto& item : util::split(scope, ' ')) {
    if (!item.empty()) query.push_back("scope=" + http::url_encode(item));
  }
  if (!query.empty()) url = with_query(url, util::join(query, "&"));
  http::Request request = make_request("GET", url);
  request.ca_file = options_.ca_file;
  request.low_speed_timeout_s = static_cast<long>(options_.idle_timeout.count());
  if (options_.credentials) {
    request.headers.emplace_back("Authorization",
                                 "Basic " + base64(options_.credentials->username + ":" + options_.credentials->password));
  }
  ++counts_["token"];
  auto response = http_.perform(request);
  if (!response) return response.error();
  if (response->status == 401 || response->status == 403) {
    return util::Error{util::ExitCode::backend, "registry " + registry_ + ": the token service refused the login (HTTP " +
                                                    std::to_string(response->status) + "); check the username and password"};
  }
  auto body = nlohmann::json::parse(response->body, nullptr, false);
  std::string token;
  if (!body.is_discarded() && body.is_object()) token = body.value("token", body.value("access_token", ""));
  if (response->status != 200 || token.empty()) {
    return util::Error{util::ExitCode::backend, "registry " + registry_ + ": the token service gave no token (HTTP " +
                                                    std::to_string(response->status) + ")"};
  }
  tokens_[scope] = token;
  return {};
}

util::Result<http::Response> Client::send(http::Request request, const std::string& scope, bool replayable) {
  if (!base_error_.message.empty()) return base_error_;
  request.ca_file = options_.ca_file;
  request.low_speed_timeout_s = static_cast<long>(options_.idle_timeout.count());
  request.headers.emplace_back("Accept", accept_manifests);
  const std::size_t plain_headers = request.headers.size();
  bool challenged = false;
  for (int attempt = 1;; ++attempt) {
    request.headers.resize(plain_headers);
    if (basic_ && options_.credentials) {
      request.headers.emplace_back("Authorization",
                                   "Basic " + base64(options_.credentials->username + ":" + options_.credentials->password));
    } else if (auto it = tokens_.find(scope); it != tokens_.end()) {
      request.headers.emplace_back("Authorization", "Bearer " + it->second);
    }
    ++counts_[request.method];
    auto response = http_.perform(request);
    bool retry = !response ? true : retriable_status(response->status);
    if (response && response->status == 401 && !challenged) {
      challenged = true;
      if (auto auth = authenticate(*response, scope); !auth) return auth.error();
      --attempt;
      continue;
    }
    if (response && response->status == 401) {
      std::string detail = registry_errors(response->body);
      return util::Error{util::ExitCode::backend, "registry " + registry_ + ": authentication failed (HTTP 401" +
                                                      (detail.empty() ? "" : " " + detail) +
                                                      "); check the username and password"};
    }
    if (!retry || !replayable || attempt >= options_.max_attempts) return response;
    std::this_thread::sleep_for(backoff_delay(attempt, options_.initial_backoff));
  }
}

util::Result<bool> Client::blob_exists(const std::string& repository, const std::string& digest) {
  auto response = send(make_request("HEAD", base_ + "/v2/" + repository + "/blobs/" + digest),
                       "repository:" + repository + ":pull,push");
  if (!response) return response.error();
  if (response->status == 200) return true;
  if (response->status == 404) return false;
  return failure("HEAD blob " + digest + " in " + repository, *response, "check the repository name and your access");
}

util::Result<void> Client::finish_upload(const std::string& repository, const Blob& blob, const std::string& location,
                                         const std::string& scope) {
  http::Request put = make_request("PUT", with_query(absolute(location), "digest=" + http::url_encode(blob.descriptor.digest)));
  put.headers = {{"Content-Type", "application/octet-stream"}};
  auto response = send(put, scope);
  if (!response) return response.error();
  if (response->status != 201) {
    return failure("finishing the upload of " + blob.descriptor.digest + " to " + repository, *response,
                   "the blob on disk may have changed; build the image again");
  }
  std::string echoed = response->header("Docker-Content-Digest");
  if (!echoed.empty() && echoed != blob.descriptor.digest) {
    return util::Error{util::ExitCode::backend, "registry " + registry_ + ": stored " + blob.descriptor.digest + " as " +
                                                    echoed + "; the blob changed during the push, build the image again"};
  }
  return {};
}

util::Result<std::string> Client::start_upload(const std::string& repository) {
  auto start = send(make_request("POST", base_ + "/v2/" + repository + "/blobs/uploads/"),
                    "repository:" + repository + ":pull,push");
  if (!start) return start.error();
  if (start->status != 202 || start->header("Location").empty()) {
    return failure("starting an upload to " + repository, *start, "check the repository name and your access");
  }
  return start->header("Location");
}

util::Result<std::uint64_t> Client::upload_streamed(const std::string& repository, const Blob& blob, std::string& location,
                                                    StreamFailure& failure_kind) {
  failure_kind = StreamFailure::none;
  const std::string scope = "repository:" + repository + ":pull,push";
  std::uint64_t offset = 0;
  std::uint64_t sent_total = 0;
  for (int attempt = 1;; ++attempt) {
    if (location.empty()) {
      auto started = start_upload(repository);
      if (!started) return started.error();
      location = *started;
      offset = 0;
    }
    BlobReader reader(blob, offset);
    if (!reader.ok()) {
      return util::Error{util::ExitCode::backend, "registry push: cannot read " + blob.path + "; build the image again"};
    }
    std::uint64_t sent = 0;
    http::Request patch = make_request("PATCH", absolute(location));
    patch.headers = {{"Content-Type", "application/octet-stream"}};
    patch.body_size = blob.descriptor.size - offset;
    patch.body_reader = [&](char* buffer, std::size_t size) -> std::size_t {
      if (options_.interrupt_upload && options_.interrupt_upload(reader.offset())) throw std::runtime_error("interrupted");
      std::size_t got = reader.read(buffer, size);
      sent += got;
      if (options_.on_progress) options_.on_progress(blob.descriptor.digest, reader.offset(), blob.descriptor.size);
      return got;
    };
    auto response = send(patch, scope, false);
    sent_total += sent;
    if (response && response->status == 202) {
      location = response->header("Location").empty() ? location : response->header("Location");
      auto held = parse_upload_range(response->header("Range"));
      if (held && *held == blob.descriptor.size) return sent_total;
      return util::Error{util::ExitCode::backend, "registry " + registry_ + ": the upload of " + blob.descriptor.digest +
                                                      " ended at byte " + response->header("Range") + " of " +
                                                      std::to_string(blob.descriptor.size) + "; push again"};
    }
    if (response && !retriable_status(response->status)) {
      failure_kind = StreamFailure::unsupported;
      return failure("PATCH upload of " + blob.descriptor.digest, *response, "push again");
    }
    if (attempt >= options_.max_attempts) {
      const std::string last = response ? "HTTP " + std::to_string(response->status) +
                                              (registry_errors(response->body).empty() ? "" : " " + registry_errors(response->body))
                                         : response.error().message;
      return util::Error{util::ExitCode::backend, "registry " + registry_ + ": uploading " + blob.descriptor.digest + " to " +
                                                      repository + " failed " + std::to_string(attempt) +
                                                      " times, the last with: " + last +
                                                      "; check that the registry is healthy (its logs, free disk space) and "
                                                      "try again"};
    }
    std::this_thread::sleep_for(backoff_delay(attempt, options_.initial_backoff));
    // Ask how much of the blob the session holds and continue from there. Distribution cancels
    // a session whose PATCH was cut off mid-body (its upload state no longer matches), and an
    // empty session gains nothing from being kept: both start a new session.
    auto status = send(make_request("GET", absolute(location)), scope);
    std::optional<std::uint64_t> held;
    if (status && status->status == 204) held = parse_upload_range(status->header("Range"));
    if (held && *held > 0 && *held < blob.descriptor.size) {
      if (!status->header("Location").empty()) location = status->header("Location");
      offset = *held;
    } else {
      if (status && status->status == 204) (void)send(make_request("DELETE", absolute(location)), scope, false);
      location.clear();
    }
  }
}

util::Result<std::uint64_t> Client::upload_monolithic(const std::string& repository, const Blob& blob) {
  const std::string scope = "repository:" + repository + ":pull,push";
  auto start = send(make_request("POST", base_ + "/v2/" + repository + "/blobs/uploads/"), scope);
  if (!start) return start.error();
  if (start->status != 202) return failure("starting an upload to " + repository, *start, "check the repository name and your access");
  BlobReader reader(blob, 0);
  if (!reader.ok()) return util::Error{util::ExitCode::backend, "registry push: cannot read " + blob.path + "; build the image again"};
  http::Request put = make_request("PUT", with_query(absolute(start->header("Location")),
                                                       "digest=" + http::url_encode(blob.descriptor.digest)));
  put.headers = {{"Content-Type", "application/octet-stream"}};
  put.body_size = blob.descriptor.size;
  put.body_reader = [&](char* buffer, std::size_t size) {
    std::size_t got = reader.read(buffer, size);
    if (options_.on_progress) options_.on_progress(blob.descriptor.digest, reader.offset(), blob.descriptor.size);
    return got;
  };
  auto response = send(put, scope, false);
  if (!response) return response.error();
  if (response->status != 201) {
    return failure("uploading " + blob.descriptor.digest + " to " + repository, *response, "build the image again and push again");
  }
  return blob.descriptor.size;
}

util::Result<BlobOutcome> Client::push_blob(const std::string& repository, const Blob& blob,
                                            const std::vector<std::string>& mount_from) {
  auto exists = blob_exists(repository, blob.descriptor.digest);
  if (!exists) return exists.error();
  if (*exists) return BlobOutcome{BlobOutcome::How::skipped, 0};

  std::string location;
  for (const auto& from : mount_from) {
    if (from == repository) continue;
    std::string scope = "repository:" + repository + ":pull,push repository:" + from + ":pull";
    auto mount = send(make_request("POST", base_ + "/v2/" + repository + "/blobs/uploads/?mount=" +
                                                             http::url_encode(blob.descriptor.digest) + "&from=" +
                                                             http::url_encode(from)),
                      scope);
    if (!mount) return mount.error();
    if (mount->status == 201) return BlobOutcome{BlobOutcome::How::mounted, 0};
    if (mount->status == 202) {
      location = mount->header("Location");
      break;
    }
  }
  const std::string scope = "repository:" + repository + ":pull,push";
  StreamFailure failure_kind = StreamFailure::none;
  auto streamed = upload_streamed(repository, blob, location, failure_kind);
  if (streamed) {
    if (auto done = finish_upload(repository, blob, location, scope); !done) return done.error();
    return BlobOutcome{BlobOutcome::How::uploaded, *streamed};
  }
  if (failure_kind != StreamFailure::unsupported) return streamed.error();
  // The registry does not take streamed PATCH uploads: monolithic instead.
  auto monolithic = upload_monolithic(repository, blob);
  if (!monolithic) return monolithic.error();
  return BlobOutcome{BlobOutcome::How::uploaded, *monolithic};
}

util::Result<std::string> Client::put_manifest(const std::string& repository, const std::string& reference,
                                               const std::string& bytes, std::string_view media_type) {
  http::Request put = make_request("PUT", base_ + "/v2/" + repository + "/manifests/" + reference);
  put.headers = {{"Content-Type", std::string(media_type)}};
  put.body = bytes;
  auto response = send(put, "repository:" + repository + ":pull,push");
  if (!response) return response.error();
  if (response->status != 201) {
    return failure("PUT manifest " + repository + ":" + reference, *response, "push the image's blobs first");
  }
  std::string digest = response->header("Docker-Content-Digest");
  return digest.empty() ? oci::describe(media_type, bytes).digest : digest;
}

util::Result<PushResult> Client::push_image(const std::string& repository, const std::vector<Blob>& blobs,
                                            const std::string& manifest_bytes, const std::vector<std::string>& tags,
                                            const std::vector<std::string>& mount_from) {
  PushResult result;
  for (const auto& blob : blobs) {
    auto outcome = push_blob(repository, blob, mount_from);
    if (!outcome) return outcome.error();
    result.bytes_uploaded += outcome->bytes_uploaded;
    switch (outcome->how) {
      case BlobOutcome::How::skipped: ++result.blobs_skipped; break;
      case BlobOutcome::How::mounted: ++result.blobs_mounted; break;
      case BlobOutcome::How::uploaded: ++result.blobs_uploaded; break;
    }
  }
  std::string media_type = std::string(oci::manifest_media_type);
  auto parsed = nlohmann::json::parse(manifest_bytes, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object()) media_type = parsed.value("mediaType", media_type);
  std::string digest = oci::describe(media_type, manifest_bytes).digest;
  auto stored = put_manifest(repository, digest, manifest_bytes, media_type);
  if (!stored) return stored.error();
  for (const auto& tag : tags) {
    auto tagged = put_manifest(repository, tag, manifest_bytes, media_type);
    if (!tagged) return tagged.error();
  }
  result.digest = digest;
  return result;
}

std::optional<Credentials> find_credentials(std::string_view registry) {
  const char* user = std::getenv("GPURUN_REGISTRY_USER");
  const char* password = std::getenv("GPURUN_REGISTRY_PASSWORD");
  if (user != nullptr && *user != '\0') return Credentials{user, password != nullptr ? password : ""};
  std::string path;
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
    path = std::string(dir) + "/config.json";
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    path = std::string(home) + "/.docker/config.json";
  } else {
    return std::nullopt;
  }
  int error_number = 0;
  auto text = util::read_file(path, error_number);
  if (!text) return std::nullopt;  // no Docker config: no credentials
  auto config = nlohmann::json::parse(*text, nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains("auths") || !config["auths"].is_object()) {
    return std::nullopt;
  }
  std::string wanted(registry);
  for (const auto& prefix : {"https://", "http://"}) {
    if (wanted.rfind(prefix, 0) == 0) wanted.erase(0, std::string_view(prefix).size());
  }
  while (!wanted.empty() && wanted.back() == '/') wanted.pop_back();
  for (const auto& [key, entry] : config["auths"].items()) {
    std::string host = key;
    for (const auto& prefix : {"https://", "http://"}) {
      if (host.rfind(prefix, 0) == 0) host.erase(0, std::string_view(prefix).size());
    }
    host = host.substr(0, host.find('/'));
    bool hub = (wanted == "docker.io" || wanted == "index.docker.io") && host == "index.docker.io";
    if ((host != wanted && !hub) || !entry.is_object() || !entry.contains("auth") || !entry["auth"].is_string()) continue;
    std::string decoded = base64_decode(entry["auth"].get<std::string>());
    auto colon = decoded.find(':');
    if (colon == std::string::npos) continue;
    return Credentials{decoded.substr(0, colon), decoded.substr(colon + 1)};
  }
  return std::nullopt;
}

util::Result<bool> Client::mount_blob(const std::string& repository, const std::string& digest, const std::string& from) {
  std::string scope = "repository:" + repository + ":pull,push repository:" + from + ":pull";
  auto mount = send(make_request("POST", base_ + "/v2/" + repository + "/blobs/uploads/?mount=" + http::url_encode(digest) +
                                             "&from=" + http::url_encode(from)),
                    scope);
  if (!mount) return mount.error();
  if (mount->status == 201) return true;
  if (mount->status == 202 && !mount->header("Location").empty()) {
    (void)send(make_request("DELETE", absolute(mount->header("Location"))), scope);
  }
  return false;
}

util::Result<std::optional<std::string>> Client::manifest_digest(const std::string& repository, const std::string& reference) {
  auto response = send(make_request("HEAD", base_ + "/v2/" + repository + "/manifests/" + reference),
                       "repository:" + repository + ":pull,push");
  if (!response) return response.error();
  if (response->status == 404) return std::optional<std::string>();
  if (response->status != 200) {
    return failure("HEAD manifest " + repository + ":" + reference, *response, "check the repository name and your access");
  }
  return std::optional<std::string>(response->header("Docker-Content-Digest"));
}

util::Result<std::vector<std::string>> Client::list_tags(const std::string& repository) {
  auto response = send(make_request("GET", base_ + "/v2/" + repository + "/tags/list"), "repository:" + repository + ":pull");
  if (!response) return response.error();
  std::vector<std::string> tags;
  if (response->status == 404) return tags;
  if (response->status != 200) return failure("GET tags of " + repository, *response, "check your access to the repository");
  auto parsed = nlohmann::json::parse(response->body, nullptr, false);
  if (parsed.is_object() && parsed.contains("tags") && parsed["tags"].is_array()) {
    for (const auto& tag : parsed["tags"]) {
      if (tag.is_string()) tags.push_back(tag.get<std::string>());
    }
  }
  return tags;
}

util::Result<Client::DeleteOutcome> Client::delete_manifest(const std::string& repository, const std::string& digest) {
  auto response = send(make_request("DELETE", base_ + "/v2/" + repository + "/manifests/" + digest),
                       "repository:" + repository + ":delete,pull,push");
  if (!response) return response.error();
  DeleteOutcome outcome;
  if (response->status == 202 || response->status == 200) {
    outcome.deleted = true;
  } else if (response->status == 405) {
    outcome.unsupported = true;
  } else if (response->status != 404) {
    return failure("DELETE manifest " + repository + "@" + digest, *response, "check your access to the repository");
  }
  return outcome;
}

util::Result<FetchedManifest> Client::get_manifest(const std::string& repository, const std::string& reference) {
  auto response = send(make_request("GET", base_ + "/v2/" + repository + "/manifests/" + reference),
                       "repository:" + repository + ":pull");
  if (!response) return response.error();
  if (response->status != 200) {
    return failure("GET manifest " + repository + ":" + reference, *response,
                   "check that the image exists and that you may pull it");
  }
  FetchedManifest fetched;
  fetched.bytes = response->body;
  fetched.media_type = response->header("Content-Type");
  auto parsed = nlohmann::json::parse(fetched.bytes, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("mediaType")) {
    fetched.media_type = parsed.value("mediaType", fetched.media_type);
  }
  fetched.digest = oci::describe(fetched.media_type, fetched.bytes).digest;
  return fetched;
}

util::Result<void> Client::get_blob(const std::string& repository, const oci::Descriptor& blob, const std::string& path) {
  const std::string temporary = path + ".part-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(temporary.c_str(), "wb"), std::fclose);
    if (!file) {
      return util::Error{util::ExitCode::backend, "cannot write " + temporary + "; check the disk and its permissions"};
    }
    util::Sha256 hash;
    std::uint64_t received = 0;
    http::Request request = make_request("GET", base_ + "/v2/" + repository + "/blobs/" + blob.digest);
    request.follow_redirects = true;
    long status = 0;
    request.on_body = [&](const char* data, std::size_t size) {
      hash.update(data, size);
      received += size;
      if (options_.on_progress) options_.on_progress(blob.digest, received, blob.size);
      return std::fwrite(data, 1, size, file.get()) == size;
    };
    auto response = send(request, "repository:" + repository + ":pull", false);
    file.reset();
    if (response) status = response->status;
    if (response && status == 200 && hash.finish() == blob.digest) {
      std::filesystem::rename(temporary, path, ec);
      if (ec) return util::Error{util::ExitCode::backend, "cannot write " + path + ": " + ec.message()};
      return {};
    }
    std::filesystem::remove(temporary, ec);
    if (response && status != 200 && !retriable_status(status)) {
      return failure("GET blob " + blob.digest + " of " + repository, *response, "check that the image still exists");
    }
    if (attempt >= options_.max_attempts) {
      if (!response) return response.error();
      return util::Error{util::ExitCode::backend, "registry " + registry_ + ": the blob " + blob.digest + " of " + repository +
                                                      " arrived damaged (digest mismatch or HTTP " + std::to_string(status) +
                                                      "); try again"};
    }
    std::this_thread::sleep_for(options_.initial_backoff * attempt);
  }
}

util::Result<std::string> Client::get_small_blob(const std::string& repository, const std::string& digest) {
  http::Request request = make_request("GET", base_ + "/v2/" + repository + "/blobs/" + digest);
  request.follow_redirects = true;
  auto response = send(request, "repository:" + repository + ":pull");
  if (!response) return response.error();
  if (response->status != 200) {
    return failure("GET blob " + digest + " of " + repository, *response, "check that the image still exists");
  }
  if (oci::describe("", response->body).digest != digest) {
    return util::Error{util::ExitCode::backend, "registry " + registry_ + ": the blob " + digest + " of " + repository +
                                                    " does not match its digest; try again"};
  }
  return response->body;
}

util::Result<BlobOutcome> Client::copy_blob(Client& source, const std::string& source_repository,
                                            const std::string& repository, const oci::Descriptor& blob) {
  auto exists = blob_exists(repository, blob.digest);
  if (!exists) return exists.error();
  if (*exists) return BlobOutcome{BlobOutcome::How::skipped, 0};
  const std::string scope = "repository:" + repository + ":pull,push";
  const std::string what = "copying " + blob.digest + " from " + source.registry_ + "/" + source_repository + " to " +
                           repository;
  std::uint64_t sent_total = 0;
  for (int attempt = 1;; ++attempt) {
    auto location = start_upload(repository);
    if (!location) return location.error();
    BytePipe pipe(copy_buffer_bytes);
    // The GET runs on its own thread (its own connection) and feeds the pipe, hashing as it goes.
    std::thread producer([&] {
      util::Sha256 hash;
      std::uint64_t received = 0;
      http::Request get = make_request("GET", source.base_ + "/v2/" + source_repository + "/blobs/" + blob.digest);
      get.follow_redirects = true;
      get.on_body = [&](const char* data, std::size_t size) {
        hash.update(data, size);
        received += size;
        return received <= blob.size && pipe.write(data, size);
      };
      auto response = source.send(get, "repository:" + source_repository + ":pull", false);
      std::string verdict;
      if (!response) {
        verdict = response.error().message;
      } else if (response->status != 200) {
        verdict = source.failure("GET blob " + blob.digest + " of " + source_repository, *response,
                                 "check that the base image still exists")
                      .message;
      } else if (std::string got = hash.finish(); received != blob.size || got != blob.digest) {
        verdict = "registry " + source.registry_ + " sent " + std::to_string(received) + " bytes with digest " + got +
                  " for " + blob.digest + " (" + std::to_string(blob.size) + " bytes)";
      }
      pipe.close(verdict);
    });
    std::uint64_t sent = 0;
    std::string source_problem;
    http::Request patch = make_request("PATCH", absolute(*location));
    patch.headers = {{"Content-Type", "application/octet-stream"}};
    patch.body_size = blob.size;
    patch.body_reader = [&](char* buffer, std::size_t size) -> std::size_t {
      std::size_t got = pipe.read(buffer, std::min<std::uint64_t>(size, blob.size - sent));
      sent += got;
      // The last bytes go out only once the whole blob has been verified.
      if (got == 0 || sent == blob.size) {
        source_problem = pipe.wait_verdict();
        if (source_problem.empty() && got == 0) source_problem = "the source ended early";
        if (!source_problem.empty()) throw std::runtime_error(source_problem);
      }
      if (options_.on_progress) options_.on_progress(blob.digest, sent, blob.size);
      return got;
    };
    auto response = send(patch, scope, false);
    pipe.abandon();
    producer.join();
    sent_total += sent;
    if (blob.size == 0) source_problem = pipe.wait_verdict();
    if (response && response->status == 202 && source_problem.empty()) {
      std::string newest = response->header("Location").empty() ? *location : response->header("Location");
      if (auto done = finish_upload(repository, Blob{blob, "", ""}, newest, scope); !done) return done.error();
      return BlobOutcome{BlobOutcome::How::uploaded, sent_total};
    }
    // Nothing was committed: the session is dropped (Distribution already did if the body was cut).
    (void)send(make_request("DELETE", absolute(*location)), scope, false);
    std::string problem;
    bool retry = true;
    if (!source_problem.empty()) {
      problem = source_problem;
    } else if (!response) {
      problem = response.error().message;
    } else {
      problem = "HTTP " + std::to_string(response->status) +
                (registry_errors(response->body).empty() ? "" : " " + registry_errors(response->body));
      retry = retriable_status(response->status);
    }
    if (!retry || attempt >= options_.max_attempts) {
      return util::Error{util::ExitCode::backend, "registry " + registry_ + ": " + what + " failed" +
                                                      (attempt > 1 ? " " + std::to_string(attempt) + " times, the last" : "") +
                                                      " with: " + problem +
                                                      "; nothing was committed, check both registries and try again"};
    }
    std::this_thread::sleep_for(backoff_delay(attempt, options_.initial_backoff));
  }
}

}  // namespace gpurun::cloud::registry
