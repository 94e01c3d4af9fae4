#include <doctest/doctest.h>

#include "cloud/backend/registry.hpp"
#include "cloud/backend/ssh/ssh_settings.hpp"
#include "cloud/plan/config.hpp"

using namespace gpurun;

namespace {

std::string errors_of(const std::string& text) {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config(text, "config.yaml", diagnostics);
  CHECK_FALSE(config.ok());
  return util::format_diagnostics(diagnostics);
}

}  // namespace

TEST_CASE("ssh cloud: hosts with cloud-wide SSH settings, own GPUs and lease dirs; the cloud offers their union") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config(
      "clouds:\n"
      "  lab:\n"
      "    backend: ssh\n"
      "    identity_file: ~/.ssh/id_ed25519\n"
      "    user: ml\n"
      "    hosts:\n"
      "      - {host: gpu1, gpus: [\"T4:2\"]}\n"
      "      - {host: 10.0.0.7, port: 2222, user: root, gpus: [\"A100-40GB:1\", \"T4:4\"], lease_dir: /srv/leases}\n",
      "config.yaml", diagnostics);
  REQUIRE(config.ok());
  const auto* lab = config->find_cloud("lab");
  REQUIRE(lab != nullptr);
  const auto* settings = cloud::ssh_settings_of(*lab);
  REQUIRE(settings != nullptr);
  REQUIRE(settings->hosts.size() == 2);
  CHECK(settings->hosts[0].ssh.host == "gpu1");
  CHECK(settings->hosts[0].ssh.user == "ml");
  CHECK(settings->hosts[0].ssh.identity_file == "~/.ssh/id_ed25519");
  CHECK(settings->hosts[0].lease_dir == "/var/lib/gpurun/leases");
  CHECK(settings->hosts[1].ssh.port == 2222);
  CHECK(settings->hosts[1].ssh.user == "root");
  CHECK(settings->hosts[1].lease_dir == "/srv/leases");
  CHECK(settings->hosts[1].gpus_as_written == std::vector<std::string>{"A100-40GB:1", "T4:4"});
  REQUIRE(lab->gpus.size() == 2);
  CHECK(lab->gpus[0].type == "T4");
  CHECK(lab->gpus[0].count == 4);
  CHECK(lab->gpus[1].type == "A100");
  CHECK(lab->gpus[1].memory_gb == 40);
  CHECK(cloud::make_backend("ssh", lab).ok());
}

TEST_CASE("ssh cloud: bad hosts, lease dirs and GPUs get positions and fixes") {
  CHECK(errors_of("clouds:\n  lab:\n    backend: ssh\n") ==
        "config.yaml:3:5: error: clouds.lab: missing required key 'hosts' (the GPU servers, e.g. hosts: [{host: gpu1, gpus: "
        "[\"T4:2\"]}])");
  CHECK(errors_of("clouds:\n  lab:\n    backend: ssh\n    lease_dir: leases\n    hosts:\n      - {host: gpu1, gpus: [T4]}\n") ==
        "config.yaml:4:16: error: clouds.lab.lease_dir: lease_dir 'leases' must be an absolute path on the host, e.g. "
        "/var/lib/gpurun/leases");
  CHECK(errors_of("clouds:\n  lab:\n    backend: ssh\n    gpus: [T4]\n    hosts:\n      - {host: gpu1, gpus: [T4]}\n") ==
        "config.yaml:4:11: error: clouds.lab.gpus: an ssh cloud's GPUs are its hosts' GPUs; give 'gpus' on each host (or "
        "leave them out there to have them found on the host)");
  CHECK(errors_of("clouds:\n  lab:\n    backend: ssh\n    hosts:\n      - {host: gpu1, gpus: [T4], partition: p}\n") ==
        "config.yaml:5:34: error: clouds.lab.hosts[0].partition: unknown key 'partition'; allowed keys here: host, port, user, "
        "identity_file, ssh_options, remote_setup, gpurun_path, gpurun_dir, gpus, lease_dir");
  CHECK(errors_of("clouds:\n  lab:\n    backend: ssh\n    endpoint: x\n    hosts:\n      - {host: gpu1, gpus: [T4]}\n") ==
        "config.yaml:4:5: error: clouds.lab.endpoint: unknown key 'endpoint'; allowed keys here: backend, registry, gpus, "
        "gpurun_dir, gpurun_path, hosts, identity_file, lease_dir, port, remote_setup, ssh_options, user");
}

TEST_CASE("ssh cloud: a host without gpus has them found on the host; the cloud offers only the declared ones") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config(
      "clouds:\n  lab:\n    backend: ssh\n    hosts:\n      - {host: gpu1}\n      - {host: gpu2, gpus: [\"T4:2\"]}\n",
      "config.yaml", diagnostics);
  REQUIRE(config.ok());
  const auto* lab = config->find_cloud("lab");
  REQUIRE(lab != nullptr);
  const auto* settings = cloud::ssh_settings_of(*lab);
  REQUIRE(settings != nullptr);
  CHECK(settings->hosts[0].discover);
  CHECK(settings->hosts[0].gpus.empty());
  CHECK_FALSE(settings->hosts[1].discover);
  REQUIRE(lab->gpus.size() == 1);
  CHECK(lab->gpus[0].type == "T4");
}
