#pragma once

// A running pod's log followed live over the pod log API's stream (`follow=true`) on a thread of
// its own, with its own HTTP client; a dropped stream is resumed with sinceTime.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cloud/backend/kubernetes/kubernetes_api.hpp"

namespace gpurun::cloud {

class PodLogFollow {
 public:
  // Follows `log_path` ("/api/v1/namespaces/ml/pods/p/log") with timestamps=true, from
  // `since_ms` (the API's sinceTime; the whole log when nullopt) on.
  PodLogFollow(KubernetesApi api, std::string log_path, std::optional<std::int64_t> since_ms);
  // Stops the stream and joins the thread (within about a second).
  ~PodLogFollow();
  PodLogFollow(const PodLogFollow&) = delete;
  PodLogFollow& operator=(const PodLogFollow&) = delete;

  // Moves out the complete lines received so far (the API's text, for PodLogRecords::take; a
  // resumed stream repeats the lines of its sinceTime second, which PodLogRecords skips).
  std::string take_lines();
  // How many times the stream was opened (1 while the first is up).
  int connections() const;

 private:
  void follow();
  bool stopping() const;
  // The sinceTime query for the next connection ("" for the whole log).
  std::string since_query() const;

  KubernetesApi api_;
  std::string log_path_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::string lines_;                      // complete lines not taken yet
  std::optional<std::int64_t> since_ms_;   // second of the last complete line
  int connections_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace gpurun::cloud
