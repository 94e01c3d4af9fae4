#include "cloud/ssh/remote_gpurun.hpp"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "util/sha256.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

util::Error backend_error(std::string message) { return util::make_error(util::ExitCode::backend, std::move(message)); }

// The hex sha256 of the file at `path`.
util::Result<std::string> file_sha256(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return backend_error(fmt::format("cannot read {} to copy it to the remote host: {}", path, std::strerror(errno)));
  util::Sha256 hash;
  char buffer[1 << 16];
  ssize_t got = 0;
  while ((got = ::read(fd, buffer, sizeof buffer)) > 0) hash.update(buffer, static_cast<std::size_t>(got));
  const int error = errno;
  ::close(fd);
  if (got < 0) return backend_error(fmt::format("cannot read {}: {}", path, std::strerror(error)));
  return hash.finish().substr(7);
}

// What the remote check printed: `uname -sm` (when asked), whether the path is executable, and
// the status and output of its `--version`.
struct Probe {
  std::string uname;
  bool present = false;
  int version_status = 0;
  std::string version;
};

// A script that prints "uname=..." (when `with_uname`), then "rc=absent" or "rc=<status>" and
// the `--version` output of $p (with its own path taken off the loader's messages).
std::string probe_body(const std::string& path_word, bool with_uname) {
  std::string body = "p=" + path_word + "\n";
  if (with_uname) body += "printf 'uname=%s\\n' \"$(uname -sm)\"\n";
  body +=
      "if [ -x \"$p\" ] && [ -f \"$p\" ]; then v=$(\"$p\" --version 2>&1); rc=$?; v=${v#\"$p: \"}\n"
      "  printf 'rc=%s\\n%s\\n' \"$rc\" \"$v\"\nelse echo rc=absent; fi\n";
  return body;
}

util::Result<Probe> parse_probe(const RemoteResult& result, bool with_uname) {
  Probe probe;
  std::string_view rest = result.out;
  auto next_line = [&rest] {
    const auto end = rest.find('\n');
    std::string line(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    return line;
  };
  if (with_uname) {
    const std::string line = next_line();
    if (line.rfind("uname=", 0) != 0) return backend_error("unexpected answer to `uname -sm`: " + line);
    probe.uname = line.substr(6);
  }
  const std::string status = next_line();
  if (status.rfind("rc=", 0) != 0) return backend_error("unexpected answer to `gpurun --version`: " + status);
  probe.present = status != "rc=absent";
  if (probe.present) probe.version_status = std::atoi(status.c_str() + 3);
  probe.version = std::string(util::trim(rest));
  return probe;
}

util::Result<Probe> probe(const SshClient& client, const std::string& path_word, bool with_uname) {
  auto result = client.run(RemoteScript{probe_body(path_word, with_uname), {}, std::nullopt});
  if (!result) return result.error();
  if (result->exit_code != 0) {
    return backend_error(fmt::format("checking gpurun on {} failed (exit {}): {}", describe_ssh_host(client.settings()),
                                     result->exit_code, util::trim(result->err)));
  }
  return parse_probe(*result, with_uname);
}

// A remote gpurun whose `--version` failed.
util::Error does_not_run(const SshClient& client, const RemoteGpurunOptions& options, const std::string& path, const Probe& p) {
  return backend_error(fmt::format(
      "gpurun {} does not run on {} (exit {}: {}); install what it needs there (e.g. the missing library) or set `{}` to "
      "a gpurun that runs on that host",
      path, describe_ssh_host(client.settings()), p.version_status, p.version, options.setting));
}

util::Result<RemoteGpurun> check_configured(const SshClient& client, const RemoteGpurunOptions& options) {
  auto p = probe(client, remote_path_word(options.configured_path), false);
  if (!p) return p.error();
  if (!p->present) {
    return backend_error(fmt::format("`{}` is {} but there is no executable file there on {}; install gpurun there or fix `{}`",
                                     options.setting, options.configured_path, describe_ssh_host(client.settings()),
                                     options.setting));
  }
  if (p->version_status != 0) return does_not_run(client, options, options.configured_path, *p);
  return RemoteGpurun{options.configured_path, p->version, false, 0};
}

// Copies `local` to `path` under a temporary name, checks its `--version` there, then renames it.
util::Result<RemoteGpurun> upload(const SshClient& client, const RemoteGpurunOptions& options, const std::string& local,
                                  const std::string& path) {
  const std::string temporary = fmt::format("{}.upload-{}", path, ::getpid());
  const int fd = ::open(local.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return backend_error(fmt::format("cannot read {} to copy it to the remote host: {}", local, std::strerror(errno)));
  auto sent = client.write_file(temporary, fd);
  ::close(fd);
  if (!sent) return sent.error();
  const std::string body = fmt::format(
      "t={}\np={}\nchmod 755 \"$t\" || exit 1\nv=$(\"$t\" --version 2>&1); rc=$?; v=${{v#\"$t: \"}}\n"
      "if [ \"$rc\" = 0 ]; then mv -f \"$t\" \"$p\" || exit 1; else rm -f \"$t\"; fi\nprintf 'rc=%s\\n%s\\n' \"$rc\" \"$v\"\n",
      remote_path_word(temporary), remote_path_word(path));
  auto result = client.run(RemoteScript{body, {}, std::nullopt});
  if (!result) return result.error();
  if (result->exit_code != 0) {
    return backend_error(fmt::format("cannot install gpurun at {} on {}: {}; check the directory's permissions and free space",
                                     path, describe_ssh_host(client.settings()), util::trim(result->err)));
  }
  auto p = parse_probe(*result, false);
  if (!p) return p.error();
  if (p->version_status != 0) return does_not_run(client, options, path, *p);
  return RemoteGpurun{path, p->version, true, *sent};
}

}  // namespace

std::string local_uname() {
  struct utsname names {};
  if (::uname(&names) != 0) return "unknown";
  return fmt::format("{} {}", names.sysname, names.machine);
}

util::Result<RemoteGpurun> ensure_remote_gpurun(const SshClient& client, const RemoteGpurunOptions& given) {
  RemoteGpurunOptions options = given;
  const SshSettings& settings = client.settings();
  if (options.configured_path.empty() && settings.gpurun_path) options.configured_path = *settings.gpurun_path;
  if (options.directory.empty() && settings.gpurun_dir) options.directory = *settings.gpurun_dir;
  if (!options.configured_path.empty()) return check_configured(client, options);
  const std::string local = options.local_binary.empty() ? "/proc/self/exe" : options.local_binary;
  auto digest = file_sha256(local);
  if (!digest) return digest.error();
  std::string directory = options.directory.empty() ? "~/.cache/gpurun/bin" : options.directory;
  while (directory.size() > 1 && directory.back() == '/') directory.pop_back();
  const std::string path = directory + "/gpurun-" + *digest;
  auto p = probe(client, remote_path_word(path), true);
  if (!p) return p.error();
  const std::string here = options.local_system.empty() ? local_uname() : options.local_system;
  if (p->uname != here) {
    return backend_error(fmt::format(
        "{} is `{}` but this gpurun is built for `{}`; install a gpurun built for that host there and set `{}` to its path",
        describe_ssh_host(client.settings()), p->uname, here, options.setting));
  }
  if (p->present && p->version_status == 0) return RemoteGpurun{path, p->version, false, 0};
  if (p->present) return does_not_run(client, options, path, *p);
  return upload(client, options, local, path);
}

}  // namespace gpurun::cloud
