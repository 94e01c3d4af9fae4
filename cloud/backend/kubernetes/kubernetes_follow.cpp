#include "cloud/backend/kubernetes/kubernetes_follow.hpp"

#include <chrono>

#include "cloud/backend/kubernetes/kubernetes_objects.hpp"
#include "cloud/net/http.hpp"

namespace gpurun::cloud {

namespace {

// The pause before a dropped (or refused) stream is opened again.
constexpr auto reconnect_pause = std::chrono::milliseconds(1000);

// The whole second of the time that starts the API log line `line`, if it has one.
std::optional<std::int64_t> line_second(std::string_view line) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto ms = parse_rfc3339_ms(line.substr(0, space));
  if (!ms) return std::nullopt;
  return *ms - ((*ms % 1000) + 1000) % 1000;
}

}  // namespace

PodLogFollow::PodLogFollow(KubernetesApi api, std::string log_path, std::optional<std::int64_t> since_ms)
    : api_(std::move(api)), log_path_(std::move(log_path)), since_ms_(since_ms) {
  thread_ = std::thread([this] { follow(); });
}

PodLogFollow::~PodLogFollow() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::string PodLogFollow::take_lines() {
  std::lock_guard lock(mutex_);
  std::string lines = std::move(lines_);
  lines_.clear();
  return lines;
}

int PodLogFollow::connections() const {
  std::lock_guard lock(mutex_);
  return connections_;
}

bool PodLogFollow::stopping() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

std::string PodLogFollow::since_query() const {
  std::lock_guard lock(mutex_);
  return since_ms_ ? "&sinceTime=" + http::url_encode(format_rfc3339(*since_ms_)) : std::string();
}

void PodLogFollow::follow() {
  while (!stopping()) {
    {
      std::lock_guard lock(mutex_);
      ++connections_;
    }
    std::string partial;  // an unterminated line of this connection; a resumed one repeats it
    auto on_body = [&](const char* data, std::size_t size) {
      partial.append(data, size);
      const auto end = partial.rfind('\n');
      if (end == std::string::npos) return !stopping();
      std::lock_guard lock(mutex_);
      const std::string_view complete(partial.data(), end + 1);
      const auto previous = end == 0 ? std::string_view::npos : complete.rfind('\n', end - 1);
      const auto last = complete.substr(previous == std::string_view::npos ? 0 : previous + 1);
      if (auto second = line_second(last); second && (!since_ms_ || *second > *since_ms_)) since_ms_ = second;
      lines_.append(complete);
      partial.erase(0, end + 1);
      return !stop_;
    };
    (void)api_.stream(log_path_ + "?follow=true&timestamps=true" + since_query(), on_body, [this] { return !stopping(); });
    // The stream ended: the container ended, the connection dropped, or it was refused (the
    // container is not up yet). The caller ends this follow once the pod ended.
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, reconnect_pause, [this] { return stop_; });
  }
}

}  // namespace gpurun::cloud
