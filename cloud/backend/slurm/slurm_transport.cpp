#include "cloud/backend/slurm/slurm_transport.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <set>

#include "cloud/backend/slurm/slurm_client.hpp"
#include "cloud/exec/process.hpp"
#include "cloud/ssh/ssh_client.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud::slurm {

namespace {

// A submit whose runner is gone exits with this (sbatch itself exits 1) and is said with this text.
constexpr int runner_missing_exit = 97;
constexpr std::string_view runner_missing_text = "gpurun's copy for the jobs is missing:";

// A cluster path as one shell word; a leading "~/" stays the remote $HOME.
std::string remote_path_word(const std::string& path) {
  if (path.rfind("~/", 0) == 0) return "\"$HOME\"/" + util::shell_quote(path.substr(2));
  return util::shell_quote(path);
}

using util::ExitCode;

util::Error backend_error(std::string message) { return util::make_error(ExitCode::backend, std::move(message)); }

// The last non-empty line of a command's stderr.
std::string last_line(std::string_view text) {
  auto lines = util::split(std::string(text), '\n');
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    const auto line = util::trim(*it);
    if (!line.empty()) return std::string(line);
  }
  return "";
}

// ---- rest: slurmrestd ----

class RestTransport final : public Transport {
 public:
  explicit RestTransport(Client client) : client_(std::move(client)) {}
  std::string_view name() const override { return "rest"; }
  bool local_files() const override { return true; }
  util::Result<long long> submit(const JobSubmit& job) override { return client_.submit(job); }
  // One GET /job/{id} per job (slurmrestd v0.0.38 has no filtered job list).
  util::Result<std::map<long long, JobInfo>> jobs(std::span<const long long> ids) override {
    std::map<long long, JobInfo> out;
    for (const long long id : ids) {
      auto job = client_.job(id);
      if (!job) return job.error();
      if (*job) out.emplace(id, **job);
    }
    return out;
  }
  util::Result<void> cancel(std::span<const long long> ids) override {
    for (const long long id : ids) {
      if (auto done = client_.cancel(id); !done) return done.error();
    }
    return {};
  }
  util::Result<std::vector<NodeInfo>> nodes() override { return client_.nodes(); }
  util::Result<std::optional<std::string>> read_file(const std::string& path, std::uint64_t offset,
                                                     std::size_t max) override;
  util::Result<std::uint64_t> file_size(const std::string& path) override;

 private:
  Client client_;
};

util::Result<std::optional<std::string>> read_local_file(const std::string& path, std::uint64_t offset, std::size_t max) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return backend_error(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  }
  std::string out(std::min<std::size_t>(max, 1 << 20), '\0');
  const ssize_t n = ::pread(fd, out.data(), out.size(), static_cast<off_t>(offset));
  const int saved = errno;
  ::close(fd);
  if (n < 0) return backend_error(fmt::format("cannot read {}: {}", path, std::strerror(saved)));
  out.resize(static_cast<std::size_t>(n));
  return std::optional<std::string>(std::move(out));
}

util::Result<std::uint64_t> local_file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::uint64_t{0};
  return static_cast<std::uint64_t>(st.st_size);
}

util::Result<std::optional<std::string>> RestTransport::read_file(const std::string& path, std::uint64_t offset,
                                                                  std::size_t max) {
  return read_local_file(path, offset, max);
}
util::Result<std::uint64_t> RestTransport::file_size(const std::string& path) { return local_file_size(path); }

// ---- cli and ssh: the Slurm commands, run by a POSIX shell here or on the login node ----

