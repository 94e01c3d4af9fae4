#include "cloud/backend/slurm/slurm_api.hpp"

#include <algorithm>

#include "util/strings.hpp"

namespace gpurun::cloud::slurm {

namespace {

using nlohmann::json;
using util::ExitCode;

std::string get_string(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return "";
  }
  return it->get<std::string>();
}

std::optional<long long> get_integer(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) {
    return std::nullopt;
  }
  if (it->is_number_integer()) {
    return it->get<long long>();
  }
  if (it->is_number_float()) {
    return static_cast<long long>(it->get<double>());
  }
  return std::nullopt;
}

std::optional<json> parse_json(std::string_view body) {
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return std::nullopt;
  }
  return parsed;
}

std::string snippet(std::string_view body) {
  std::string text(util::trim(body));
  if (text.empty()) {
    return "an empty body";
  }
  if (text.size() > 200) {
    text = text.substr(0, 200) + "...";
  }
  std::replace(text.begin(), text.end(), '\n', ' ');
  return "'" + text + "'";
}

bool has_error(const std::vector<ApiError>& errors, long code) {
  return std::any_of(errors.begin(), errors.end(), [code](const ApiError& e) { return e.code == code; });
}

util::Error not_json(std::string_view what, long status, std::string_view body) {
  return util::make_error(ExitCode::backend,
                          std::string(what) + ": slurmrestd answered HTTP " + std::to_string(status) + " with " +
                              snippet(body) + " instead of JSON; check the endpoint URL and api_version");
}

util::Error rejected(std::string_view what, long status, const std::vector<ApiError>& errors) {
  std::string why = errors.empty() ? "slurmrestd answered HTTP " + std::to_string(status) + " without details"
                                   : describe_errors(errors);
  return util::make_error(ExitCode::backend,
                          std::string(what) + ": " + why + "; see slurmctld's log or ask the cluster's administrator");
}

class DialectV0038 final : public ApiDialect {
 public:
  std::string_view version() const override { return "v0.0.38"; }

  std::string submit_body(const JobSubmit& job) const override {
    json j = json::object();
    if (!job.name.empty()) j["name"] = job.name;
    if (!job.partition.empty()) j["partition"] = job.partition;
    if (!job.gres.empty()) j["gres"] = job.gres;
    if (job.time_limit_minutes) j["time_limit"] = *job.time_limit_minutes;
    if (job.cpus_per_task) j["cpus_per_task"] = *job.cpus_per_task;
    if (job.memory_per_node_mb) j["memory_per_node"] = *job.memory_per_node_mb;
    json environment = json::object();
    for (const auto& [name, value] : job.environment) {
      environment[name] = value;
    }
    if (environment.empty()) {
      environment["PATH"] = "/usr/local/bin:/usr/bin:/bin";  // v0.0.38 rejects an empty object (2127)
    }
    j["environment"] = environment;
    if (!job.current_working_directory.empty()) j["current_working_directory"] = job.current_working_directory;
    if (!job.standard_output.empty()) j["standard_output"] = job.standard_output;
    if (!job.standard_error.empty()) j["standard_error"] = job.standard_error;
    if (!job.account.empty()) j["account"] = job.account;
    if (!job.qos.empty()) j["qos"] = job.qos;
    if (!job.constraint.empty()) j["constraints"] = job.constraint;
    if (!job.signal.empty()) j["signal"] = job.signal;
    j["requeue"] = job.requeue;
    j["open_mode"] = job.append_output ? "append" : "truncate";
    if (job.extra.is_object()) {
      for (const auto& [key, value] : job.extra.items()) {
        j[key] = value;
      }
    }
    return json{{"script", job.script}, {"job", j}}.dump();
  }

  util::Result<long long> parse_submit(long status, std::string_view body) const override {
    constexpr std::string_view what = "slurm: job submission failed";
    auto parsed = parse_json(body);
    if (!parsed) {
      return not_json(what, status, body);
    }
    auto errors = errors_of(*parsed);
    auto job_id = get_integer(*parsed, "job_id");
    if (status / 100 == 2 && errors.empty() && job_id) {
      return *job_id;
    }
    if (has_error(errors, kErrorNodeConfigUnavailable)) {
      return util::make_error(ExitCode::unschedulable,
                              "slurm: job submission rejected: " + describe_errors(errors) +
                                  "; no node of the partition has that many GPUs of that type (or the CPUs and "
                                  "memory asked for): ask for what the partition offers or pick another cloud");
    }
    if (has_error(errors, kErrorInvalidPartition)) {
      return util::make_error(ExitCode::backend, "slurm: job submission rejected: " + describe_errors(errors) +
                                                     "; check the partition in the cloud's config (sinfo lists "
                                                     "the cluster's partitions)");
    }
    return rejected("slurm: job submission rejected", status, errors);
  }

