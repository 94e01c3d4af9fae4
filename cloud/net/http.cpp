#include "cloud/net/http.hpp"

#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "util/dynamic_library.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud::http {

namespace {

// libcurl is loaded on first use rather than linked: its dependency tree (TLS, Kerberos, LDAP,
// ...) costs every gpurun process milliseconds of dynamic linking, and most commands never
// make an HTTP request.
struct CurlApi {
  std::string error;  // why loading failed; empty when loaded
  decltype(&::curl_global_init) global_init = nullptr;
  decltype(&::curl_easy_init) easy_init = nullptr;
  decltype(&::curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&::curl_easy_reset) easy_reset = nullptr;
  decltype(&::curl_easy_setopt) easy_setopt = nullptr;
  decltype(&::curl_easy_perform) easy_perform = nullptr;
  decltype(&::curl_easy_getinfo) easy_getinfo = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_slist_append) slist_append = nullptr;
  decltype(&::curl_slist_free_all) slist_free_all = nullptr;
};

const CurlApi& curl() {
  static const CurlApi api = [] {
    CurlApi loaded;
    auto library = util::DynamicLibrary::open("libcurl.so.4");
    if (!library) {
      loaded.error = library.error().message + "; install the libcurl4 package";
      return loaded;
    }
    library->keep_loaded();
    const bool ok = library->load("curl_global_init", loaded.global_init) &&
                    library->load("curl_easy_init", loaded.easy_init) &&
                    library->load("curl_easy_cleanup", loaded.easy_cleanup) &&
                    library->load("curl_easy_reset", loaded.easy_reset) &&
                    library->load("curl_easy_setopt", loaded.easy_setopt) &&
                    library->load("curl_easy_perform", loaded.easy_perform) &&
                    library->load("curl_easy_getinfo", loaded.easy_getinfo) &&
                    library->load("curl_easy_strerror", loaded.easy_strerror) &&
                    library->load("curl_slist_append", loaded.slist_append) &&
                    library->load("curl_slist_free_all", loaded.slist_free_all);
    if (!ok) loaded.error = "libcurl.so.4 lacks a function gpurun needs; install a newer libcurl4";
    return loaded;
  }();
  return api;
}

struct CurlDeleter {
  void operator()(CURL* handle) const { curl().easy_cleanup(handle); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl().slist_free_all(list); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;
using SlistHandle = std::unique_ptr<curl_slist, SlistDeleter>;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl().global_init(CURL_GLOBAL_DEFAULT); });
}

// The URL without "user:password@" (messages never carry credentials) and without its query
// (an upload session's long state token says nothing to a reader).
std::string url_for_message(std::string_view url) {
  if (auto query = url.find('?'); query != std::string_view::npos) url = url.substr(0, query);
  auto scheme_end = url.find("://");
  std::size_t authority = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  auto authority_end = url.find_first_of("/?#", authority);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  auto at = url.rfind('@', authority_end);
  if (at == std::string_view::npos || at < authority) return std::string(url);
  return std::string(url.substr(0, authority)) + std::string(url.substr(at + 1));
}

constexpr long upload_buffer_bytes = 1L << 20;

bool is_body_method(std::string_view method) { return method != "GET" && method != "HEAD"; }

// The state one transfer's callbacks share.
struct Transfer {
  const Request* request = nullptr;
  Response* response = nullptr;
  std::size_t body_offset = 0;  // into request->body
  bool receiver_aborted = false;
  bool reader_failed = false;
  bool stopped = false;  // keep_going said false
  std::uint64_t body_read = 0;  // body bytes handed to curl (upload_now also counts chunk framing)
  std::uint64_t last_progress = 0;
  long status = 0;  // of the response being received
};

