#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cloud/backend/slurm/slurm_script.hpp"

using namespace gpurun::cloud::slurm;
using gpurun::util::ExitCode;

namespace {

BatchScript nasty() {
  BatchScript script;
  script.argv = {"python3", "-c", "import sys; print(sys.argv[1:])", "it's", "$(touch /tmp/pwned)", "`id`",
                 "line1\nline2", "", "a b", "*", "$HOME", "--flag=x;y", "\\"};
  script.env_names = {"HF_TOKEN", "MODE"};
  script.log_dir = "/scratch/gpurun/logs/";
  script.run_id = "rlx3k9a2b7f4q";
  script.attempt_offset = 2;
  return script;
}

}  // namespace

TEST_CASE("slurm script: argv words are quoted one by one, nothing else in the command") {
  auto text = render_batch_script(nasty());
  REQUIRE(text.ok());
  CHECK(*text ==
        "#!/bin/bash\n"
        "# gpurun run rlx3k9a2b7f4q. Generated; environment values come with the job submission.\n"
        "# environment: HF_TOKEN, MODE\n"
        "export GPURUN_RUN_ID=rlx3k9a2b7f4q\n"
        "export GPURUN_ATTEMPT=$(( ${SLURM_RESTART_COUNT:-0} + 1 + 2 ))\n"
        "gpurun_exit=/scratch/gpurun/logs/rlx3k9a2b7f4q.exit\n"
        "rm -f \"$gpurun_exit\"\n"
        "echo \"=== gpurun: attempt $GPURUN_ATTEMPT ===\"\n"
        "trap 'gpurun_signalled=1' TERM INT\n"
        "python3 -c 'import sys; print(sys.argv[1:])' 'it'\\''s' '$(touch /tmp/pwned)' '`id`' 'line1\nline2' '' "
        "'a b' '*' '$HOME' '--flag=x;y' '\\'\n"
        "gpurun_code=$?\n"
        "echo \"$gpurun_code\" >\"$gpurun_exit.$SLURM_JOB_ID.tmp\" && mv -f \"$gpurun_exit.$SLURM_JOB_ID.tmp\" "
        "\"$gpurun_exit\"\n"
        "exit \"$gpurun_code\"\n");
}

TEST_CASE("slurm script: a shell string runs through /bin/sh -c") {
  BatchScript script;
  script.shell = "echo \"$MODE\" | tr a-z A-Z; exit 3 # it's";
  script.log_dir = "/logs";
  script.run_id = "r1";
  auto text = render_batch_script(script);
  REQUIRE(text.ok());
  CHECK(text->find("\n/bin/sh -c 'echo \"$MODE\" | tr a-z A-Z; exit 3 # it'\\''s'\ngpurun_code=$?\n") !=
        std::string::npos);
  CHECK(text->find("# environment") == std::string::npos);
  CHECK(text->find("+ 1 + 0 ))") != std::string::npos);
}

TEST_CASE("slurm script: command words the shell would misread are quoted") {
  CHECK(quote_command_word("python3") == "python3");
  CHECK(quote_command_word("time") == "'time'");
  CHECK(quote_command_word("if") == "'if'");
  CHECK(quote_command_word("!") == "'!'");
  CHECK(quote_command_word("A=1") == "'A=1'");
  CHECK(quote_command_word("/usr/bin/env") == "/usr/bin/env");
  CHECK(quote_command_word("it's") == "'it'\\''s'");
}

TEST_CASE("slurm script: paths and markers") {
  CHECK(run_log_path("/scratch/logs/", "r1") == "/scratch/logs/r1.log");
  CHECK(run_exit_path("/scratch/logs", "r1") == "/scratch/logs/r1.exit");
  CHECK(run_log_path("/", "r1") == "/r1.log");
  CHECK(attempt_marker(3) == "=== gpurun: attempt 3 ===");
}

TEST_CASE("slurm script: mistakes are usage errors") {
  auto message = [](BatchScript script) {
    auto text = render_batch_script(script);
    REQUIRE_FALSE(text.ok());
    CHECK(text.error().code == ExitCode::usage);
    return text.error().message;
  };
  BatchScript script = nasty();
  script.shell = "true";
  CHECK(message(script) == "slurm: run 'rlx3k9a2b7f4q' has both a command and a shell string; give one of them");
  script.argv.clear();
  script.shell.reset();
  CHECK(message(script) == "slurm: run 'rlx3k9a2b7f4q' has no command; give a command (argv) or a shell string");
  script = nasty();
  script.run_id = "../x";
  CHECK(message(script) == "slurm: run id '../x' is not usable in a file name; use letters, digits, '.', '_' and '-'");
  script = nasty();
  script.log_dir = "logs";
  CHECK(message(script) ==
        "slurm: log directory 'logs' is not an absolute path; give the cluster path of a shared directory");
  script = nasty();
  script.env_names = {"OK", "BAD\nrm -rf /"};
  CHECK(message(script) ==
        "slurm: environment variable name 'BAD\nrm -rf /' is invalid; use letters, digits and '_', not starting "
        "with a digit");
  script = nasty();
  script.attempt_offset = -1;
  CHECK(message(script) == "slurm: attempt offset -1 is negative; count earlier attempts from 0");
}

