#include "cloud/ssh/ssh_client.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <thread>

#include "cloud/ssh/ssh_session.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using ssh_detail::run_session;
using ssh_detail::SessionEnd;
using ssh_detail::SessionInput;

util::Error backend_error(std::string message) { return util::make_error(util::ExitCode::backend, std::move(message)); }

// "user@host:port" as the user configured it, for messages.
std::string describe_host(const SshSettings& s) {
  std::string text = s.user ? *s.user + "@" + s.host : s.host;
  if (s.port) text += fmt::format(":{}", *s.port);
  return text;
}

std::string expand_local_home(const std::string& path) {
  const char* home = std::getenv("HOME");
  if (path.rfind("~/", 0) == 0 && home != nullptr) return std::string(home) + path.substr(1);
  return path;
}

// The options every command shares: batch mode first (never a prompt), the user's options next
// (ssh keeps the first value it gets for an option, so they win over gpurun's defaults).
std::vector<std::string> common_args(const SshSettings& s, const SshClientOptions& options) {
  std::vector<std::string> args = {options.ssh_program, "-T", "-o", "BatchMode=yes"};
  for (const auto& option : s.ssh_options) {
    args.push_back("-o");
    args.push_back(option);
  }
  if (s.port) {
    args.push_back("-p");
    args.push_back(std::to_string(*s.port));
  }
  if (s.user) {
    args.push_back("-l");
    args.push_back(*s.user);
  }
  if (s.identity_file) {
    args.push_back("-i");
    args.push_back(expand_local_home(*s.identity_file));
  }
  for (const char* option : {"ConnectTimeout=20", "ServerAliveInterval=15", "ServerAliveCountMax=4"}) {
    args.push_back("-o");
    args.push_back(option);
  }
  return args;
}

// /tmp/gpurun-<uid>: created 0700; refused unless it is a real directory owned by us, closed to others.
util::Result<std::string> control_dir(const SshClientOptions& options) {
  const std::string dir = options.control_dir.empty() ? fmt::format("/tmp/gpurun-{}", ::getuid()) : options.control_dir;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return backend_error(fmt::format("cannot create the SSH connection directory {}: {}", dir, std::strerror(errno)));
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077) != 0) {
    return backend_error(fmt::format("the SSH connection directory {} is not a private directory of this user (mode 0700); "
                                     "remove it and run again",
                                     dir));
  }
  return dir;
}

// The ControlPath that `ssh -G` reports for these settings (the user's config), or "".
util::Result<std::string> configured_control_path(const SshSettings& s, const SshClientOptions& options) {
  std::vector<std::string> argv = common_args(s, options);
  argv.insert(argv.begin() + 1, "-G");
  argv.push_back("--");
  argv.push_back(s.host);
  auto result = ssh_detail::capture(argv);
  if (!result) return result.error();
  if (result->exit_code != 0) {
    return backend_error(fmt::format("ssh cannot read its configuration for {}: {}; check ~/.ssh/config and ssh_options",
                                     describe_host(s), util::trim(result->err)));
  }
  for (const auto& line : util::split(result->out, '\n')) {
    if (line.rfind("controlpath ", 0) == 0 && line != "controlpath none") return line.substr(12);
  }
  return std::string();
}

// What ssh's stderr says went wrong (exit 255).
enum class SshFailure { unknown_host_key, changed_host_key, refused_key, unreachable, dropped, other };

SshFailure classify(std::string_view err) {
  auto has = [err](std::string_view needle) { return err.find(needle) != std::string_view::npos; };
  if (has("REMOTE HOST IDENTIFICATION HAS CHANGED")) return SshFailure::changed_host_key;
  if (has("Host key verification failed") || has("No ED25519 host key is known") || has("host key is known for")) {
    return SshFailure::unknown_host_key;
  }
  if (has("Permission denied")) return SshFailure::refused_key;
  if (has("Connection refused") || has("Could not resolve hostname") || has("No route to host") ||
      has("Network is unreachable") || has("Connection timed out") || has("Operation timed out")) {
    return SshFailure::unreachable;
  }
  if (has("closed by remote host") || has("Connection reset") || has("Broken pipe") || has("mux_client") ||
      has("Timeout, server") || has("lost connection") || has("Connection closed")) {
    return SshFailure::dropped;
  }
  return SshFailure::other;
}