// A finished shell script.
struct ShellResult {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Runs sh code with exported variables and stdin; the one thing cli and ssh do differently.
class Shell {
 public:
  virtual ~Shell() = default;
  virtual util::Result<ShellResult> run(const std::string& body, const std::vector<std::pair<std::string, std::string>>& env,
                                        const std::optional<std::string>& input) = 0;
  // "sbatch" or "sbatch on HOST", for messages.
  virtual std::string where() const = 0;
};

// /bin/sh here, with a clean environment: PATH, HOME, USER, LANG and the SLURM_CONF the
// commands need, then `env`; values go through the environment, never the command line.
class LocalShell final : public Shell {
 public:
  util::Result<ShellResult> run(const std::string& body, const std::vector<std::pair<std::string, std::string>>& env,
                                const std::optional<std::string>& input) override {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", body};
    std::map<std::string, std::string> vars;
    for (const char* name : {"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "SLURM_CONF"}) {
      if (const char* value = std::getenv(name); value != nullptr) vars[name] = value;
    }
    if (vars.count("PATH") == 0) vars["PATH"] = "/usr/local/bin:/usr/bin:/bin";
    for (const auto& [k, v] : env) vars[k] = v;
    for (const auto& [k, v] : vars) spec.env.push_back(k + "=" + v);
    spec.stdin_pipe = input.has_value();
    auto child = ChildProcess::spawn(spec);
    if (!child) return child.error();
    if (input) {
      std::size_t done = 0;
      while (done < input->size()) {
        const ssize_t n = ::write(child->stdin_fd(), input->data() + done, input->size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      child->close_stdin();
    }
    ShellResult result;
    std::vector<char> buffer(1 << 16);
    while (child->stdout_fd() >= 0 || child->stderr_fd() >= 0) {
      child->pump_output(buffer, 1000, [&result](bool from_stderr, const char* data, std::size_t size) {
        (from_stderr ? result.err : result.out).append(data, size);
      });
    }
    result.exit_code = child->wait();
    return result;
  }
  std::string where() const override { return "this machine"; }
};

// The login node's /bin/sh through the shared SSH connection: the script, its variables and its
// stdin travel on ssh's stdin (one round trip).
class RemoteShell final : public Shell {
 public:
  explicit RemoteShell(SshClient client) : client_(std::move(client)) {}
  util::Result<ShellResult> run(const std::string& body, const std::vector<std::pair<std::string, std::string>>& env,
                                const std::optional<std::string>& input) override {
    RemoteScript script;
    script.body = body;
    script.env = env;
    script.input = input;
    auto result = client_.run(script);
    if (!result) return result.error();
    return ShellResult{result->exit_code, std::move(result->out), std::move(result->err)};
  }
  std::string where() const override { return describe_ssh_host(client_.settings()); }
  const SshClient& client() const { return client_; }

 private:
  SshClient client_;
};

// Variables of this machine that mean nothing on a login node (they come from its own login).
bool local_only_variable(const std::string& name) {
  static const std::set<std::string> names = {"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ"};
  return names.count(name) != 0;
}

class CommandTransport final : public Transport {
 public:
  CommandTransport(std::string name, std::unique_ptr<Shell> shell, std::string cloud)
      : name_(std::move(name)), shell_(std::move(shell)), cloud_(std::move(cloud)) {}
  std::string_view name() const override { return name_; }
  bool local_files() const override { return name_ == "cli"; }

  // `sbatch --parsable OPTIONS` with the script on stdin, after making the output's directory.
  util::Result<long long> submit(const JobSubmit& job) override {
    std::vector<std::string> words;
    for (const auto& a : sbatch_arguments(job)) words.push_back(util::shell_quote(a));
    std::string body;
    if (!local_files()) {  // cli: the backend made them here
      std::vector<std::string> dirs = job.directories;
      if (!job.standard_output.empty()) dirs.push_back(std::filesystem::path(job.standard_output).parent_path().string());
      for (const auto& dir : dirs) {
        if (!dir.empty()) body += fmt::format("mkdir -p {} || exit 1\n", util::shell_quote(dir));
      }
    }
    if (!local_files() && !job.runner.empty()) {
      body += fmt::format("[ -x {} ] || exit {}\n", remote_path_word(job.runner), runner_missing_exit);
    }
    body += "exec sbatch " + util::join(words, " ") + "\n";
    std::vector<std::pair<std::string, std::string>> env;
    for (const auto& [k, v] : job.environment) {
      if (!local_files() && local_only_variable(k)) continue;
      env.emplace_back(k, v);
    }
    auto result = shell_->run(body, env, job.script);
    if (!result) return result.error();
    if (result->exit_code == runner_missing_exit && !local_files() && !job.runner.empty()) {
      return backend_error(fmt::format("{} {} on {} is not there any more (deleted?)", runner_missing_text, job.runner, shell_->where()));
    }
    if (result->exit_code != 0) {
      auto error = sbatch_failure(result->err, cloud_);
      if (error.code != ExitCode::unschedulable) return error;
      const std::string said = last_line(result->err);
      auto listed = nodes();
      return unschedulable_error(job, said.substr(said.rfind(": ") == std::string::npos ? 0 : said.rfind(": ") + 2),
                                 listed ? &*listed : nullptr);
    }
    const std::string out(util::trim(result->out));
    const auto id = util::parse_uint(std::string_view(out).substr(0, out.find(';')));
    if (!id) return backend_error(fmt::format("sbatch on {} printed no job id ({}); check the Slurm commands there", shell_->where(), out));
    return static_cast<long long>(*id);
  }

  // One `squeue --json` (22.05 ignores its filters: the whole table, filtered here).
  util::Result<std::map<long long, JobInfo>> jobs(std::span<const long long> ids) override {
    if (ids.empty()) return std::map<long long, JobInfo>{};
    auto result = shell_->run("exec squeue --json\n", {}, std::nullopt);
    if (!result) return result.error();
    if (result->exit_code != 0) {
      return backend_error(fmt::format("squeue on {} failed: {}; check that the Slurm commands work there (squeue)",
                                       shell_->where(), last_line(result->err)));
    }
    return jobs_from_squeue_json(result->out, ids);
  }

  util::Result<void> cancel(std::span<const long long> ids) override {
    if (ids.empty()) return {};
    std::vector<std::string> words;
    for (const long long id : ids) words.push_back(std::to_string(id));
    auto result = shell_->run("exec scancel " + util::join(words, " ") + "\n", {}, std::nullopt);
    if (!result) return result.error();
    if (result->exit_code != 0) {
      return backend_error(fmt::format("scancel {} on {} failed: {}", util::join(words, " "), shell_->where(), last_line(result->err)));
    }
    return {};
  }

  util::Result<std::vector<NodeInfo>> nodes() override {
    auto result = shell_->run("exec sinfo --json\n", {}, std::nullopt);
    if (!result) return result.error();
    if (result->exit_code != 0) {
      return backend_error(fmt::format("sinfo on {} failed: {}", shell_->where(), last_line(result->err)));
    }
    auto dialect = dialect_for("v0.0.38");
    if (!dialect) return dialect.error();
    return (*dialect)->parse_nodes(200, result->out);
  }

  util::Result<std::optional<std::string>> read_file(const std::string& path, std::uint64_t offset,
                                                     std::size_t max) override {
    if (local_files()) return read_local_file(path, offset, max);
    auto result = shell_->run(fmt::format("f={}\n[ -f \"$f\" ] || exit 3\ntail -c +{} \"$f\" | head -c {}\n",
                                          util::shell_quote(path), offset + 1, max),
                              {}, std::nullopt);
    if (!result) return result.error();
    if (result->exit_code == 3) return std::optional<std::string>();
    if (result->exit_code != 0) {
      return backend_error(fmt::format("cannot read {} on {}: {}", path, shell_->where(), last_line(result->err)));
    }
    return std::optional<std::string>(std::move(result->out));
  }

  util::Result<std::uint64_t> file_size(const std::string& path) override {
    if (local_files()) return local_file_size(path);
    auto result = shell_->run(fmt::format("f={}\n[ -f \"$f\" ] || {{ echo 0; exit 0; }}\nwc -c <\"$f\"\n", util::shell_quote(path)),
                              {}, std::nullopt);
    if (!result) return result.error();
    const auto size = util::parse_uint(util::trim(result->out));
    if (result->exit_code != 0 || !size) {
      return backend_error(fmt::format("cannot read the size of {} on {}: {}", path, shell_->where(), last_line(result->err)));
    }
    return static_cast<std::uint64_t>(*size);
  }

 private:
  std::string name_;
  std::unique_ptr<Shell> shell_;
  std::string cloud_;
};

// --key=value for one of JobSubmit::extra's fields (true: --key; false: nothing).
std::optional<std::string> extra_option(const std::string& key, const nlohmann::json& value) {
  std::string name = key;
  std::replace(name.begin(), name.end(), '_', '-');
  if (name == "begin-time") name = "begin";
  if (value.is_boolean()) return value.get<bool>() ? std::optional<std::string>("--" + name) : std::nullopt;
  if (value.is_string()) return fmt::format("--{}={}", name, value.get<std::string>());
  return fmt::format("--{}={}", name, value.dump());
}

}  // namespace

bool is_runner_missing(const util::Error& error) {
  return error.code == ExitCode::backend && error.message.rfind(runner_missing_text, 0) == 0;
}

std::vector<std::string> sbatch_arguments(const JobSubmit& job) {
  std::vector<std::string> args = {"--parsable", "--export=ALL"};
  auto add = [&args](const char* option, const std::string& value) {
    if (!value.empty()) args.push_back(fmt::format("--{}={}", option, value));
  };
  add("job-name", job.name);
  add("partition", job.partition);
  add("gres", job.gres);
  if (job.time_limit_minutes) args.push_back(fmt::format("--time={}", *job.time_limit_minutes));
  if (job.cpus_per_task) args.push_back(fmt::format("--cpus-per-task={}", *job.cpus_per_task));
  if (job.memory_per_node_mb) args.push_back(fmt::format("--mem={}M", *job.memory_per_node_mb));
  add("chdir", job.current_working_directory);
  add("output", job.standard_output);
  add("error", job.standard_error);
  add("account", job.account);
  add("qos", job.qos);
  add("constraint", job.constraint);
  add("signal", job.signal);
  args.push_back(job.requeue ? "--requeue" : "--no-requeue");
  args.push_back(job.append_output ? "--open-mode=append" : "--open-mode=truncate");
  if (job.extra.is_object()) {
    for (const auto& [key, value] : job.extra.items()) {
      if (auto option = extra_option(key, value)) args.push_back(*option);
    }
  }
  return args;
}

util::Result<std::map<long long, JobInfo>> jobs_from_squeue_json(std::string_view body, std::span<const long long> ids) {
  auto dialect = dialect_for("v0.0.38");
  if (!dialect) return dialect.error();
  auto all = (*dialect)->parse_jobs(200, body);
  if (!all) return all.error();
  const std::set<long long> wanted(ids.begin(), ids.end());
  std::map<long long, JobInfo> out;
  for (auto& job : *all) {
    if (wanted.count(job.job_id) != 0) out[job.job_id] = std::move(job);
  }
  return out;
}

util::Error sbatch_failure(std::string_view stderr_text, const std::string& cloud) {
  const std::string said = last_line(stderr_text);
  if (said.find("Requested node configuration is not available") != std::string::npos) {
    return util::make_error(ExitCode::unschedulable, said);
  }
  if (said.find("invalid partition") != std::string::npos || said.find("Invalid partition") != std::string::npos) {
    return backend_error(fmt::format("slurm: job submission rejected: {}; check the partition of cloud '{}' in the config "
                                     "(sinfo lists the cluster's partitions)",
                                     said, cloud));
  }
  return backend_error(fmt::format("slurm: job submission rejected: {}; check the cloud '{}' in the config", said.empty() ? "sbatch failed" : said, cloud));
}

util::Result<std::unique_ptr<Transport>> open_transport(const TransportOptions& options) {
  if (options.transport == "rest") {
    ClientOptions client_options;
    client_options.endpoint = options.endpoint;
    client_options.api_version = options.api_version;
    client_options.user = options.user;
    client_options.token_env = options.token_env;
    auto client = Client::open(client_options);
    if (!client) return client.error();
    return std::unique_ptr<Transport>(new RestTransport(std::move(*client)));
  }
  if (options.transport == "cli") {
    return std::unique_ptr<Transport>(new CommandTransport("cli", std::make_unique<LocalShell>(), options.cloud));
  }
  if (options.transport == "ssh") {
    auto client = SshClient::open(options.ssh);
    if (!client) return client.error();
    return std::unique_ptr<Transport>(new CommandTransport("ssh", std::make_unique<RemoteShell>(std::move(*client)), options.cloud));
  }
  return util::make_error(ExitCode::usage, fmt::format("cloud '{}': unknown transport '{}'; use rest, cli or ssh", options.cloud,
                                                       options.transport));
}

}  // namespace gpurun::cloud::slurm