TEST_CASE("slurm script: the job carries environment values, the script never does") {
  JobSubmit job;
  job.partition = "gcp";
  job.gres = "gpu:a100:1";
  job.standard_error = "/elsewhere.err";
  job.append_output = false;
  job.requeue = false;
  BatchScript script = nasty();
  script.log_dir = "/scratch/100%/logs";
  auto ok = prepare_job(job, script, {{"HF_TOKEN", "hf_s3cr3t_value"}, {"MODE", "fast"}});
  REQUIRE(ok.ok());
  CHECK(job.script.find("hf_s3cr3t_value") == std::string::npos);
  CHECK(job.script.find("fast") == std::string::npos);
  CHECK(job.script.find("gpurun_exit=/scratch/100%/logs/rlx3k9a2b7f4q.exit\n") != std::string::npos);
  CHECK(job.standard_output == "/scratch/100%%/logs/rlx3k9a2b7f4q.log");  // Slurm reads %% as %
  CHECK(job.standard_error == "");
  CHECK(job.append_output);
  CHECK(job.requeue);
  CHECK(job.environment == std::map<std::string, std::string>{
                               {"HF_TOKEN", "hf_s3cr3t_value"}, {"MODE", "fast"}, {"PATH", "/usr/local/bin:/usr/bin:/bin"}});

  auto dialect = dialect_for("v0.0.38");
  REQUIRE(dialect.ok());
  auto body = nlohmann::json::parse((*dialect)->submit_body(job));
  CHECK(body["job"]["open_mode"] == "append");
  CHECK(body["job"]["environment"]["HF_TOKEN"] == "hf_s3cr3t_value");
  CHECK(body["script"].get<std::string>().find("hf_s3cr3t_value") == std::string::npos);

  JobSubmit with_path;
  REQUIRE(prepare_job(with_path, script, {{"PATH", "/opt/bin"}}).ok());
  CHECK(with_path.environment.at("PATH") == "/opt/bin");

  script.argv.clear();
  CHECK_FALSE(prepare_job(with_path, script, {}).ok());
}

TEST_CASE("slurm script: every run goes through gpurun node-exec, which writes the log records") {
  BatchScript script = nasty();
  script.gpurun = "/opt/gpurun bin/gpurun";
  auto text = render_batch_script(script);
  REQUIRE(text.ok());
  CHECK(*text ==
        "#!/bin/bash\n"
        "# gpurun run rlx3k9a2b7f4q. Generated; environment values come with the job submission.\n"
        "# environment: HF_TOKEN, MODE\n"
        "export GPURUN_RUN_ID=rlx3k9a2b7f4q\n"
        "export GPURUN_ATTEMPT=$(( ${SLURM_RESTART_COUNT:-0} + 1 + 2 ))\n"
        "gpurun_exit=/scratch/gpurun/logs/rlx3k9a2b7f4q.exit\n"
        "rm -f \"$gpurun_exit\"\n"
        "trap 'gpurun_signalled=1' TERM INT\n"
        "'/opt/gpurun bin/gpurun' node-exec --log /scratch/gpurun/logs/rlx3k9a2b7f4q.log -- python3 -c "
        "'import sys; print(sys.argv[1:])' 'it'\\''s' '$(touch /tmp/pwned)' '`id`' 'line1\nline2' '' "
        "'a b' '*' '$HOME' '--flag=x;y' '\\'\n"
        "gpurun_code=$?\n"
        "echo \"$gpurun_code\" >\"$gpurun_exit.$SLURM_JOB_ID.tmp\" && mv -f \"$gpurun_exit.$SLURM_JOB_ID.tmp\" "
        "\"$gpurun_exit\"\n"
        "exit \"$gpurun_code\"\n");

  BatchScript shell;
  shell.shell = "echo $MODE; exit 3";
  shell.log_dir = "/logs";
  shell.run_id = "r1";
  shell.gpurun = "gpurun";
  text = render_batch_script(shell);
  REQUIRE(text.ok());
  CHECK(text->find("\ngpurun node-exec --log /logs/r1.log -- /bin/sh -c 'echo $MODE; exit 3'\ngpurun_code=$?\n") !=
        std::string::npos);
  CHECK(text->find("=== gpurun") == std::string::npos);

  shell.binds = {{"/shared/vol", "/data"}};
  text = render_batch_script(shell);
  REQUIRE(text.ok());
  CHECK(text->find("\ngpurun node-exec --log /logs/r1.log --bind /shared/vol /data -- /bin/sh -c 'echo $MODE; exit 3'\n") !=
        std::string::npos);

  ImageRun image;
  image.runtime = "apptainer";
  image.registry = "https://reg.example";
  image.repository = "app/img";
  image.digest = "sha256:abc";
  shell.image = image;
  text = render_batch_script(shell);
  REQUIRE(text.ok());
  CHECK(text->find("\ngpurun node-exec --log /logs/r1.log -- apptainer exec --bind /shared/vol:/data "
                   "docker://reg.example/app/img@sha256:abc /bin/sh -c 'echo $MODE; exit 3'\n") != std::string::npos);

  JobSubmit job;
  REQUIRE(prepare_job(job, shell, {}).ok());
  CHECK(job.standard_output == "/logs/r1.slurm.out");
  CHECK(slurm_output_path("/logs/", "r1") == "/logs/r1.slurm.out");

  shell.gpurun.clear();
  auto missing = render_batch_script(shell);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message ==
        "slurm: run 'r1' has an image or volumes but no path of gpurun on the nodes; set node_gpurun");
}
