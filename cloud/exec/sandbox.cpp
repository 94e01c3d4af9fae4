#include "cloud/exec/sandbox.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string_view>

#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

// Binds every entry of host directory `dir` at the same place (into a tmpfs laid over it).
void bind_children(const std::string& dir, std::vector<std::string>& out) {
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) return;
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(handle)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(handle);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = (dir == "/" ? "" : dir) + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(path, ec);
      if (!ec) out.insert(out.end(), {"--symlink", target.string(), path});
    } else {
      out.insert(out.end(), {"--dev-bind", path, path});
    }
  }
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
  bind_children("/", out);
  std::vector<std::string> rebuilt = {"/"};
  for (const auto& [host, inside] : binds) {
    std::filesystem::path parent = std::filesystem::path(inside);
    std::error_code ec;
    if (std::filesystem::exists(parent, ec)) continue;
    while (parent.has_parent_path() && parent != parent.root_path() && !std::filesystem::exists(parent, ec)) {
      parent = parent.parent_path();
    }
    const std::string dir = parent.string();
    if (std::find(rebuilt.begin(), rebuilt.end(), dir) != rebuilt.end()) continue;
    rebuilt.push_back(dir);
    out.insert(out.end(), {"--tmpfs", dir});
    bind_children(dir, out);
  }
  for (const auto& [host, inside] : binds) out.insert(out.end(), {"--bind", host, inside});
  if (!cwd.empty()) out.insert(out.end(), {"--chdir", cwd});
  out.emplace_back("--");
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}


std::vector<std::string> image_sandbox_argv(const ImageSandbox& sandbox, const std::vector<std::string>& argv) {
  std::vector<std::string> out = {host_program("bwrap"), "--die-with-parent", "--bind", sandbox.rootfs, "/",
                                  "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"};
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
      out.insert(out.end(), {"--ro-bind", lib, std::string(image_driver_dir) + "/" + std::filesystem::path(lib).filename().string()});
    }
  }
  for (const auto& [host, inside] : sandbox.binds) out.insert(out.end(), {"--bind", host, inside});
  out.insert(out.end(), {"--remount-ro", "/"});
  if (!sandbox.workdir.empty()) out.insert(out.end(), {"--chdir", sandbox.workdir});
  out.emplace_back("--");
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
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
                        (starts(key, "GPURUN_") && !starts(key, "GPURUN_REGISTRY_") && key != pass_env_variable);
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

}  // namespace gpurun::cloud
