#include "cloud/exec/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <set>
#include <string_view>

#include "util/strings.hpp"

#include <fmt/format.h>

namespace gpurun::cloud {

namespace {

// Binds every entry of host directory `dir` at `at` in the sandbox (into a tmpfs laid over it)
// with `flag`; symbolic links are recreated, names in `skip` left out.
void bind_children(const std::string& dir, const std::string& at, const std::string& flag, std::vector<std::string>& out,
                   const std::set<std::string>& skip = {}) {
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) return;
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(handle)) {
    const std::string name = entry->d_name;
    if (name != "." && name != ".." && skip.count(name) == 0) names.push_back(name);
  }
  ::closedir(handle);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = (dir == "/" ? "" : dir) + "/" + name;
    const std::string inside = (at == "/" ? "" : at) + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(path, ec);
      if (!ec) out.insert(out.end(), {"--symlink", target.string(), inside});
    } else {
      out.insert(out.end(), {flag, path, inside});
    }
  }
}

// A path as the sandbox sees it when host directory `root` is its `/`: symbolic links followed
// inside `root` (`..` stops at `/`). `exists` is how many leading parts exist there.
struct ViewPath {
  std::vector<std::string> parts;
  std::size_t exists = 0;
};

ViewPath resolve_in_view(const std::string& root, const std::string& path) {
  ViewPath view;
  std::deque<std::string> todo;
  for (auto& part : util::split(path, '/')) todo.push_back(part);
  bool missing = false;
  int links = 0;
  while (!todo.empty()) {
    const std::string part = todo.front();
    todo.pop_front();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!view.parts.empty()) view.parts.pop_back();
      view.exists = std::min(view.exists, view.parts.size());
      continue;
    }
    if (missing) {
      view.parts.push_back(part);
      continue;
    }
    const std::string candidate = root + "/" + util::join(view.parts, "/") + (view.parts.empty() ? "" : "/") + part;
    struct stat st {};
    if (::lstat(candidate.c_str(), &st) != 0) {
      missing = true;
      view.parts.push_back(part);
      continue;
    }
    std::error_code ec;
    const auto target = S_ISLNK(st.st_mode) && ++links <= 40 ? std::filesystem::read_symlink(candidate, ec) : std::filesystem::path();
    if (S_ISLNK(st.st_mode) && !ec && !target.empty()) {
      if (target.is_absolute()) view.parts.clear();
      auto target_parts = util::split(target.string(), '/');
      todo.insert(todo.begin(), target_parts.begin(), target_parts.end());
    } else {
      view.parts.push_back(part);
    }
    view.exists = view.parts.size();
  }
  return view;
}

std::string view_string(const std::vector<std::string>& parts, std::size_t count) {
  return "/" + util::join(std::vector<std::string>(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(count)), "/");
}

// One mount of a host path into the sandbox: `flag` is --bind, --ro-bind or --dev-bind.
struct Mount {
  std::string flag;
  std::string host;
  std::string inside;
};

// Appends `mounts` over the view of host directory `root` (its entries already bound at `/` with
// `child_flag`). A mount point missing in the view is never made in `root`: its deepest existing
// directory is rebuilt as a tmpfs holding binds of its entries, and the mount point made there.
void mount_over_view(const std::string& root, const std::string& child_flag, const std::vector<Mount>& mounts,
                     std::vector<std::string>& out) {
  std::set<std::string> rebuilt;  // sorted: a parent comes before what it holds
  std::vector<Mount> placed;
  for (const auto& mount : mounts) {
    const ViewPath view = resolve_in_view(root, mount.inside);
    placed.push_back(Mount{mount.flag, mount.host, view_string(view.parts, view.parts.size())});
    if (view.exists == view.parts.size() || view.exists == 0) continue;  // there, or made in the sandbox's own `/`
    const std::string dir = view_string(view.parts, view.exists);
    struct stat st {};
    if (::stat((root + dir).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) rebuilt.insert(dir);
  }
  for (const auto& dir : rebuilt) {
    out.insert(out.end(), {"--tmpfs", dir});
    bind_children(root + dir, dir, child_flag, out);
  }
  for (const auto& mount : placed) out.insert(out.end(), {mount.flag, mount.host, mount.inside});
}

}  // namespace