  util::Result<std::optional<JobInfo>> parse_job(long status, std::string_view body) const override {
    constexpr std::string_view what = "slurm: reading the job's status failed";
    auto parsed = parse_json(body);
    if (!parsed) {
      return not_json(what, status, body);
    }
    auto errors = errors_of(*parsed);
    if (has_error(errors, kErrorInvalidJobId)) {
      return std::optional<JobInfo>();
    }
    auto jobs = parsed->find("jobs");
    if (status / 100 != 2 || !errors.empty() || jobs == parsed->end() || !jobs->is_array()) {
      return rejected(what, status, errors);
    }
    if (jobs->empty()) {
      return std::optional<JobInfo>();
    }
    return std::optional<JobInfo>(job_of((*jobs)[0]));
  }

  util::Result<std::vector<JobInfo>> parse_jobs(long status, std::string_view body) const override {
    auto jobs = answer_array("slurm: reading the jobs' status failed", status, body, "jobs");
    if (!jobs) {
      return jobs.error();
    }
    std::vector<JobInfo> out;
    for (const auto& job : *jobs) {
      if (job.is_object()) {
        out.push_back(job_of(job));
      }
    }
    return out;
  }

  util::Result<std::vector<NodeInfo>> parse_nodes(long status, std::string_view body) const override {
    auto nodes = answer_array("slurm: listing the cluster's nodes failed", status, body, "nodes");
    if (!nodes) {
      return nodes.error();
    }
    std::vector<NodeInfo> out;
    for (const auto& node : *nodes) {
      if (!node.is_object()) {
        continue;
      }
      NodeInfo info;
      info.name = get_string(node, "name");
      info.state = get_string(node, "state");
      if (auto it = node.find("partitions"); it != node.end() && it->is_array()) {
        for (const auto& partition : *it) {
          if (partition.is_string()) {
            info.partitions.push_back(partition.get<std::string>());
          }
        }
      }
      info.gres = get_string(node, "gres");
      info.gres_used = get_string(node, "gres_used");
      info.cpus = static_cast<long>(get_integer(node, "cpus").value_or(0));
      info.real_memory_mb = static_cast<long>(get_integer(node, "real_memory").value_or(0));
      out.push_back(std::move(info));
    }
    return out;
  }

  util::Result<void> parse_ping(long status, std::string_view body) const override {
    constexpr std::string_view what = "slurm: pinging slurmctld failed";
    auto parsed = parse_json(body);
    if (!parsed) {
      return not_json(what, status, body);
    }
    auto errors = errors_of(*parsed);
    if (status / 100 != 2 || !errors.empty()) {
      return rejected(what, status, errors);
    }
    auto pings = parsed->find("pings");
    if (pings != parsed->end() && pings->is_array()) {
      for (const auto& ping : *pings) {
        if (ping.is_object() && get_string(ping, "ping") == "UP") {
          return {};
        }
      }
    }
    return util::make_error(ExitCode::backend,
                            std::string(what) + ": slurmrestd answers but no slurmctld is UP; check the "
                                                "controller (scontrol ping) or ask the cluster's administrator");
  }

  util::Result<CancelOutcome> parse_cancel(long status, std::string_view body) const override {
    constexpr std::string_view what = "slurm: cancelling the job failed";
    auto parsed = parse_json(body);
    if (!parsed) {
      return not_json(what, status, body);
    }
    auto errors = errors_of(*parsed);
    if (has_error(errors, kErrorInvalidJobId)) {
      return CancelOutcome::unknown_job;
    }
    if (has_error(errors, kErrorAlreadyDone)) {
      return CancelOutcome::already_done;
    }
    if (status / 100 != 2 || !errors.empty()) {
      return rejected(what, status, errors);
    }
    return CancelOutcome::cancelled;
  }

  std::vector<ApiError> parse_errors(std::string_view body) const override {
    auto parsed = parse_json(body);
    return parsed ? errors_of(*parsed) : std::vector<ApiError>{};
  }

 private:
  // The array `key` of a successful answer with no errors, else the error saying `what` failed.
  static util::Result<json> answer_array(std::string_view what, long status, std::string_view body, const char* key) {
    auto parsed = parse_json(body);
    if (!parsed) {
      return not_json(what, status, body);
    }
    auto errors = errors_of(*parsed);
    auto array = parsed->find(key);
    if (status / 100 != 2 || !errors.empty() || array == parsed->end() || !array->is_array()) {
      return rejected(what, status, errors);
    }
    return std::move(*array);
  }