// The last non-empty line of ssh's stderr, for messages.
std::string last_line(std::string_view err) {
  std::string last;
  for (const auto& line : util::split(err, '\n')) {
    if (!util::trim(line).empty()) last = std::string(util::trim(line));
  }
  return last;
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

}  // namespace

std::string describe_ssh_host(const SshSettings& settings) { return describe_host(settings); }

std::string remote_path_word(std::string_view path) {
  if (path == "~") return "\"$HOME\"";
  if (path.rfind("~/", 0) == 0) return "\"$HOME\"/" + util::shell_quote(path.substr(2));
  return util::shell_quote(path);
}

std::string wrap_remote_script(const RemoteScript& script, const std::vector<std::string>& remote_setup) {
  std::string text = "{\n";
  text += fmt::format("printf '%s\\n' '{0}'; printf '%s\\n' '{0}' >&2\n", ssh_detail::start_marker);
  for (const auto& [name, value] : script.env) text += fmt::format("export {}={}\n", name, util::shell_quote(value));
  if (!remote_setup.empty()) {
    text += "{\n";
    for (const auto& line : remote_setup) text += line + "\n";
    text += "} >&2\n";
  }
  text += script.body;
  if (script.body.empty() || script.body.back() != '\n') text += "\n";
  text += "}\nexit\n";
  return text;
}

util::Error ssh_failure(const SshSettings& settings, std::string_view stderr_text) {
  const std::string host = describe_host(settings);
  const std::string said = last_line(stderr_text);
  switch (classify(stderr_text)) {
    case SshFailure::unknown_host_key:
      return backend_error(fmt::format(
          "ssh to {}: the host key is not known ({}); verify the host's fingerprint, then add it to ~/.ssh/known_hosts "
          "(e.g. connect once with `ssh {}`); gpurun never accepts unknown host keys by itself",
          host, said, settings.host));
    case SshFailure::changed_host_key:
      return backend_error(fmt::format(
          "ssh to {}: the host key has CHANGED since it was recorded in known_hosts; if the host was reinstalled, remove the "
          "old key with `ssh-keygen -R {}` and verify the new one, otherwise do not connect",
          host, settings.host));
    case SshFailure::refused_key:
      return backend_error(fmt::format(
          "ssh to {}: the server refused the key ({}); check `user` and `identity_file` in the SSH settings and that the "
          "public key is in the remote ~/.ssh/authorized_keys (gpurun runs ssh in batch mode: no passwords)",
          host, said));
    case SshFailure::unreachable:
      return backend_error(fmt::format("ssh to {}: the host is unreachable ({}); check `host` and `port` and that sshd runs there",
                                       host, said));
    case SshFailure::dropped:
      return backend_error(fmt::format("ssh to {}: the connection was lost ({}); check the network and run again", host, said));
    case SshFailure::other:
      break;
  }
  return backend_error(fmt::format("ssh to {} failed: {}; check the SSH settings (host, port, user, identity_file, ssh_options)",
                                   host, said.empty() ? std::string("exit status 255") : said));
}

util::Result<SshClient> SshClient::open(SshSettings settings, SshClientOptions options) {
  if (settings.host.empty()) {
    return util::make_error(util::ExitCode::usage, "the SSH settings have no 'host'; give a host name or a ~/.ssh/config alias");
  }
  auto user_path = configured_control_path(settings, options);
  if (!user_path) return user_path.error();
  SshClient client;
  if (user_path->empty()) {
    auto dir = control_dir(options);
    if (!dir) return dir.error();
    // ssh adds ".<16 random characters>" while it creates the socket: keep the whole under 100 bytes.
    const std::string path = *dir + "/%C";
    if (dir->size() + 1 + 40 + 17 >= 100) {
      return backend_error(fmt::format("the SSH connection directory {} is too long for a socket path; use a shorter one", *dir));
    }
    client.control_args_ = {"-o", "ControlMaster=auto", "-o", "ControlPath=" + path, "-o",
                            fmt::format("ControlPersist={}", options.control_persist_seconds)};
  }
  client.settings_ = std::move(settings);
  client.options_ = std::move(options);
  return client;
}

