#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "cloud/net/http.hpp"
#include "tests/unit/loopback_http.hpp"
#include "tests/unit/temp_dir.hpp"

namespace gpurun::test {

// Debian's docker-registry on 127.0.0.1 with its own config and storage, stopped at the end.
class LoopbackRegistry {
 public:
  // `htpasswd_line` (bcrypt, from `htpasswd -Bbn`) turns on basic auth.
  explicit LoopbackRegistry(const std::string& htpasswd_line = "") {
    port_ = free_port();
    const std::string config = dir_.path() + "/config.yml";
    std::ofstream out(config);
    out << "version: 0.1\nstorage:\n  filesystem: {rootdirectory: " << dir_.path() << "/storage}\n"
        << "  delete: {enabled: true}\nhttp:\n  addr: 127.0.0.1:" << port_ << "\n  secret: gpurun-test\n"
        << "log:\n  level: error\n";
    if (!htpasswd_line.empty()) {
      std::ofstream(dir_.path() + "/htpasswd") << htpasswd_line;
      out << "auth:\n  htpasswd: {realm: gpurun-test, path: " << dir_.path() << "/htpasswd}\n";
    }
    out.close();
    const std::string log = dir_.path() + "/registry.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execlp("docker-registry", "docker-registry", "serve", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    cloud::http::Client client;
    for (int i = 0; i < 100; ++i) {
      cloud::http::Request probe;
      probe.url = "http://" + address() + "/v2/";
      auto response = client.perform(probe);
      if (response.ok() && (response->status == 200 || response->status == 401)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("docker-registry did not start on port " << port_);
  }
  ~LoopbackRegistry() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  LoopbackRegistry(const LoopbackRegistry&) = delete;
  LoopbackRegistry& operator=(const LoopbackRegistry&) = delete;
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace gpurun::test