  static std::vector<ApiError> errors_of(const json& body) {
    std::vector<ApiError> out;
    auto errors = body.find("errors");
    if (errors == body.end() || !errors->is_array()) {
      return out;
    }
    for (const auto& error : *errors) {
      if (!error.is_object()) {
        continue;
      }
      ApiError e;
      // /job/submit says error_code, /job/{id} error_number, /nodes errno.
      e.code = static_cast<long>(get_integer(error, "error_code")
                                     .value_or(get_integer(error, "error_number").value_or(get_integer(error, "errno").value_or(0))));
      e.message = get_string(error, "error");
      e.description = get_string(error, "description");
      out.push_back(std::move(e));
    }
    return out;
  }

  static JobInfo job_of(const json& job) {
    JobInfo info;
    if (!job.is_object()) {
      return info;
    }
    info.job_id = get_integer(job, "job_id").value_or(0);
    info.name = get_string(job, "name");
    info.state = get_string(job, "job_state");
    info.state_reason = get_string(job, "state_reason");
    info.state_description = get_string(job, "state_description");
    info.raw_exit_code = get_integer(job, "exit_code").value_or(0);
    auto wait = decode_wait_status(info.raw_exit_code);
    info.exit_code = wait.exit_code;
    info.exit_signal = wait.signal;
    info.partition = get_string(job, "partition");
    info.nodes = get_string(job, "nodes");
    info.batch_host = get_string(job, "batch_host");
    auto time = [&job](const char* key) -> std::optional<std::int64_t> {
      auto value = get_integer(job, key);
      if (!value || *value <= 0) {
        return std::nullopt;
      }
      return *value;
    };
    info.submit_time = time("submit_time");
    info.start_time = time("start_time");
    info.end_time = time("end_time");
    info.eligible_time = time("eligible_time");
    info.restart_cnt = static_cast<int>(get_integer(job, "restart_cnt").value_or(0));
    if (auto it = job.find("gres_detail"); it != job.end() && it->is_array()) {
      for (const auto& detail : *it) {
        if (detail.is_string()) {
          info.gres_detail.push_back(detail.get<std::string>());
        }
      }
    }
    info.standard_output = get_string(job, "standard_output");
    return info;
  }
};

std::string exit_reason(const JobInfo& job) {
  if (job.exit_signal) {
    return "killed by signal " + std::to_string(*job.exit_signal);
  }
  if (job.exit_code && *job.exit_code != 0) {
    return "exit code " + std::to_string(*job.exit_code);
  }
  return "";
}

std::string with_slurm_reason(std::string reason, const JobInfo& job, std::string_view skip = "") {
  if (!job.state_reason.empty() && job.state_reason != "None" && job.state_reason != skip) {
    reason += (reason.empty() ? "" : "; ") + std::string("Slurm reason: ") + job.state_reason;
  }
  return reason;
}

}  // namespace

std::string describe_errors(const std::vector<ApiError>& errors) {
  std::vector<std::string> parts;
  for (const auto& error : errors) {
    std::string part = error.message.empty() ? "unspecified error" : error.message;
    if (error.code != 0 || !error.description.empty()) {
      part += " (Slurm error";
      if (error.code != 0) {
        part += " " + std::to_string(error.code);
      }
      if (!error.description.empty()) {
        part += (error.code != 0 ? ": " : " ") + error.description;
      }
      part += ")";
    }
    parts.push_back(part);
  }
  return util::join(parts, ", ");
}

std::string_view to_string(JobStatus status) {
  switch (status) {
    case JobStatus::queued: return "queued";
    case JobStatus::running: return "running";
    case JobStatus::succeeded: return "succeeded";
    case JobStatus::failed: return "failed";
    case JobStatus::cancelled: return "cancelled";
    case JobStatus::timeout: return "timeout";
    case JobStatus::preempted: return "preempted";
    case JobStatus::unknown: return "unknown";
  }
  return "unknown";
}

WaitStatus decode_wait_status(long long raw) {
  WaitStatus out;
  if (raw < 0 || raw > 0xffff) {
    return out;
  }
  if ((raw & 0x7f) != 0) {
    out.signal = static_cast<int>(raw & 0x7f);
  } else {
    out.exit_code = static_cast<int>((raw >> 8) & 0xff);
  }
  return out;
}