std::size_t on_write(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::size_t bytes = size * count;
  // Only a successful response's body is streamed: an error body (a 401 before a replay, a
  // registry's JSON error) stays in Response::body for the caller's message.
  if (transfer->request->on_body && transfer->status >= 200 && transfer->status < 300) {
    bool keep_going = false;
    try {
      keep_going = transfer->request->on_body(data, bytes);
    } catch (...) {
      keep_going = false;
    }
    if (!keep_going) {
      transfer->receiver_aborted = true;
      return 0;
    }
    return bytes;
  }
  transfer->response->body.append(data, bytes);
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::size_t bytes = size * count;
  std::string_view line(data, bytes);
  if (line.substr(0, 5) == "HTTP/") {
    transfer->response->headers.clear();  // a new response (100 Continue, redirect)
    auto space = line.find(' ');
    auto code = space == std::string_view::npos ? std::nullopt : util::parse_uint(line.substr(space + 1, 3));
    transfer->status = code ? static_cast<long>(*code) : 0;
    return bytes;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return bytes;
  transfer->response->headers.emplace_back(std::string(util::trim(line.substr(0, colon))),
                                           std::string(util::trim(line.substr(colon + 1))));
  return bytes;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::size_t capacity = size * count;
  const Request& request = *transfer->request;
  if (request.body_reader) {
    try {
      std::size_t bytes = request.body_reader(buffer, capacity);
      transfer->body_read += bytes;
      return bytes;
    } catch (...) {
      transfer->reader_failed = true;
      return CURL_READFUNC_ABORT;
    }
  }
  std::size_t left = request.body.size() - transfer->body_offset;
  std::size_t bytes = std::min(left, capacity);
  std::memcpy(buffer, request.body.data() + transfer->body_offset, bytes);
  transfer->body_offset += bytes;
  transfer->body_read += bytes;
  return bytes;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t upload_now) {
  auto* transfer = static_cast<Transfer*>(user);
  if (transfer->request->keep_going) {
    bool keep_going = false;
    try {
      keep_going = transfer->request->keep_going();
    } catch (...) {
      keep_going = false;
    }
    if (!keep_going) {
      transfer->stopped = true;
      return 1;
    }
  }
  auto sent = std::min(static_cast<std::uint64_t>(upload_now), transfer->body_read);
  if (transfer->request->on_upload_progress && sent != transfer->last_progress) {
    transfer->last_progress = sent;
    try {
      transfer->request->on_upload_progress(sent);
    } catch (...) {
      return 1;
    }
  }
  return 0;
}

// In-memory TLS material (libcurl copies each blob); nothing reaches the disk.
void set_tls_blobs(CURL* handle, const Request& request) {
  auto blob = [&](CURLoption option, const std::string& pem) {
    if (pem.empty()) return;
    curl_blob value{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_COPY};
    curl().easy_setopt(handle, option, &value);
  };
  blob(CURLOPT_CAINFO_BLOB, request.ca_pem);
  blob(CURLOPT_SSLCERT_BLOB, request.client_cert_pem);
  blob(CURLOPT_SSLKEY_BLOB, request.client_key_pem);
  if (!request.client_cert_pem.empty()) curl().easy_setopt(handle, CURLOPT_SSLCERTTYPE, "PEM");
  if (!request.client_key_pem.empty()) curl().easy_setopt(handle, CURLOPT_SSLKEYTYPE, "PEM");
  if (request.insecure_skip_tls_verify) {
    curl().easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 0L);
    curl().easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

}  // namespace

std::string Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (util::iequals(key, name)) return value;
  }
  return "";
}

struct Client::Impl {
  CurlHandle handle;
};

Client::Client() : impl_(std::make_unique<Impl>()) {
  if (!curl().error.empty()) return;
  global_init();
  impl_->handle.reset(curl().easy_init());
}

Client::~Client() = default;

