#include "cloud/backend/slurm/slurm_script.hpp"

#include <algorithm>
#include <array>

#include "util/strings.hpp"

namespace gpurun::cloud::slurm {

namespace {

using util::ExitCode;

bool safe_run_id(std::string_view id) {
  return !id.empty() && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

bool env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string trimmed_dir(std::string_view dir) {
  std::string out(dir);
  while (out.size() > 1 && out.back() == '/') {
    out.pop_back();
  }
  return out;
}

// Slurm expands %j, %u, ... in output paths unless the path holds a backslash; %% is a literal %.
std::string slurm_escaped_path(const std::string& path) {
  if (path.find('\\') != std::string::npos) {
    return path;
  }
  std::string out;
  for (char c : path) {
    out += c;
    if (c == '%') {
      out += '%';
    }
  }
  return out;
}

util::Result<void> check(const BatchScript& script) {
  if (script.argv.empty() == !script.shell.has_value()) {
    return util::make_error(ExitCode::usage, script.argv.empty()
                                                 ? "slurm: run '" + script.run_id + "' has no command; give a command (argv) or a shell string"
                                                 : "slurm: run '" + script.run_id + "' has both a command and a shell string; give one of them");
  }
  if (!safe_run_id(script.run_id)) {
    return util::make_error(ExitCode::usage, "slurm: run id '" + script.run_id +
                                                 "' is not usable in a file name; use letters, digits, '.', '_' and '-'");
  }
  if (script.log_dir.empty() || script.log_dir[0] != '/') {
    return util::make_error(ExitCode::usage, "slurm: log directory '" + script.log_dir +
                                                 "' is not an absolute path; give the cluster path of a shared directory");
  }
  for (const auto& name : script.env_names) {
    if (!env_name(name)) {
      return util::make_error(ExitCode::usage, "slurm: environment variable name '" + name +
                                                   "' is invalid; use letters, digits and '_', not starting with a digit");
    }
  }
  if (script.gpurun.empty() && (script.image || !script.binds.empty())) {
    return util::make_error(ExitCode::usage, "slurm: run '" + script.run_id +
                                                 "' has an image or volumes but no path of gpurun on the nodes; set node_gpurun");
  }
  if (script.attempt_offset < 0) {
    return util::make_error(ExitCode::usage, "slurm: attempt offset " + std::to_string(script.attempt_offset) +
                                                 " is negative; count earlier attempts from 0");
  }
  return {};
}

}  // namespace

std::string run_log_path(std::string_view log_dir, std::string_view run_id) {
  std::string dir = trimmed_dir(log_dir);
  return (dir == "/" ? "" : dir) + "/" + std::string(run_id) + ".log";
}

std::string run_exit_path(std::string_view log_dir, std::string_view run_id) {
  std::string dir = trimmed_dir(log_dir);
  return (dir == "/" ? "" : dir) + "/" + std::string(run_id) + ".exit";
}

std::string slurm_output_path(std::string_view log_dir, std::string_view run_id) {
  std::string dir = trimmed_dir(log_dir);
  return (dir == "/" ? "" : dir) + "/" + std::string(run_id) + ".slurm.out";
}

std::string attempt_marker(int attempt) { return "=== gpurun: attempt " + std::to_string(attempt) + " ==="; }

std::string quote_command_word(std::string_view word) {
  static constexpr std::array<std::string_view, 23> reserved = {
      "!", "[[", "]]", "{", "}", "case", "coproc", "do", "done", "elif", "else", "esac",
      "fi", "for", "function", "if", "in", "select", "then", "time", "until", "while", "{}"};
  std::string quoted = util::shell_quote(word);
  bool plain = quoted == word;
  if (plain && (word.find('=') != std::string_view::npos ||
                std::find(reserved.begin(), reserved.end(), word) != reserved.end())) {
    return "'" + std::string(word) + "'";
  }
  return quoted;
}

std::string node_exec_command(const std::string& gpurun, const std::string& log) {
  std::string out = quote_command_word(gpurun) + " node-exec";
  if (!log.empty()) out += " --log " + util::shell_quote(log);
  return out;
}

std::string image_command(const ImageRun& image, const std::string& gpurun,
                          const std::vector<std::pair<std::string, std::string>>& binds, const std::vector<std::string>& argv,
                          const std::string& log) {
  std::string host = image.registry;
  const bool plain_http = host.rfind("http://", 0) == 0;
  if (const auto scheme = host.find("://"); scheme != std::string::npos) host = host.substr(scheme + 3);
  while (!host.empty() && host.back() == '/') host.pop_back();
  std::string out;
  if (image.runtime == "pyxis") {
    out = "srun --ntasks=1 " + util::shell_quote("--container-image=" + host + "#" + image.repository + ":" + image.tag);
    if (!image.workdir.empty()) out += " " + util::shell_quote("--container-workdir=" + image.workdir);
    std::vector<std::string> mounts;
    for (const auto& [from, to] : binds) mounts.push_back(from + ":" + to);
    if (!mounts.empty()) out += " " + util::shell_quote("--container-mounts=" + util::join(mounts, ","));
  } else if (image.runtime == "apptainer") {
    out = "apptainer exec";
    if (plain_http) out += " --nohttps";
    if (image.gpus) out += " --nv";
    if (!image.workdir.empty()) out += " --pwd " + util::shell_quote(image.workdir);
    for (const auto& [from, to] : binds) out += " --bind " + util::shell_quote(from + ":" + to);
    out += " " + util::shell_quote("docker://" + host + "/" + image.repository + "@" + image.digest);
  } else {
    out = node_exec_command(gpurun, log) + " --registry " + util::shell_quote(image.registry) + " --repository " +
          util::shell_quote(image.repository) + " --digest " + util::shell_quote(image.digest) + " --cache " +
          (image.cache_dir.empty() ? std::string("\"${TMPDIR:-/tmp}/gpurun-$(id -u)/images\"") : util::shell_quote(image.cache_dir));
    if (image.gpus) out += " --gpus";
    for (const auto& [from, to] : binds) out += " --bind " + util::shell_quote(from) + " " + util::shell_quote(to);
    out += " --";
  }
  for (const auto& word : argv) out += " " + util::shell_quote(word);
  return out;
}

std::string host_bind_command(const std::string& gpurun, const std::vector<std::pair<std::string, std::string>>& binds,
                              const std::vector<std::string>& argv, const std::string& log) {
  std::string out = node_exec_command(gpurun, log);
  for (const auto& [from, to] : binds) out += " --bind " + util::shell_quote(from) + " " + util::shell_quote(to);
  out += " --";
  for (const auto& word : argv) out += " " + util::shell_quote(word);
  return out;
}

namespace {

// The line that runs the workload: through `gpurun node-exec --log` (images, volumes and pyxis or
// apptainer command lines as its workload), or directly without `gpurun`.
std::string workload_line(const BatchScript& script) {
  const auto words = script.shell ? std::vector<std::string>{"/bin/sh", "-c", *script.shell} : script.argv;
  if (script.gpurun.empty()) {
    std::string command = quote_command_word(words[0]);
    for (std::size_t i = 1; i < words.size(); ++i) command += " " + util::shell_quote(words[i]);
    return command;
  }
  const std::string log = run_log_path(script.log_dir, script.run_id);
  if (script.image && (script.image->runtime == "pyxis" || script.image->runtime == "apptainer")) {
    return node_exec_command(script.gpurun, log) + " -- " + image_command(*script.image, script.gpurun, script.binds, words);
  }
  if (script.image) return image_command(*script.image, script.gpurun, script.binds, words, log);
  return host_bind_command(script.gpurun, script.binds, words, log);
}

}  // namespace

util::Result<std::string> render_batch_script(const BatchScript& script) {
  if (auto ok = check(script); !ok) {
    return ok.error();
  }
  std::string out = "#!/bin/bash\n";
  out += "# gpurun run " + script.run_id + ". Generated; environment values come with the job submission.\n";
  if (!script.env_names.empty()) {
    out += "# environment: " + util::join(script.env_names, ", ") + "\n";
  }
  out += "export GPURUN_RUN_ID=" + util::shell_quote(script.run_id) + "\n";
  out += "export GPURUN_ATTEMPT=$(( ${SLURM_RESTART_COUNT:-0} + 1 + " + std::to_string(script.attempt_offset) + " ))\n";
  out += "gpurun_exit=" + util::shell_quote(run_exit_path(script.log_dir, script.run_id)) + "\n";
  out += "rm -f \"$gpurun_exit\"\n";
  if (script.gpurun.empty()) out += "echo \"=== gpurun: attempt $GPURUN_ATTEMPT ===\"\n";
  // A handler (not an ignore, which children would inherit) lets the script outlive Slurm's
  // SIGTERM long enough to record the workload's status.
  out += "trap 'gpurun_signalled=1' TERM INT\n";
  out += workload_line(script) + "\n";
  out += "gpurun_code=$?\n";
  out += "echo \"$gpurun_code\" >\"$gpurun_exit.$SLURM_JOB_ID.tmp\" && mv -f \"$gpurun_exit.$SLURM_JOB_ID.tmp\" \"$gpurun_exit\"\n";
  out += "exit \"$gpurun_code\"\n";
  return out;
}

util::Result<void> prepare_job(JobSubmit& job, const BatchScript& script,
                               const std::map<std::string, std::string>& environment) {
  auto text = render_batch_script(script);
  if (!text) {
    return text.error();
  }
  job.script = std::move(*text);
  job.standard_output = slurm_escaped_path(script.gpurun.empty() ? run_log_path(script.log_dir, script.run_id)
                                                                  : slurm_output_path(script.log_dir, script.run_id));
  job.standard_error.clear();
  job.append_output = true;
  job.requeue = true;
  job.environment = environment;
  if (!job.environment.count("PATH")) {
    job.environment["PATH"] = "/usr/local/bin:/usr/bin:/bin";
  }
  return {};
}

}  // namespace gpurun::cloud::slurm
