#include "cloud/monitor/monitor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "cloud/backend/registry.hpp"
#include "cloud/exec/process.hpp"
#include "cloud/state/state.hpp"

namespace gpurun::cloud {

namespace {

using util::ExitCode;
using namespace std::chrono_literals;

// Longest hand-over line accepted (secret values included).
constexpr std::size_t max_handover_bytes = 4 * 1024 * 1024;

util::Error monitor_error(const std::string& what) {
  return util::make_error(ExitCode::backend, fmt::format("the run monitor: {}", what));
}

nlohmann::json to_json(const MonitorHandover& handover) {
  nlohmann::json secrets = nlohmann::json::array();
  for (const auto& [name, values] : handover.secrets) secrets.push_back({name, values});
  return {{"run_id", handover.run_id}, {"config", handover.config_path}, {"secrets", secrets}};
}

std::optional<MonitorHandover> handover_from_json(const std::string& line) {
  try {
    const auto json = nlohmann::json::parse(line);
    MonitorHandover handover;
    handover.run_id = json.at("run_id").get<std::string>();
    handover.config_path = json.at("config").get<std::string>();
    for (const auto& secret : json.at("secrets")) {
      handover.secrets.emplace_back(secret.at(0).get<std::string>(),
                                    secret.at(1).get<std::vector<std::pair<std::string, std::string>>>());
    }
    return handover;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

sockaddr_un socket_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  return address;
}

// A connected socket to the monitor; -1 when none listens.
int connect_monitor(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const sockaddr_un address = socket_address(path);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {  // NOLINT
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t done = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(done));
  }
  return true;
}

// Reads one '\n'-terminated line (without it) within `timeout`; nullopt on EOF, error or timeout.
std::optional<std::string> read_line(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  while (line.size() < max_handover_bytes) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    line.append(buffer, static_cast<std::size_t>(got));
    if (const auto newline = line.find('\n'); newline != std::string::npos) return line.substr(0, newline);
  }
  return std::nullopt;
}

// Starts `gpurun_binary monitor` detached from this process and its session; it logs to
// <state_dir>/monitor.log.
util::Result<void> start_monitor(const std::string& state_dir, const std::string& config_path,
                                 const std::string& gpurun_binary) {
  std::vector<std::string> args = {gpurun_binary};
  if (!config_path.empty()) args.insert(args.end(), {"--config", config_path});
  args.emplace_back("monitor");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto started = start_detached(state_dir + "/monitor.log", [&] {
    ::setenv("GPURUN_STATE_DIR", state_dir.c_str(), 1);
    ::execv(gpurun_binary.c_str(), argv.data());
    return 127;
  });
  if (!started) return monitor_error("cannot start it: " + started.error().message);
  return {};
}

// The monitor's listening socket, created 0600 (only this user hands runs over).
class Listener {
 public:
  explicit Listener(std::string path) : path_(std::move(path)) {}
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() { close(); }

  util::Result<void> open() {
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return monitor_error(fmt::format("cannot create {}: {}", path_, std::strerror(errno)));
    const sockaddr_un address = socket_address(path_);
    const mode_t old_mask = ::umask(077);
    const int bound = ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address));  // NOLINT
    ::umask(old_mask);
    if (bound != 0 || ::listen(fd_, 64) != 0) {
      const int error_number = errno;
      close();
      return monitor_error(fmt::format("cannot listen on {}: {}", path_, std::strerror(error_number)));
    }
    return {};
  }

  // Stops accepting: later launchers start (or wait for) another monitor.
  void close() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }

  // Takes every hand-over waiting to be accepted (none when closed).
  void accept_all(std::map<std::string, MonitorHandover>& handovers) {
    while (fd_ >= 0) {
      const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      if (auto line = read_line(client, 2s)) {
        if (auto handover = handover_from_json(*line)) {
          (void)write_all(client, "ok\n");
          handovers[handover->run_id] = std::move(*handover);
        }
      }
      ::close(client);
    }
  }

  // Waits up to `timeout` for a launcher to connect.
  void wait(std::chrono::milliseconds timeout) const {
    if (fd_ < 0) {
      std::this_thread::sleep_for(timeout);
      return;
    }
    pollfd p{fd_, POLLIN, 0};
    (void)::poll(&p, 1, static_cast<int>(timeout.count()));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// The state's active runs whose backend keeps them elsewhere, by config file and cloud.
using Groups = std::map<std::pair<std::string, std::string>, std::vector<Run>>;

class Monitor {
 public:
  Monitor(StateStore& store, std::optional<std::string> default_config)
      : store_(store), default_config_(std::move(default_config)) {}

  // Refreshes each group of active remote runs once; returns how many active remote runs it saw.
  std::size_t pass(const std::map<std::string, MonitorHandover>& handovers) {
    auto runs = store_.list_runs(false);
    if (!runs) {
      fmt::print(stderr, "gpurun monitor: {}\n", runs.error().message);
      return 1;  // keep going: the state may be busy
    }
    Groups groups;
    for (auto& run : *runs) {
      auto it = handovers.find(run.id);
      const std::string config = it != handovers.end() ? it->second.config_path : default_config_.value_or("");
      groups[{config, run.cloud}].push_back(std::move(run));
    }
    std::size_t remote = 0;
    for (auto& [key, group] : groups) remote += refresh_group(key.first, group, handovers);
    return remote;
  }

 private:
  std::size_t refresh_group(const std::string& config_path, const std::vector<Run>& runs,
                            const std::map<std::string, MonitorHandover>& handovers) {
    // Runs it cannot refresh (no config, no cloud) do not keep the monitor going.
    const Config* config = config_for(config_path);
    if (config == nullptr) return 0;
    auto backend = backend_for(runs.front(), *config);
    if (!backend) {
      fmt::print(stderr, "gpurun monitor: {}\n", backend.error().message);
      return 0;
    }
    if (!(*backend)->remote()) return 0;
    (*backend)->set_secret_lookup([&handovers](const Run& run) -> std::optional<SecretValues> {
      auto it = handovers.find(run.id);
      if (it == handovers.end()) return std::nullopt;
      return it->second.secrets;
    });
    auto fresh = (*backend)->refresh_many(store_, runs);
    if (!fresh) fmt::print(stderr, "gpurun monitor: cloud {}: {}\n", runs.front().cloud, fresh.error().message);
    return runs.size();
  }

  // The config at `path` (empty: the default one), read once per pass.
  const Config* config_for(const std::string& path) {
    auto it = configs_.find(path);
    if (it != configs_.end()) return &it->second;
    std::vector<util::Diagnostic> diagnostics;
    std::optional<std::string> explicit_path;
    if (!path.empty()) explicit_path = path;
    auto config = load_config(explicit_path, diagnostics);
    if (!config) {
      fmt::print(stderr, "gpurun monitor: {}\n", config.error().message);
      return nullptr;
    }
    return &configs_.emplace(path, std::move(*config)).first->second;
  }

 public:
  void forget_configs() { configs_.clear(); }

 private:
  StateStore& store_;
  std::optional<std::string> default_config_;
  std::map<std::string, Config> configs_;
};

}  // namespace