std::vector<std::string> SshClient::argv() const {
  std::vector<std::string> args = common_args(settings_, options_);
  args.insert(args.end(), control_args_.begin(), control_args_.end());
  args.push_back("--");
  args.push_back(settings_.host);
  args.push_back("exec /bin/sh -s");
  return args;
}

namespace {

// The result of a session that ran (or should have): ssh's failures become errors.
util::Result<RemoteResult> finish(const SshSettings& settings, SessionEnd& end, std::string out) {
  if (!end.started || (end.exit_code == 255 && classify(end.err) == SshFailure::dropped)) {
    if (end.exit_code == 255 || end.started) return ssh_failure(settings, end.err);
    return backend_error(fmt::format("ssh to {}: the remote shell did not run gpurun's script (exit {}: {}); check that the "
                                     "login shell there can run `exec /bin/sh -s`",
                                     describe_host(settings), end.exit_code, last_line(end.err)));
  }
  return RemoteResult{end.exit_code, std::move(out), std::move(end.err)};
}

// A session through a shared connection that had just died ends with 255 before the script
// started and without a word from ssh (or a mux error): one new connection is worth trying.
bool retry_once(const SessionEnd& end) {
  if (end.started || end.exit_code != 255) return false;
  const SshFailure failure = classify(end.err);
  return failure == SshFailure::dropped || (failure == SshFailure::other && util::trim(end.err).empty());
}

util::Result<void> check_env(const RemoteScript& script) {
  for (const auto& entry : script.env) {
    if (!valid_env_name(entry.first)) {
      return util::make_error(util::ExitCode::usage,
                              fmt::format("'{}' is not a valid environment variable name; use letters, digits and '_'", entry.first));
    }
  }
  return {};
}

}  // namespace

util::Result<RemoteResult> SshClient::run(const RemoteScript& script) const {
  if (auto ok = check_env(script); !ok) return ok.error();
  const std::string text = wrap_remote_script(script, settings_.remote_setup.value_or(std::vector<std::string>{}));
  SessionInput input;
  if (script.input) input.text = &*script.input;
  for (int attempt = 0;; ++attempt) {
    std::string out;
    auto end = run_session(argv(), text, input, [&out](std::string_view data) { out.append(data); return true; }, nullptr);
    if (!end) return end.error();
    if (attempt == 0 && retry_once(*end)) continue;
    return finish(settings_, *end, std::move(out));
  }
}

util::Result<RemoteResult> SshClient::run(const RemoteScript& script, int input_fd) const {
  if (auto ok = check_env(script); !ok) return ok.error();
  const std::string text = wrap_remote_script(script, settings_.remote_setup.value_or(std::vector<std::string>{}));
  SessionInput input;
  input.fd = input_fd;
  std::string out;
  auto end = run_session(argv(), text, input, [&out](std::string_view data) { out.append(data); return true; }, nullptr);
  if (end && retry_once(*end) && end->input_bytes == 0) {
    out.clear();
    end = run_session(argv(), text, input, [&out](std::string_view data) { out.append(data); return true; }, nullptr);
  }
  if (!end) return end.error();
  if (!end->input_error.empty()) {
    return backend_error(fmt::format("cannot read the input for {}: {}", describe_host(settings_), end->input_error));
  }
  return finish(settings_, *end, std::move(out));
}

util::Result<std::optional<std::string>> SshClient::read_file(const std::string& path, std::uint64_t offset) const {
  RemoteScript script;
  script.body = fmt::format("f={}\n[ -f \"$f\" ] || exit 3\nexec tail -c +{} \"$f\"\n", remote_path_word(path), offset + 1);
  auto result = run(script);
  if (!result) return result.error();
  if (result->exit_code == 3) return std::optional<std::string>();
  if (result->exit_code != 0) {
    return backend_error(fmt::format("cannot read {} on {}: {}", path, describe_host(settings_), last_line(result->err)));
  }
  return std::optional<std::string>(std::move(result->out));
}

