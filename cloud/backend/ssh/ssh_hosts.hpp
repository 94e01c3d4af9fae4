#pragma once

// The hosts of one ssh cloud as this process talks to them: one shared SSH connection and one
// remote gpurun per host, the remote commands (host-run, host-status, cancel, the log) and the
// choice of a host for a run.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloud/backend/ssh/ssh_settings.hpp"
#include "cloud/images/image_store.hpp"
#include "cloud/plan/run_spec.hpp"
#include "cloud/ssh/ssh_client.hpp"
#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// A run as its host records it.
struct RemoteRunStatus {
  RunStatus status = RunStatus::queued;
  std::string reason;
  std::optional<int> exit_code;
  std::string gpus;
  int attempt = 1;
};

// One host-status answer: the runs asked for (missing: unknown there), the GPUs leased now and
// those processes outside gpurun use (NVML/nvidia-smi on the host).
struct HostStatus {
  std::map<std::string, RemoteRunStatus> runs;
  int leased = 0;
  int busy_outside = 0;
  int in_use() const { return leased + busy_outside; }
};

class HostConnection {
 public:
  explicit HostConnection(SshHost host) : host_(std::move(host)) {}
  // "host" or "host:port": how runs' remote ids and messages name the host.
  std::string label() const;
  const SshHost& host() const { return host_; }
  // Opens the shared connection and makes sure gpurun is on the host (once per process).
  util::Result<void> connect();
  // Opens the client only (reading files needs no gpurun there).
  util::Result<void> open_client();
  // The client; connect() first.
  const SshClient& client() const { return *client_; }
  // Starts `spec` there (spec and secrets on stdin); returns the remote run id.
  util::Result<std::string> start_run(const RunSpec& spec, const SecretValues& secrets);
  // What the host records of `ids`, and its leased GPUs, in one round trip; with `gpu_use`, also
  // the GPUs processes outside gpurun use (asks the host's driver: for choosing a host, not polls).
  util::Result<HostStatus> statuses(const std::vector<std::string>& ids, bool gpu_use = false);
  // Asks the host to cancel remote run `id`.
  util::Result<void> cancel_run(const std::string& id);
  // The remote run's log after its first `offset` bytes (empty: nothing new or no log yet): one
  // round trip through the shared connection.
  util::Result<std::string> read_log(const std::string& id, std::uint64_t offset);
  // Copies the blobs of `image` (manifest, config, layers: files of the local store `store_dir`)
  // that the host's image cache lacks into it, content-addressed: one round trip asks which are
  // missing, one write per missing blob. The report counts what was sent and skipped.
  util::Result<PushReport> send_image(const std::string& store_dir, const BuiltImage& image);
  // Makes volume `volume` of `app` on the host (under its lease dir, through its gpurun) and
  // returns its path there; it is there already when made before.
  util::Result<std::string> make_volume(const std::string& app, const std::string& volume);
  // For a host without declared GPUs: its GPUs as last found (cached under this client's state
  // dir, read once); true when found within the last hour.
  bool load_found_gpus(const gpu::Catalog& catalog);
  // Asks the host's gpurun which GPUs it has (NVML or nvidia-smi there, names mapped to the
  // catalog), keeps and caches them; returns its notes (e.g. why a probe found none).
  util::Result<std::vector<std::string>> find_gpus(const gpu::Catalog& catalog);
  // The GPUs the host has in all.
  int total_gpus() const;
  // True when the host has GPUs for one of `alternatives` (empty: CPU only, always).
  bool can_serve(const std::vector<LeaseAlternative>& alternatives) const;

 private:
  util::Result<RemoteResult> gpurun(const std::string& args, std::optional<std::string> input = std::nullopt);
  // Takes offers as written ("T4:2") as the host's GPUs; malformed ones are left out.
  void set_gpus(const std::vector<std::string>& written, const gpu::Catalog& catalog);
  SshHost host_;
  std::optional<SshClient> client_;
  std::string gpurun_path_;
};

// Where the image blobs sent over SSH go on a host (per user; `gpurun host-run` unpacks from it).
inline constexpr const char* host_image_cache = "~/.cache/gpurun/images";

// The host picked for a run and why (said to the user).
struct HostChoice {
  HostConnection* host = nullptr;
  std::string why;
};

class SshHosts {
 public:
  // Hosts without declared GPUs start with the GPUs last found there (cached), if any.
  SshHosts(std::string cloud, const SshCloudSettings& settings, const gpu::Catalog& catalog);
  // Every host, in config order.
  std::vector<HostConnection*> all();
  // The host whose label() is `label`, or null.
  HostConnection* find(const std::string& label);
  // A host that can serve `alternatives` (empty: CPU only): the first with enough free GPUs,
  // else the first reachable one (the run queues there). Unreachable hosts are skipped with a
  // warning through `warn` (may be empty).
  util::Result<HostChoice> choose(const std::vector<LeaseAlternative>& alternatives,
                                  const std::function<void(const std::string&)>& warn);

 private:
  std::string cloud_;
  std::vector<std::unique_ptr<HostConnection>> hosts_;
};

}  // namespace gpurun::cloud