std::string monitor_socket_path(const std::string& state_dir) { return state_dir + "/monitor.sock"; }
std::string monitor_lock_path(const std::string& state_dir) { return state_dir + "/monitor.lock"; }

util::Result<void> hand_over_to_monitor(const std::string& state_dir, const MonitorHandover& handover,
                                        const std::string& gpurun_binary) {
  const std::string line = to_json(handover).dump() + "\n";
  const std::string socket = monitor_socket_path(state_dir);
  // A monitor that is exiting refuses connections until it is gone: start another now and then.
  auto next_start = std::chrono::steady_clock::now();
  const auto deadline = next_start + 10s;
  for (auto delay = 5ms; std::chrono::steady_clock::now() < deadline; delay = std::min(delay * 2, 200ms)) {
    const int fd = connect_monitor(socket);
    if (fd >= 0) {
      const bool sent = write_all(fd, line);
      const auto reply = sent ? read_line(fd, 5s) : std::nullopt;
      ::close(fd);
      if (reply && *reply == "ok") return {};
    } else if (std::chrono::steady_clock::now() >= next_start) {
      if (auto start = start_monitor(state_dir, handover.config_path, gpurun_binary); !start) return start.error();
      next_start = std::chrono::steady_clock::now() + 1s;
    }
    std::this_thread::sleep_for(delay);
  }
  return monitor_error(fmt::format("it did not take run {} within 10s; see {}/monitor.log", handover.run_id, state_dir));
}

int run_monitor(const std::string& state_dir, const std::optional<std::string>& default_config,
                const MonitorOptions& options) {
  const int lock_fd = ::open(monitor_lock_path(state_dir).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) return 0;  // another monitor runs
  ::signal(SIGPIPE, SIG_IGN);
  auto store = StateStore::open(state_dir);
  if (!store) {
    fmt::print(stderr, "gpurun monitor: {}\n", store.error().message);
    return 1;
  }
  Listener listener(monitor_socket_path(state_dir));
  if (auto opened = listener.open(); !opened) {
    fmt::print(stderr, "gpurun monitor: {}\n", opened.error().message);
    return 1;
  }
  std::map<std::string, MonitorHandover> handovers;
  Monitor monitor(*store, default_config);
  auto idle_since = std::chrono::steady_clock::now();
  while (true) {
    listener.accept_all(handovers);
    monitor.forget_configs();
    const std::size_t active = monitor.pass(handovers);
    const auto now = std::chrono::steady_clock::now();
    if (active > 0) idle_since = now;
    if (active == 0 && now - idle_since >= options.idle_exit) {
      // Stop accepting first, then look once more: a run handed over meanwhile keeps it going.
      listener.accept_all(handovers);
      listener.close();
      if (monitor.pass(handovers) == 0) break;
      if (auto reopened = listener.open(); !reopened) fmt::print(stderr, "gpurun monitor: {}\n", reopened.error().message);
      idle_since = std::chrono::steady_clock::now();
    }
    // Forget hand-overs of runs that ended.
    for (auto it = handovers.begin(); it != handovers.end();) {
      auto run = store->get_run(it->first);
      it = run && is_terminal(run->status) ? handovers.erase(it) : std::next(it);
    }
    listener.wait(options.interval);
  }
  ::close(lock_fd);
  return 0;
}

}  // namespace gpurun::cloud
