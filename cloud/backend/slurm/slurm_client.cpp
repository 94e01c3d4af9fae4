#include "cloud/backend/slurm/slurm_client.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "cloud/net/http.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud::slurm {

namespace {

using util::ExitCode;

std::string current_user() {
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') {
    return user;
  }
  if (const passwd* entry = ::getpwuid(::getuid()); entry != nullptr && entry->pw_name != nullptr) {
    return entry->pw_name;
  }
  return "";
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

// The reason inside http's "cannot reach URL: REASON; check that ..." (or the whole message).
std::string transport_reason(const std::string& message) {
  std::string_view text = message;
  if (starts_with(text, "cannot reach ")) {
    auto colon = text.find(": ");
    auto check = text.rfind("; check that");
    if (colon != std::string_view::npos) {
      text = text.substr(colon + 2, check == std::string_view::npos || check < colon ? std::string_view::npos : check - colon - 2);
    }
  }
  return std::string(text);
}

}  // namespace

Client::Client(ClientOptions options, std::shared_ptr<const ApiDialect> dialect)
    : options_(std::move(options)), dialect_(std::move(dialect)), http_(std::make_unique<http::Client>()) {}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

util::Result<Client> Client::open(const ClientOptions& options) {
  auto dialect = dialect_for(options.api_version);
  if (!dialect) {
    return dialect.error();
  }
  Client client(options, *dialect);
  const std::string& endpoint = options.endpoint;
  if (starts_with(endpoint, "unix:")) {
    std::string path = endpoint.substr(5);
    if (starts_with(path, "//")) {
      path = path.substr(2);
    }
    if (path.empty() || path[0] != '/') {
      return util::make_error(ExitCode::usage, "slurm: endpoint '" + endpoint +
                                                   "' names no absolute socket path; write unix:///path/to/slurmrestd.sock");
    }
    client.socket_ = path;
    client.base_url_ = "http://localhost";
    return client;
  }
  if (!starts_with(endpoint, "http://") && !starts_with(endpoint, "https://")) {
    return util::make_error(ExitCode::usage, "slurm: endpoint '" + endpoint +
                                                 "' is neither unix:///path.sock nor http(s)://host:port; fix the "
                                                 "cloud's endpoint in the config");
  }
  client.base_url_ = endpoint;
  while (!client.base_url_.empty() && client.base_url_.back() == '/') {
    client.base_url_.pop_back();
  }
  const char* token = std::getenv(options.token_env.c_str());
  std::string value = token != nullptr ? std::string(util::trim(token)) : "";
  if (starts_with(value, "SLURM_JWT=")) {  // pasted from `scontrol token` as printed
    value = value.substr(10);
  }
  if (value.empty()) {
    return util::make_error(ExitCode::backend, "slurm: no token for " + endpoint + ": $" + options.token_env +
                                                   " is not set; run `scontrol token lifespan=86400` on the "
                                                   "cluster and export " + options.token_env + "=<token>");
  }
  client.token_ = value;
  if (client.options_.user.empty()) {
    client.options_.user = current_user();
  }
  return client;
}

util::Result<Client::Reply> Client::call(const std::string& method, const std::string& endpoint_path,
                                         const std::string& body) {
  http::Request request;
  request.method = method;
  request.url = base_url_ + dialect_->path(endpoint_path);
  request.unix_socket = socket_;
  request.timeout_ms = options_.timeout_ms;
  request.ca_file = options_.ca_file;
  request.headers.emplace_back("Accept", "application/json");
  if (!body.empty()) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body;
  }
  if (socket_.empty()) {
    request.headers.emplace_back("X-SLURM-USER-NAME", options_.user);
    request.headers.emplace_back("X-SLURM-USER-TOKEN", token_);
  }
  auto response = http_->perform(request);
  if (!response) {
    std::string reason = transport_reason(response.error().message);
    if (!socket_.empty()) {
      // curl describes the socket as "localhost port 80": keep only its last words.
      std::error_code error;
      if (!std::filesystem::exists(socket_, error)) {
        reason = "the socket does not exist";
      } else if (auto colon = reason.rfind(": "); colon != std::string::npos) {
        reason = reason.substr(colon + 2);
      }
    }
    return util::make_error(ExitCode::backend, "slurm: cannot reach slurmrestd at " + options_.endpoint + ": " + reason +
                                                   "; check that slurmrestd runs there and the cloud's endpoint is right");
  }
  if (response->status == 401 || response->status == 403) {
    std::string status = "HTTP " + std::to_string(response->status);
    if (!socket_.empty()) {
      return util::make_error(ExitCode::backend, "slurm: slurmrestd at " + options_.endpoint + " refused this user (" +
                                                     status + "); a socket slurmrestd (rest_auth/local) serves only its "
                                                     "own user: use the cluster's JWT endpoint instead");
    }
    return util::make_error(ExitCode::backend, "slurm: slurmrestd at " + options_.endpoint +
                                                   " refused the credentials of user '" + options_.user + "' (" +
                                                   status + "); check that $" + options_.token_env +
                                                   " holds a current token for that user (scontrol token "
                                                   "lifespan=86400) and that `user` in the config is right");
  }
  return Reply{response->status, std::move(response->body)};
}

