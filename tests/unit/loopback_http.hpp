#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "util/strings.hpp"

namespace gpurun::test {

// A loopback TCP port that was free a moment ago (nobody listens on it).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A request as the loopback server read it.
struct SeenRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;
  std::string header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (util::iequals(key, name)) return value;
    }
    return "";
  }
};

// A tiny HTTP/1.1 server on 127.0.0.1 (or a unix socket) in a thread. The handler returns the
// raw response text; connections are kept alive so that reuse can be counted.
class LoopbackHttp {
 public:
  using Handler = std::function<std::string(const SeenRequest&)>;

  explicit LoopbackHttp(Handler handler, std::string unix_path = "") : handler_(std::move(handler)) {
    if (unix_path.empty()) {
      listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
      int yes = 1;
      ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
      socklen_t length = sizeof address;
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
      port_ = ntohs(address.sin_port);
    } else {
      listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      std::strncpy(address.sun_path, unix_path.c_str(), sizeof address.sun_path - 1);
      ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    }
    ::listen(listen_fd_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~LoopbackHttp() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  LoopbackHttp(const LoopbackHttp&) = delete;
  LoopbackHttp& operator=(const LoopbackHttp&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  int connections() const { return connections_; }
  std::vector<SeenRequest> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  // Reads until `buffer` holds `count` bytes past `from`; false when the peer closed.
  bool fill(int fd, std::string& buffer, std::size_t needed) {
    while (buffer.size() < needed) {
      if (!read_some(fd, buffer)) return false;
    }
    return true;
  }
  bool read_some(int fd, std::string& buffer) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char chunk[65536];
      ssize_t got = ::read(fd, chunk, sizeof chunk);
      if (got <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(got));
      return true;
    }
    return false;
  }
  bool read_line(int fd, std::string& buffer, std::string& line) {
    std::size_t end;
    while ((end = buffer.find("\r\n")) == std::string::npos) {
      if (!read_some(fd, buffer)) return false;
    }
    line = buffer.substr(0, end);
    buffer.erase(0, end + 2);
    return true;
  }

  void handle_connection(int fd) {
    std::string buffer;
    while (!stop_) {
      SeenRequest request;
      std::string line;
      if (!read_line(fd, buffer, line)) break;
      auto parts = util::split(line, ' ');
      if (parts.size() < 2) break;
      request.method = parts[0];
      request.target = parts[1];
      while (read_line(fd, buffer, line) && !line.empty()) {
        auto colon = line.find(':');
        request.headers.emplace_back(line.substr(0, colon), std::string(util::trim(line.substr(colon + 1))));
      }
      if (util::iequals(request.header("Transfer-Encoding"), "chunked")) {
        request.chunked = true;
        while (read_line(fd, buffer, line)) {
          std::size_t size = std::stoul(line, nullptr, 16);
          if (!fill(fd, buffer, size + 2)) return;
          request.body += buffer.substr(0, size);
          buffer.erase(0, size + 2);
          if (size == 0) break;
        }
      } else if (!request.header("Content-Length").empty()) {
        std::size_t size = std::stoul(request.header("Content-Length"));
        if (!fill(fd, buffer, size)) break;
        request.body = buffer.substr(0, size);
        buffer.erase(0, size);
      }
      std::string response = handler_(request);
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }
      if (response.empty()) break;  // the handler asks to drop the connection
      std::size_t sent = 0;
      while (sent < response.size()) {
        ssize_t wrote = ::send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (wrote <= 0) return;
        sent += static_cast<std::size_t>(wrote);
      }
    }
  }

  void serve() {
    std::vector<std::thread> workers;
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      workers.emplace_back([this, fd] {
        handle_connection(fd);
        ::close(fd);
      });
    }
    for (auto& worker : workers) worker.join();
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mutex_;
  std::vector<SeenRequest> requests_;
  std::thread thread_;
};

// A complete response with a body and extra header lines ("Name: value\r\n" each).
inline std::string http_response(int status, const std::string& body, const std::string& extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra_headers + "\r\n" + body;
}

}  // namespace gpurun::test