StatusView map_state(const JobInfo& job) {
  const std::string state = util::to_upper(job.state);
  auto view = [](JobStatus status, std::string reason) { return StatusView{status, std::move(reason)}; };
  if (state == "PENDING") {
    return view(JobStatus::queued, job.state_reason == "None" ? "" : job.state_reason);
  }
  if (state == "RUNNING" || state == "COMPLETING" || state == "CONFIGURING" || state == "STAGE_OUT" ||
      state == "SIGNALING" || state == "RESIZING") {
    return view(JobStatus::running, "");
  }
  if (state == "SUSPENDED" || state == "STOPPED") {
    return view(JobStatus::running, "suspended by Slurm");
  }
  if (state == "COMPLETED") {
    return view(JobStatus::succeeded, "");
  }
  if (state == "FAILED" || state == "SPECIAL_EXIT") {
    return view(JobStatus::failed, with_slurm_reason(exit_reason(job), job, "NonZeroExitCode"));
  }
  if (state == "OUT_OF_MEMORY") {
    return view(JobStatus::failed, "out of memory");
  }
  if (state == "NODE_FAIL") {
    return view(JobStatus::failed,
                with_slurm_reason(job.nodes.empty() ? "node failure" : "node failure on " + job.nodes, job));
  }
  if (state == "BOOT_FAIL") {
    return view(JobStatus::failed, with_slurm_reason("node boot failure", job));
  }
  if (state == "CANCELLED") {
    return view(JobStatus::cancelled, with_slurm_reason("", job));
  }
  if (state == "TIMEOUT") {
    return view(JobStatus::timeout, "time limit reached");
  }
  if (state == "DEADLINE") {
    return view(JobStatus::timeout, "deadline reached");
  }
  if (state == "PREEMPTED") {
    return view(JobStatus::preempted, "preempted");
  }
  if (state == "REQUEUED" || state == "REQUEUE_FED") {
    return view(JobStatus::preempted, "requeued");
  }
  if (state == "REQUEUE_HOLD") {
    return view(JobStatus::preempted, "requeued and held");
  }
  if (state == "RESV_DEL_HOLD") {
    return view(JobStatus::queued, "held: its reservation was deleted");
  }
  return view(JobStatus::unknown, "Slurm state " + (job.state.empty() ? std::string("(none)") : job.state));
}

std::vector<GresOffer> parse_gpu_gres(std::string_view gres) {
  std::vector<std::string> items;
  std::string current;
  int depth = 0;
  for (char c : gres) {
    if (c == '(') ++depth;
    if (c == ')' && depth > 0) --depth;
    if (c == ',' && depth == 0) {
      items.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  items.push_back(current);
  std::vector<GresOffer> out;
  for (auto& item : items) {
    std::string_view text = util::trim(item);
    text = text.substr(0, text.find('('));
    auto fields = util::split(text, ':');
    if (fields.empty() || fields[0] != "gpu") {
      continue;
    }
    GresOffer offer;
    if (fields.size() == 1) {
      offer.count = 1;
    } else if (fields.size() == 2) {
      if (auto count = util::parse_uint(fields[1])) {
        offer.count = static_cast<long>(*count);
      } else {
        offer.type = fields[1];
        offer.count = 1;
      }
    } else if (fields.size() == 3) {
      auto count = util::parse_uint(fields[2]);
      if (!count) {
        continue;
      }
      offer.type = fields[1];
      offer.count = static_cast<long>(*count);
    } else {
      continue;
    }
    out.push_back(std::move(offer));
  }
  return out;
}

std::map<std::string, std::vector<GresOffer>> partition_gpu_offers(const std::vector<NodeInfo>& nodes) {
  std::map<std::string, std::vector<GresOffer>> out;
  for (const auto& node : nodes) {
    auto offers = parse_gpu_gres(node.gres);
    for (const auto& partition : node.partitions) {
      auto& list = out[partition];
      for (const auto& offer : offers) {
        auto it = std::find_if(list.begin(), list.end(), [&](const GresOffer& o) { return o.type == offer.type; });
        if (it == list.end()) {
          list.push_back(offer);
        } else {
          it->count = std::max(it->count, offer.count);
        }
      }
    }
  }
  return out;
}

std::string describe_gpu_offers(const std::vector<GresOffer>& offers) {
  if (offers.empty()) {
    return "no GPUs";
  }
  std::vector<std::string> parts;
  for (const auto& offer : offers) {
    parts.push_back((offer.type.empty() ? "gpu" : offer.type) + ":" + std::to_string(offer.count));
  }
  return util::join(parts, ", ");
}

std::string ApiDialect::path(std::string_view endpoint) const {
  return "/slurm/" + std::string(version()) + std::string(endpoint);
}

std::vector<std::string> supported_api_versions() { return {"v0.0.38"}; }

util::Result<std::shared_ptr<const ApiDialect>> dialect_for(std::string_view api_version) {
  if (api_version == "v0.0.38") {
    static const auto dialect = std::make_shared<const DialectV0038>();
    return std::shared_ptr<const ApiDialect>(dialect);
  }
  return util::make_error(ExitCode::usage, "slurm: api_version '" + std::string(api_version) +
                                               "' is not supported; use " +
                                               util::join_list(supported_api_versions()) +
                                               " (slurmrestd -s openapi/v0.0.38, Slurm 22.05)");
}

}  // namespace gpurun::cloud::slurm
