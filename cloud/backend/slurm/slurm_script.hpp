#pragma once

// The batch script gpurun submits for a run, and the job fields that go with it. Environment
// values (secrets included) never appear in the script: they travel in the submission's
// `environment` object.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloud/backend/slurm/slurm_api.hpp"
#include "util/result.hpp"

namespace gpurun::cloud::slurm {

// A run inside an image: how the node gets and runs it.
struct ImageRun {
  std::string runtime = "bubblewrap";  // bubblewrap (gpurun node-exec), pyxis or apptainer
  std::string registry;                // URL, http(s)://host[:port]
  std::string repository;
  std::string digest;                  // the manifest's
  std::string tag;                     // pyxis: a tag of that manifest (enroot wants a tag)
  std::string cache_dir;               // bubblewrap: empty = /tmp/gpurun-<uid>/images
  std::string workdir;                 // the image's WorkingDir
  bool gpus = false;
};

// What one run executes on the cluster.
struct BatchScript {
  std::vector<std::string> argv;       // the command, run word for word...
  std::optional<std::string> shell;    // ...or a shell string, run by /bin/sh -c (exactly one of both)
  std::vector<std::string> env_names;  // names the job gets through `environment` (listed, never values)
  std::string log_dir;                 // absolute path on the cluster's shared filesystem
  std::string run_id;                  // [A-Za-z0-9._-]+
  int attempt_offset = 0;              // gpurun-level retries before this submission
  std::optional<ImageRun> image;       // run the command inside this image
  std::vector<std::pair<std::string, std::string>> binds;  // volumes: shared path -> mount path
  std::string gpurun;                  // gpurun's path on the nodes: every run goes through its node-exec
                                       // (empty: the command runs directly, output plain; raw client tests)
};

// "<gpurun> node-exec", with " --log <log>" when `log` is not empty (words quoted).
std::string node_exec_command(const std::string& gpurun, const std::string& log = {});

// The command line that runs `argv` inside `image` on a node with `binds` (a script line, words
// quoted); bubblewrap runs `gpurun` node-exec (writing records to `log` when given).
std::string image_command(const ImageRun& image, const std::string& gpurun,
                          const std::vector<std::pair<std::string, std::string>>& binds, const std::vector<std::string>& argv,
                          const std::string& log = {});

// The command line that runs `argv` on a node's host by `gpurun` node-exec (writing records to
// `log` when given), through bubblewrap with `binds`: mount points are made inside the sandbox only.
std::string host_bind_command(const std::string& gpurun, const std::vector<std::pair<std::string, std::string>>& binds,
                              const std::vector<std::string>& argv, const std::string& log = {});

// <log_dir>/<run id>.log: every attempt's output, appended. Written by `gpurun node-exec` as log
// records (cloud/state/logs.hpp); for runs without node-exec (launched by gpurun before it ran
// every run through node-exec) Slurm's plain output, each attempt after an attempt marker line.
std::string run_log_path(std::string_view log_dir, std::string_view run_id);
// <log_dir>/<run id>.slurm.out: what Slurm itself and the batch script print (slurmstepd's notes,
// node-exec's own errors before it could open the log) for runs through node-exec.
std::string slurm_output_path(std::string_view log_dir, std::string_view run_id);
// <log_dir>/<run id>.exit: the workload's last exit code (128+N when killed by signal N), written
// when it ends; it outlives the job record (MinJobAge).
std::string run_exit_path(std::string_view log_dir, std::string_view run_id);
// The marker line that starts attempt N in the log: "=== gpurun: attempt N ===".
std::string attempt_marker(int attempt);

// The script text: sets GPURUN_RUN_ID and GPURUN_ATTEMPT (SLURM_RESTART_COUNT + 1 + offset), runs
// the command under `gpurun node-exec --log <run log>` (which writes the records and markers;
// without `gpurun`, echoes the attempt marker and runs it directly), records its exit code and exits with it.
// Usage error when the command is missing or twice, the run id unsafe or log_dir relative.
util::Result<std::string> render_batch_script(const BatchScript& script);

// Fills `job` for the script: script text, Slurm's output (stderr with it) in append mode to
// slurm_output_path (run_log_path without `gpurun`),
// requeue on, environment = `environment` plus PATH when absent. Errors as render_batch_script.
util::Result<void> prepare_job(JobSubmit& job, const BatchScript& script,
                               const std::map<std::string, std::string>& environment);

// A command word for the script: util::shell_quote, and quoted also when the shell would read an
// unquoted word as a keyword or an assignment ("if", "time", "A=1") in command position.
std::string quote_command_word(std::string_view word);

}  // namespace gpurun::cloud::slurm
