#pragma once

// A slurmrestd client: one endpoint (unix socket with local auth, or http(s) with JWT), one
// ApiDialect. Tokens are read from the environment and never appear in messages.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloud/backend/slurm/slurm_api.hpp"
#include "util/result.hpp"

namespace gpurun::cloud::http {
class Client;
}

namespace gpurun::cloud::slurm {

struct ClientOptions {
  std::string endpoint;                 // unix:///run/slurmrestd.sock or http(s)://host:port
  std::string api_version = "v0.0.38";
  std::string user;                     // X-SLURM-USER-NAME over http(s); empty = $USER
  std::string token_env = "SLURM_JWT";  // X-SLURM-USER-TOKEN over http(s) comes from this variable
  std::string ca_file;                  // extra CA bundle for https
  long timeout_ms = 30'000;             // per request
};

// The error for an impossible request `job` that Slurm refused with `why`: what the job's partition
// (or, without one, every partition) offers per node, from `nodes` when known (ExitCode::unschedulable).
util::Error unschedulable_error(const JobSubmit& job, const std::string& why, const std::vector<NodeInfo>* nodes);

class Client {
 public:
  // Checks the endpoint form and api_version (usage errors) and, for http(s), that the token
  // variable is set (ExitCode::backend). Connects lazily.
  static util::Result<Client> open(const ClientOptions& options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // GET /ping: ok when slurmctld answers UP.
  util::Result<void> ping();
  // POST /job/submit: the job id. An impossible request is ExitCode::unschedulable and names
  // what the partition's nodes offer.
  util::Result<long long> submit(const JobSubmit& job);
  // GET /job/{id}; nullopt when Slurm does not know the id (or forgot it, MinJobAge after the end).
  util::Result<std::optional<JobInfo>> job(long long job_id);
  // DELETE /job/{id} (SIGKILL by slurmrestd's default).
  util::Result<CancelOutcome> cancel(long long job_id);
  // GET /nodes.
  util::Result<std::vector<NodeInfo>> nodes();

  const ApiDialect& dialect() const { return *dialect_; }
  // The endpoint as configured, for messages.
  const std::string& endpoint() const { return options_.endpoint; }

 private:
  struct Reply {
    long status = 0;
    std::string body;
  };
  Client(ClientOptions options, std::shared_ptr<const ApiDialect> dialect);
  // Over JWT, slurmctld refusing the token comes back as HTTP 500 with Slurm error -1 or 5005.
  util::Error explain(const Reply& reply, util::Error error) const;
  util::Result<Reply> call(const std::string& method, const std::string& endpoint_path, const std::string& body = "");

  ClientOptions options_;
  std::shared_ptr<const ApiDialect> dialect_;
  std::string socket_;    // unix socket path, or empty
  std::string base_url_;  // "http://localhost" for sockets, else the endpoint without trailing '/'
  std::string token_;
  std::unique_ptr<http::Client> http_;
};

}  // namespace gpurun::cloud::slurm