util::Error Client::explain(const Reply& reply, util::Error error) const {
  if (!socket_.empty() || error.code != ExitCode::backend || reply.status != 500) {
    return error;
  }
  auto errors = dialect_->parse_errors(reply.body);
  bool refused = std::any_of(errors.begin(), errors.end(), [](const ApiError& e) { return e.code == -1 || e.code == 5005; });
  if (!refused) {
    return error;
  }
  return util::make_error(ExitCode::backend, "slurm: slurmrestd at " + options_.endpoint +
                                                 " could not act for user '" + options_.user + "' on slurmctld: " +
                                                 describe_errors(errors) + "; check that $" + options_.token_env +
                                                 " holds a current token for that user (scontrol token "
                                                 "lifespan=86400); if it does, check the controller (scontrol ping)");
}

util::Result<void> Client::ping() {
  auto reply = call("GET", "/ping");
  if (!reply) {
    return reply.error();
  }
  auto ok = dialect_->parse_ping(reply->status, reply->body);
  if (!ok) {
    return explain(*reply, ok.error());
  }
  return ok;
}

util::Error unschedulable_error(const JobSubmit& job, const std::string& why, const std::vector<NodeInfo>* nodes) {
  std::string asked = job.gres.empty() ? "the job" : "gres " + job.gres;
  std::string partition = job.partition.empty() ? "the default partition" : "partition '" + job.partition + "'";
  if (nodes == nullptr) {
    return util::make_error(ExitCode::unschedulable, "slurm: " + partition + " cannot run " + asked + ": " + why +
                                                         "; ask for GPUs the partition has (sinfo -o '%P %G' lists them)");
  }
  auto offers = partition_gpu_offers(*nodes);
  std::string offered;
  if (!job.partition.empty()) {
    offered = "it offers at most " + describe_gpu_offers(offers[job.partition]) + " per node";
  } else {
    std::vector<std::string> parts;
    for (const auto& [name, list] : offers) {
      parts.push_back(name + ": " + describe_gpu_offers(list));
    }
    offered = "per node the partitions offer " + util::join(parts, "; ");
  }
  return util::make_error(ExitCode::unschedulable, "slurm: " + partition + " cannot run " + asked + ": " + why +
                                                       "; " + offered + ": ask for that or pick another cloud");
}

util::Result<long long> Client::submit(const JobSubmit& job) {
  auto reply = call("POST", "/job/submit", dialect_->submit_body(job));
  if (!reply) {
    return reply.error();
  }
  auto id = dialect_->parse_submit(reply->status, reply->body);
  if (id) {
    return id;
  }
  if (id.error().code != ExitCode::unschedulable) {
    return explain(*reply, id.error());
  }
  // Say what the cluster offers instead.
  auto errors = dialect_->parse_errors(reply->body);
  std::string why = errors.empty() ? "Slurm rejected it" : errors[0].message;
  if (!errors.empty() && errors[0].code != 0) {
    why += " (Slurm error " + std::to_string(errors[0].code) + ")";
  }
  auto nodes = this->nodes();
  return unschedulable_error(job, why, nodes ? &*nodes : nullptr);
}

util::Result<std::optional<JobInfo>> Client::job(long long job_id) {
  auto reply = call("GET", "/job/" + std::to_string(job_id));
  if (!reply) {
    return reply.error();
  }
  auto job = dialect_->parse_job(reply->status, reply->body);
  if (!job) {
    return explain(*reply, job.error());
  }
  return job;
}

util::Result<CancelOutcome> Client::cancel(long long job_id) {
  auto reply = call("DELETE", "/job/" + std::to_string(job_id));
  if (!reply) {
    return reply.error();
  }
  auto outcome = dialect_->parse_cancel(reply->status, reply->body);
  if (!outcome) {
    return explain(*reply, outcome.error());
  }
  return outcome;
}

util::Result<std::vector<NodeInfo>> Client::nodes() {
  auto reply = call("GET", "/nodes");
  if (!reply) {
    return reply.error();
  }
  auto nodes = dialect_->parse_nodes(reply->status, reply->body);
  if (!nodes) {
    return explain(*reply, nodes.error());
  }
  return nodes;
}

}  // namespace gpurun::cloud::slurm