util::Result<std::uint64_t> SshClient::write_file(const std::string& path, int fd) const {
  RemoteScript script;
  script.body = fmt::format(
      "p={}\nmkdir -p \"$(dirname \"$p\")\" || exit 1\nt=\"$p.gpurun-tmp.$$\"\n"
      "if cat >\"$t\" && mv -f \"$t\" \"$p\"; then exit 0; fi\nrm -f \"$t\"\nexit 1\n",
      remote_path_word(path));
  const std::string text = wrap_remote_script(script, settings_.remote_setup.value_or(std::vector<std::string>{}));
  SessionInput input;
  input.fd = fd;
  auto end = run_session(argv(), text, input, [](std::string_view) { return true; }, nullptr);
  if (end && retry_once(*end) && end->input_bytes == 0) {
    end = run_session(argv(), text, input, [](std::string_view) { return true; }, nullptr);
  }
  if (!end) return end.error();
  if (!end->input_error.empty()) return backend_error(fmt::format("cannot read what goes to {}: {}", path, end->input_error));
  const std::uint64_t sent = end->input_bytes;
  auto result = finish(settings_, *end, {});
  if (!result) return result.error();
  if (result->exit_code != 0) {
    return backend_error(fmt::format("cannot write {} on {}: {}; check the path and the free space there", path,
                                     describe_host(settings_), last_line(result->err)));
  }
  return sent;
}

namespace {

// Whole lines of a followed file go to the caller; `offset` counts what was delivered.
struct LineDelivery {
  const FollowOptions& options;
  std::uint64_t offset;
  std::string partial;
  bool stop = false;
  bool deliver(std::string_view data, bool flush) {
    partial.append(data);
    const auto newline = partial.rfind('\n');
    const std::size_t size = flush ? partial.size() : (newline == std::string::npos ? 0 : newline + 1);
    if (size == 0) return true;
    offset += size;
    const std::string lines = partial.substr(0, size);
    partial.erase(0, size);
    if (!options.on_data(lines)) stop = true;
    return !stop;
  }
};

}  // namespace

util::Result<std::uint64_t> SshClient::follow_file(const std::string& path, const FollowOptions& options) const {
  LineDelivery delivery{options, options.offset, {}, false};
  int failures = 0;
  while (true) {
    delivery.partial.clear();  // a part line is asked for again from its first byte
    const std::uint64_t start = delivery.offset;
    RemoteScript script;
    script.body = fmt::format("exec tail -c +{} -F -s 0.2 {} 2>/dev/null\n", start + 1, remote_path_word(path));
    const std::string text = wrap_remote_script(script, settings_.remote_setup.value_or(std::vector<std::string>{}));
    auto end = run_session(
        argv(), text, {}, [&delivery](std::string_view data) { return delivery.deliver(data, false); }, options.keep_going);
    if (!end) return end.error();
    if (delivery.stop) return delivery.offset;
    if (end->stopped) {
      delivery.partial.clear();  // the final read returns it again, with what followed
      auto rest = read_file(path, delivery.offset);  // what was written after the last chunk
      if (!rest) return rest.error();
      if (*rest) delivery.deliver(**rest, true);
      return delivery.offset;
    }
    const SshFailure failure = classify(end->err);
    const bool transient = end->exit_code == 255 && failure != SshFailure::unknown_host_key &&
                           failure != SshFailure::changed_host_key && failure != SshFailure::refused_key;
    if (!transient) {
      if (end->exit_code == 255) return ssh_failure(settings_, end->err);
      return backend_error(fmt::format("following {} on {} ended unexpectedly (exit {}); check that `tail` exists there",
                                       path, describe_host(settings_), end->exit_code));
    }
    failures = delivery.offset > start ? 1 : failures + 1;
    if (failures > options.max_reconnects) return ssh_failure(settings_, end->err);
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * failures));
  }
}

void SshClient::close_master() const {
  if (control_args_.empty()) return;  // the user's own master is theirs to end
  std::vector<std::string> args = common_args(settings_, options_);
  args.insert(args.end(), control_args_.begin(), control_args_.end());
  args.insert(args.end(), {"-O", "exit", "--", settings_.host});
  (void)ssh_detail::capture(args);
}

}  // namespace gpurun::cloud