std::string host_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (const auto& dir : util::split(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin", ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

std::vector<std::string> driver_libraries() {
  std::vector<std::string> out;
  const std::string ldconfig = ::access("/sbin/ldconfig", X_OK) == 0 ? "/sbin/ldconfig" : host_program("ldconfig");
  FILE* pipe = ::popen((util::shell_quote(ldconfig) + " -p 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return out;
  char line[4096];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    std::string text(line);
    const auto arrow = text.find("=> ");
    if (arrow == std::string::npos) continue;
    std::string path(util::trim(text.substr(arrow + 3)));
    const std::string name = std::filesystem::path(path).filename().string();
    if ((name.rfind("libcuda.so", 0) == 0 || name.rfind("libnvidia-", 0) == 0) &&
        std::find(out.begin(), out.end(), path) == out.end() && text.find("x86-64") != std::string::npos) {
      out.push_back(path);
    }
  }
  ::pclose(pipe);
  return out;
}

std::vector<std::string> host_sandbox_argv(const std::vector<std::pair<std::string, std::string>>& binds,
                                           const std::string& cwd, const std::vector<std::string>& argv) {
  std::vector<std::string> out = {host_program("bwrap"), "--die-with-parent"};
  bind_children("/", "/", "--dev-bind", out);
  std::vector<Mount> mounts;
  for (const auto& [host, inside] : binds) mounts.push_back(Mount{"--bind", host, inside});
  mount_over_view("", "--dev-bind", mounts, out);
  if (!cwd.empty()) out.insert(out.end(), {"--chdir", cwd});
  out.emplace_back("--");
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::vector<std::string> image_sandbox_argv(const ImageSandbox& sandbox, const std::vector<std::string>& argv) {
  // `/` is bubblewrap's own tmpfs holding read-only binds of the rootfs's entries, so mount
  // points are made per run and never in the shared unpacked image.
  std::vector<std::string> out = {host_program("bwrap"), "--die-with-parent"};
  bind_children(sandbox.rootfs, "/", "--ro-bind", out, {"proc", "dev", "tmp"});
  out.insert(out.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  std::vector<Mount> mounts;
  if (sandbox.gpus) {
    std::error_code ec;
    std::vector<std::string> devices;
    for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("nvidia", 0) == 0 && !entry.is_directory(ec)) devices.push_back(entry.path().string());
    }
    std::sort(devices.begin(), devices.end());
    for (const auto& d : devices) out.insert(out.end(), {"--dev-bind", d, d});
    for (const auto& lib : driver_libraries()) {
      mounts.push_back(Mount{"--ro-bind", lib, std::string(image_driver_dir) + "/" + std::filesystem::path(lib).filename().string()});
    }
  }
  for (const auto& [host, inside] : sandbox.binds) {
    // /tmp, /dev and /proc are the sandbox's own: their mount points are made there.
    const auto top = util::split(inside, '/');
    const bool own = top.size() > 1 && (top[1] == "tmp" || top[1] == "dev" || top[1] == "proc");
    if (own) {
      out.insert(out.end(), {"--bind", host, inside});
    } else {
      mounts.push_back(Mount{"--bind", host, inside});
    }
  }
  mount_over_view(sandbox.rootfs, "--ro-bind", mounts, out);
  out.insert(out.end(), {"--remount-ro", "/"});
  if (!sandbox.workdir.empty()) out.insert(out.end(), {"--chdir", sandbox.workdir});
  out.emplace_back("--");
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::vector<std::string> masked_values(const std::vector<std::string>& job_environ) {
  const std::string prefix = std::string(mask_env_variable) + "=";
  std::set<std::string> names;
  for (const auto& entry : job_environ) {
    if (entry.rfind(prefix, 0) != 0) continue;
    for (auto& name : util::split(entry.substr(prefix.size()), ',')) {
      if (!name.empty()) names.insert(name);
    }
  }
  std::vector<std::string> values;
  for (const auto& entry : job_environ) {
    const auto eq = entry.find('=');
    if (eq != std::string::npos && eq + 1 < entry.size() && names.count(entry.substr(0, eq)) != 0) {
      values.push_back(entry.substr(eq + 1));
    }
  }
  return values;
}

std::vector<std::string> image_environment(const std::vector<std::pair<std::string, std::string>>& image_env,
                                           const std::vector<std::string>& job_environ, bool gpus) {
  std::vector<std::pair<std::string, std::string>> vars = image_env;
  auto set = [&vars](const std::string& key, const std::string& value) {
    for (auto& [k, v] : vars) {
      if (k == key) {
        v = value;
        return;
      }
    }
    vars.emplace_back(key, value);
  };
  std::set<std::string> pass;
  for (const auto& entry : job_environ) {
    if (entry.rfind(std::string(pass_env_variable) + "=", 0) == 0) {
      for (auto& name : util::split(entry.substr(std::string_view(pass_env_variable).size() + 1), ',')) {
        if (!name.empty()) pass.insert(name);
      }
    }
  }
  auto starts = [](const std::string& text, std::string_view prefix) { return text.rfind(prefix, 0) == 0; };
  for (const auto& entry : job_environ) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    const std::string key = entry.substr(0, eq);
    const bool system = starts(key, "SLURM_") || starts(key, "CUDA_") || starts(key, "NVIDIA_") ||
                        (starts(key, "GPURUN_") && !starts(key, "GPURUN_REGISTRY_") && key != pass_env_variable && key != mask_env_variable);
    if (system || pass.count(key) != 0) set(key, entry.substr(eq + 1));
  }
  return environ_entries(std::move(vars), gpus);
}

std::vector<std::string> environ_entries(std::vector<std::pair<std::string, std::string>> vars, bool driver_libraries) {
  if (driver_libraries) {
    auto it = std::find_if(vars.begin(), vars.end(), [](const auto& kv) { return kv.first == "LD_LIBRARY_PATH"; });
    const std::string dir(image_driver_dir);
    if (it == vars.end()) {
      vars.emplace_back("LD_LIBRARY_PATH", dir);
    } else {
      it->second = it->second.empty() ? dir : dir + ":" + it->second;
    }
  }
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

util::Result<SandboxStatus> SandboxStatus::attach(std::vector<std::string>& bwrap_argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return util::make_error(util::ExitCode::backend, fmt::format("cannot make a pipe for bubblewrap: {}", std::strerror(errno)));
  }
  ::fcntl(fds[1], F_SETFD, 0);  // bubblewrap inherits the write end
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  bwrap_argv.insert(bwrap_argv.begin() + 1, {"--json-status-fd", std::to_string(fds[1])});
  return SandboxStatus(fds[0], fds[1]);
}

SandboxStatus::SandboxStatus(SandboxStatus&& other) noexcept : read_fd_(other.read_fd_), write_fd_(other.write_fd_) {
  other.read_fd_ = -1;
  other.write_fd_ = -1;
}

SandboxStatus::~SandboxStatus() {
  started();
  if (read_fd_ >= 0) ::close(read_fd_);
}

void SandboxStatus::started() {
  if (write_fd_ >= 0) ::close(write_fd_);
  write_fd_ = -1;
}

bool SandboxStatus::workload_ran() {
  started();
  std::string text;
  char buffer[4096];
  while (read_fd_ >= 0) {
    const ssize_t got = ::read(read_fd_, buffer, sizeof buffer);
    if (got > 0) {
      text.append(buffer, static_cast<std::size_t>(got));
    } else if (got < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  return text.find("\"exit-code\"") != std::string::npos;
}

SandboxFailure sandbox_failure(const std::string& stderr_tail) {
  std::string message;
  for (const auto& line : util::split(stderr_tail, '\n')) {
    if (line.rfind("bwrap: ", 0) == 0) message = line;
  }
  if (message.empty()) message = "bwrap failed before the command started (no message)";
  if (message.find("bwrap: execvp ") == 0) {
    const bool missing = message.find("No such file or directory") != std::string::npos;
    return SandboxFailure{missing ? 127 : 126, "could not start: " + message};
  }
  return SandboxFailure{125, "failed to set up its sandbox: " + message};
}

}  // namespace gpurun::cloud
