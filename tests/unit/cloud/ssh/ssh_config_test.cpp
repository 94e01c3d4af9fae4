#include <doctest/doctest.h>

#include <algorithm>

#include "cloud/ssh/ssh_client.hpp"
#include "cloud/ssh/ssh_config.hpp"
#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/diagnostic.hpp"

using namespace gpurun;
using namespace gpurun::cloud;

namespace {

// Parses `text` (a mapping) as SSH settings; `errors` gets the formatted diagnostics.
SshSettings parse(const std::string& text, std::string& errors) {
  const auto doc = manifest::parse_yaml(text, "clouds.yaml");
  std::vector<util::Diagnostic> out;
  manifest::Checker check("clouds.yaml", out);
  SshSettings settings;
  parse_ssh_settings(check, doc.root, "clouds.lab", settings);
  errors = util::format_diagnostics(out);
  return settings;
}

}  // namespace

TEST_CASE("SSH settings parse from YAML with every key") {
  std::string errors;
  const SshSettings s = parse(
      "host: gpu1\nport: 2222\nuser: ml\nidentity_file: ~/.ssh/id_ed25519\n"
      "ssh_options: [ProxyJump=bastion, ServerAliveInterval=30]\nremote_setup: [module load slurm]\n"
      "gpurun_path: /shared/bin/gpurun\ngpurun_dir: /shared/gpurun\n",
      errors);
  CHECK(errors.empty());
  CHECK(s.host == "gpu1");
  CHECK(s.port == 2222);
  CHECK(s.user == "ml");
  CHECK(s.identity_file == "~/.ssh/id_ed25519");
  CHECK(s.ssh_options == std::vector<std::string>{"ProxyJump=bastion", "ServerAliveInterval=30"});
  CHECK(s.remote_setup == std::vector<std::string>{"module load slurm"});
  CHECK(s.gpurun_path == "/shared/bin/gpurun");
  CHECK(s.gpurun_dir == "/shared/gpurun");
}

TEST_CASE("SSH settings: bad values are reported at their positions") {
  std::string errors;
  parse("host: -oProxyCommand=x\nport: 70000\nuser: ''\nssh_options: [ProxyJump bastion]\ngpurun_path: ''\n", errors);
  CHECK(errors ==
        "clouds.yaml:1:7: error: clouds.lab.host: '-oProxyCommand=x' is not a valid host; give a name without blanks that "
        "does not start with '-'\n"
        "clouds.yaml:2:7: error: clouds.lab.port: port 70000 is out of range; give a TCP port between 1 and 65535\n"
        "clouds.yaml:3:7: error: clouds.lab.user: '' is not a valid user name; give a name without blanks that does not "
        "start with '-'\n"
        "clouds.yaml:4:15: error: clouds.lab.ssh_options[0]: 'ProxyJump bastion' is not an ssh option; write Key=Value, "
        "e.g. ServerAliveInterval=30\n"
        "clouds.yaml:5:14: error: clouds.lab.gpurun_path: the remote path is empty or holds a newline; give a path on the "
        "remote host, e.g. ~/bin/gpurun");
}

TEST_CASE("per-host SSH settings override the cloud-wide ones") {
  std::string errors;
  const SshSettings cloud = parse("user: ml\nidentity_file: ~/.ssh/lab\nssh_options: [ServerAliveInterval=30, ProxyJump=gw]\n"
                                  "remote_setup: [module load cuda]\n",
                                  errors);
  const SshSettings host = parse("host: 10.0.0.7\nport: 2222\nssh_options: [proxyjump=gw2]\ngpurun_dir: /scratch/g\n", errors);
  const SshSettings merged = merge_ssh_settings(cloud, host);
  CHECK(merged.host == "10.0.0.7");
  CHECK(merged.port == 2222);
  CHECK(merged.user == "ml");
  CHECK(merged.identity_file == "~/.ssh/lab");
  CHECK(merged.ssh_options == std::vector<std::string>{"proxyjump=gw2", "ServerAliveInterval=30"});
  CHECK(merged.remote_setup == std::vector<std::string>{"module load cuda"});
  CHECK(merged.gpurun_dir == "/scratch/g");
  CHECK_FALSE(merged.gpurun_path.has_value());
}

TEST_CASE("the ssh command line: -p/-l/-i only when set, batch mode, never accept-new") {
  SshSettings s;
  s.host = "gpu1";
  SshClientOptions options;
  options.control_dir = "/tmp/gpurun-unit-ssh";
  auto client = SshClient::open(s, options);
  REQUIRE_MESSAGE(client.ok(), (client.ok() ? "" : client.error().message));
  const auto argv = client->argv();
  CHECK(argv.back() == "exec /bin/sh -s");
  CHECK(argv[argv.size() - 2] == "gpu1");
  CHECK(argv[3] == "BatchMode=yes");
  for (const auto& arg : argv) {
    CHECK(arg != "-p");
    CHECK(arg != "-l");
    CHECK(arg != "-i");
    CHECK(arg.find("StrictHostKeyChecking") == std::string::npos);
  }
  CHECK(std::find(argv.begin(), argv.end(), "ControlPath=/tmp/gpurun-unit-ssh/%C") != argv.end());
}

TEST_CASE("ssh's own failures name the fix") {
  SshSettings s;
  s.host = "gpu1";
  s.user = "ml";
  CHECK(ssh_failure(s, "ml@gpu1: Permission denied (publickey).\n").message.find("the server refused the key") !=
        std::string::npos);
  CHECK(ssh_failure(s, "ssh: Could not resolve hostname gpu1: Name or service not known\n").message ==
        "ssh to ml@gpu1: the host is unreachable (ssh: Could not resolve hostname gpu1: Name or service not known); check "
        "`host` and `port` and that sshd runs there");
  CHECK(remote_path_word("~/a b") == "\"$HOME\"/'a b'");
}