util::Result<Response> Client::perform(const Request& request) {
  const std::string shown_url = url_for_message(request.url);
  auto fail = [&](const std::string& reason) {
    return util::Error{util::ExitCode::backend, "cannot reach " + shown_url + ": " + reason +
                                                    "; check that the server is running and the address is right"};
  };
  if (!http::curl().error.empty()) return fail(http::curl().error);
  CURL* curl = impl_->handle.get();
  if (curl == nullptr) return fail("libcurl could not be initialised");
  http::curl().easy_reset(curl);  // keeps the connection cache

  Response response;
  Transfer transfer;
  transfer.request = &request;
  transfer.response = &response;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  SlistHandle headers;
  auto add_header = [&](const std::string& line) {
    curl_slist* extended = http::curl().slist_append(headers.get(), line.c_str());
    if (extended != nullptr) {
      (void)headers.release();
      headers.reset(extended);
    }
  };
  for (const auto& [name, value] : request.headers) add_header(name + ": " + value);
  add_header("Expect:");  // no 100-continue round trip

  http::curl().easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  http::curl().easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  http::curl().easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  http::curl().easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  http::curl().easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  http::curl().easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, request.connect_timeout_ms);
  http::curl().easy_setopt(curl, CURLOPT_TIMEOUT_MS, request.timeout_ms);
  if (request.low_speed_timeout_s > 0) {
    http::curl().easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    http::curl().easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, request.low_speed_timeout_s);
  }
  http::curl().easy_setopt(curl, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  if (!request.unix_socket.empty()) http::curl().easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, request.unix_socket.c_str());
  if (!request.ca_file.empty()) http::curl().easy_setopt(curl, CURLOPT_CAINFO, request.ca_file.c_str());
  set_tls_blobs(curl, request);
  http::curl().easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
  http::curl().easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  http::curl().easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  http::curl().easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  http::curl().easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);

  if (request.method == "HEAD") {
    http::curl().easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (is_body_method(request.method)) {
    // Every body-carrying method goes through the read callback: nothing is copied, no
    // form Content-Type is added, and an unknown size is sent chunked.
    http::curl().easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    http::curl().easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    http::curl().easy_setopt(curl, CURLOPT_READDATA, &transfer);
    if (request.body_reader) {
      // Large reads and sends for streamed bodies (blobs of hundreds of MB): libcurl's 64 KiB
      // default costs a callback and a send() per 64 KiB.
      http::curl().easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, upload_buffer_bytes);
      if (request.body_size) {
        http::curl().easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(*request.body_size));
      }
    } else {
      http::curl().easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    if (request.method != "PUT") http::curl().easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method != "GET") {
    http::curl().easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (request.on_upload_progress || request.keep_going) {
    http::curl().easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    http::curl().easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    http::curl().easy_setopt(curl, CURLOPT_XFERINFODATA, &transfer);
  }

  CURLcode code = http::curl().easy_perform(curl);
  http::curl().easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  http::curl().easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
  if (code != CURLE_OK) {
    if (transfer.receiver_aborted) return fail("the download was aborted by its receiver");
    if (transfer.reader_failed) return fail("reading the upload body failed");
    if (transfer.stopped) {
      return util::Error{util::ExitCode::backend, shown_url + ": the transfer was stopped by gpurun before it ended"};
    }
    if (code == CURLE_OPERATION_TIMEDOUT && request.low_speed_timeout_s > 0 &&
        std::string_view(error_buffer).find("too slow") != std::string_view::npos) {
      return util::Error{util::ExitCode::backend, shown_url + ": the server stalled (nothing moved for " +
                                                      std::to_string(request.low_speed_timeout_s) +
                                                      " s); check that it is healthy and not overloaded"};
    }
    return fail(error_buffer[0] != 0 ? std::string(error_buffer) : std::string(http::curl().easy_strerror(code)));
  }
  http::curl().easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

std::string url_encode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    bool unreserved = (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9') ||
                      byte == '-' || byte == '.' || byte == '_' || byte == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += hex[byte >> 4];
      out += hex[byte & 0xF];
    }
  }
  return out;
}

}  // namespace gpurun::cloud::http
