#include "cloud/backend/ssh/ssh_hosts.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloud/ssh/remote_gpurun.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using util::ExitCode;

// How many GPUs of `host` one alternative can take at most (0: none fits).
int fits(const SshHost& host, const LeaseAlternative& alternative) {
  for (const auto& slot : host.gpus) {
    if (!alternative.type.empty() && !util::iequals(alternative.type, slot.type)) continue;
    if (slot.memory_gb < alternative.min_memory_gb) continue;
    if (alternative.max_memory_gb > 0 && slot.memory_gb > alternative.max_memory_gb) continue;
    if (alternative.count <= slot.count) return alternative.count;
  }
  return 0;
}

// The fewest GPUs a run of `alternatives` needs on `host`; nullopt when the host cannot serve it.
std::optional<int> need_on(const SshHost& host, const std::vector<LeaseAlternative>& alternatives) {
  if (alternatives.empty()) return 0;
  std::optional<int> need;
  for (const auto& a : alternatives) {
    if (const int n = fits(host, a); n > 0 && (!need || n < *need)) need = n;
  }
  return need;
}

// How long GPUs found on a host are trusted before plan asks the host again.
constexpr std::chrono::hours found_gpus_ttl{1};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// <state dir>/ssh-hosts/<label>/gpus.json: the GPUs last found on a host (this client's cache).
std::string found_gpus_path(const std::string& label) {
  std::string name = label;
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  return fmt::format("{}/ssh-hosts/{}/gpus.json", default_state_dir(), name);
}

util::Error remote_failure(const HostConnection& host, const std::string& what, const RemoteResult& result) {
  std::string text = std::string(util::trim(result.err.empty() ? result.out : result.err));
  if (text.rfind("gpurun: error: ", 0) == 0) text.erase(0, 15);
  return util::make_error(ExitCode::backend, fmt::format("host {}: {} failed (exit {}): {}", host.label(), what, result.exit_code, text));
}

}  // namespace

std::string HostConnection::label() const {
  return host_.ssh.port ? fmt::format("{}:{}", host_.name, *host_.ssh.port) : host_.name;
}

int HostConnection::total_gpus() const {
  int total = 0;
  for (const auto& slot : host_.gpus) total += slot.count;
  return total;
}

util::Result<void> HostConnection::open_client() {
  if (client_) return {};
  auto client = SshClient::open(host_.ssh);
  if (!client) return client.error();
  client_ = std::move(*client);
  return {};
}

util::Result<void> HostConnection::connect() {
  if (client_ && !gpurun_path_.empty()) return {};
  if (auto opened = open_client(); !opened) return opened.error();
  auto remote = ensure_remote_gpurun(*client_);
  if (!remote) return remote.error();
  gpurun_path_ = remote->path;
  return {};
}

util::Result<RemoteResult> HostConnection::gpurun(const std::string& args, std::optional<std::string> input) {
  if (auto connected = connect(); !connected) return connected.error();
  RemoteScript script;
  // Group-writable files in the shared lease dir; the declared GPUs are the host's inventory.
  script.body = fmt::format("umask 007\nexec {} {}\n", remote_path_word(gpurun_path_), args);
  // Declared GPUs are the host's inventory; without them its gpurun probes its devices itself.
  script.env = {{"GPURUN_STATE_DIR", host_.lease_dir}};
  if (!host_.discover) script.env.emplace_back("GPURUN_LOCAL_GPUS", util::join(host_.gpus_as_written, ","));
  script.input = std::move(input);
  return client_->run(script);
}

util::Result<std::string> HostConnection::start_run(const RunSpec& spec, const SecretValues& secrets) {
  nlohmann::json request{{"spec", to_json(spec)}, {"secrets", nlohmann::json::object()}};
  for (const auto& [name, values] : secrets) {
    for (const auto& [key, value] : values) request["secrets"][name][key] = value;
  }
  auto result = gpurun("host-run --state-dir \"$GPURUN_STATE_DIR\"", request.dump());
  if (!result) return result.error();
  if (result->exit_code != 0) return remote_failure(*this, "starting the run", *result);
  auto json = nlohmann::json::parse(result->out, nullptr, false);
  if (json.is_discarded() || !json.contains("run_id")) return remote_failure(*this, "starting the run", *result);
  return json["run_id"].get<std::string>();
}

util::Result<HostStatus> HostConnection::statuses(const std::vector<std::string>& ids, bool gpu_use) {
  std::string args = "host-status --state-dir \"$GPURUN_STATE_DIR\"";
  if (gpu_use) args += " --gpu-use";
  for (const auto& id : ids) args += " " + util::shell_quote(id);
  auto result = gpurun(args);
  if (!result) return result.error();
  auto json = nlohmann::json::parse(result->out, nullptr, false);
  if (result->exit_code != 0 || json.is_discarded() || !json.is_object()) return remote_failure(*this, "asking for run status", *result);
  HostStatus status;
  status.leased = json.value("leased", 0);
  status.busy_outside = json.value("busy_outside", 0);
  const nlohmann::json runs = json.contains("runs") && json["runs"].is_object() ? json["runs"] : nlohmann::json::object();
  for (const auto& [id, run] : runs.items()) {
    if (!run.is_object()) continue;
    RemoteRunStatus r;
    r.status = parse_run_status(run.value("status", "")).value_or(RunStatus::lost);
    r.reason = run.value("reason", "");
    if (run.contains("exit_code") && run["exit_code"].is_number_integer()) r.exit_code = run["exit_code"].get<int>();
    r.gpus = run.value("gpus", "");
    r.attempt = run.value("attempt", 1);
    status.runs[id] = r;
  }
  return status;
}

util::Result<std::string> HostConnection::make_volume(const std::string& app, const std::string& volume) {
  auto result = gpurun(
      fmt::format("host-volume --state-dir \"$GPURUN_STATE_DIR\" {} {}", util::shell_quote(app), util::shell_quote(volume)));
  if (!result) return result.error();
  auto json = nlohmann::json::parse(result->out, nullptr, false);
  if (result->exit_code != 0 || json.is_discarded() || !json.is_object() || !json.contains("path") || !json["path"].is_string()) {
    return remote_failure(*this, fmt::format("making volume '{}'", volume), *result);
  }
  return json["path"].get<std::string>();
}

void HostConnection::set_gpus(const std::vector<std::string>& written, const gpu::Catalog& catalog) {
  host_.gpus.clear();
  host_.gpus_as_written.clear();
  for (const auto& text : written) {
    auto offer = gpu::parse_offer(text, catalog);
    if (!offer) continue;
    host_.gpus.push_back(*offer);
    host_.gpus_as_written.push_back(text);
  }
}

bool HostConnection::load_found_gpus(const gpu::Catalog& catalog) {
  int error_number = 0;
  auto text = util::read_file(found_gpus_path(label()), error_number);
  if (!text) return false;
  auto json = nlohmann::json::parse(*text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("offers") || !json["offers"].is_array()) return false;
  std::vector<std::string> written;
  for (const auto& offer : json["offers"]) {
    if (offer.is_string()) written.push_back(offer.get<std::string>());
  }
  set_gpus(written, catalog);
  const auto age = std::chrono::milliseconds(now_ms() - json.value("found_at_ms", std::int64_t{0}));
  return age >= std::chrono::milliseconds(0) && age < found_gpus_ttl;
}

util::Result<std::vector<std::string>> HostConnection::find_gpus(const gpu::Catalog& catalog) {
  auto result = gpurun("host-gpus");
  if (!result) return result.error();
  auto json = nlohmann::json::parse(result->out, nullptr, false);
  if (result->exit_code != 0 || json.is_discarded() || !json.is_object() || !json.contains("offers") || !json["offers"].is_array()) {
    return remote_failure(*this, "asking for its GPUs", *result);
  }
  std::vector<std::string> written, notes;
  for (const auto& offer : json["offers"]) {
    if (offer.is_string()) written.push_back(offer.get<std::string>());
  }
  if (json.contains("notes") && json["notes"].is_array()) {
    for (const auto& note : json["notes"]) {
      if (note.is_string()) notes.push_back(note.get<std::string>());
    }
  }
  set_gpus(written, catalog);
  const std::string path = found_gpus_path(label());
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  nlohmann::json cache{{"offers", written}, {"source", json.value("source", "")}, {"found_at_ms", now_ms()}};
  (void)util::write_file_atomically(path, cache.dump() + "\n");  // best effort: the next plan asks again
  return notes;
}

bool HostConnection::can_serve(const std::vector<LeaseAlternative>& alternatives) const {
  return need_on(host_, alternatives).has_value();
}

util::Result<void> HostConnection::cancel_run(const std::string& id) {
  auto result = gpurun("cancel " + util::shell_quote(id));
  if (!result) return result.error();
  if (result->exit_code != 0) return remote_failure(*this, "cancelling run " + id, *result);
  return {};
}

util::Result<std::string> HostConnection::read_log(const std::string& id, std::uint64_t offset) {
  if (auto opened = open_client(); !opened) return opened.error();
  auto bytes = client_->read_file(fmt::format("{}/runs/{}/log", host_.lease_dir, id), offset);
  if (!bytes) return bytes.error();
  return bytes->value_or("");
}

util::Result<PushReport> HostConnection::send_image(const std::string& store_dir, const BuiltImage& image) {
  if (auto connected = connect(); !connected) return connected.error();
  auto hex_of = [](const std::string& digest) { return digest.substr(digest.find(':') + 1); };
  // Each blob's local file: its own path (a base's layout), else the store's copy.
  std::vector<std::string> hexes = {hex_of(image.digest)};
  std::vector<std::string> paths = {fmt::format("{}/blobs/sha256/{}", store_dir, hexes.back())};
  for (const auto& blob : image.blobs) {
    hexes.push_back(hex_of(blob.descriptor.digest));
    paths.push_back(blob.path.empty() ? fmt::format("{}/blobs/sha256/{}", store_dir, hexes.back()) : blob.path);
  }
  RemoteScript ask;
  ask.body = fmt::format("dir={}/blobs/sha256\nfor h in {}; do [ -f \"$dir/$h\" ] || echo \"$h\"; done\n",
                         remote_path_word(host_image_cache), util::join(hexes, " "));
  auto missing = client_->run(ask);
  if (!missing) return missing.error();
  if (missing->exit_code != 0) return remote_failure(*this, "asking for image blobs", *missing);
  PushReport report;
  report.digest = image.digest;
  const std::string missing_text = "\n" + missing->out;
  for (std::size_t i = 0; i < hexes.size(); ++i) {
    const std::string& hex = hexes[i];
    if (missing_text.find("\n" + hex + "\n") == std::string::npos) {
      ++report.blobs_skipped;
      continue;
    }
    const std::string& local = paths[i];
    const int fd = ::open(local.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return util::make_error(ExitCode::backend, fmt::format("image '{}': cannot read {}: {}", image.name, local, std::strerror(errno)));
    auto sent = client_->write_file(fmt::format("{}/blobs/sha256/{}", host_image_cache, hex), fd);
    ::close(fd);
    if (!sent) return sent.error();
    report.bytes_uploaded += *sent;
    ++report.blobs_uploaded;
  }
  return report;
}

SshHosts::SshHosts(std::string cloud, const SshCloudSettings& settings, const gpu::Catalog& catalog) : cloud_(std::move(cloud)) {
  for (const auto& host : settings.hosts) {
    hosts_.push_back(std::make_unique<HostConnection>(host));
    if (host.discover) (void)hosts_.back()->load_found_gpus(catalog);
  }
}

std::vector<HostConnection*> SshHosts::all() {
  std::vector<HostConnection*> hosts;
  for (auto& host : hosts_) hosts.push_back(host.get());
  return hosts;
}

HostConnection* SshHosts::find(const std::string& label) {
  for (auto& host : hosts_) {
    if (host->label() == label) return host.get();
  }
  return nullptr;
}

util::Result<HostChoice> SshHosts::choose(const std::vector<LeaseAlternative>& alternatives,
                                          const std::function<void(const std::string&)>& warn) {
  std::optional<HostChoice> fallback;
  std::vector<std::string> passed;
  bool any_serves = false;
  for (auto& host : hosts_) {
    const auto need = need_on(host->host(), alternatives);
    if (!need) continue;
    any_serves = true;
    auto status = host->statuses({}, /*gpu_use=*/true);
    if (!status) {
      if (warn) warn(fmt::format("host {} of cloud '{}' is unreachable, skipped: {}", host->label(), cloud_, status.error().message));
      continue;
    }
    const int free = std::max(0, host->total_gpus() - status->in_use());
    if (*need == 0 || free >= *need) {
      std::string why = *need == 0 ? std::string("the first reachable host (CPU only)")
                                   : fmt::format("{} of its {} GPUs free", free, host->total_gpus());
      if (!passed.empty()) why += fmt::format("; passed over {}", util::join(passed, ", "));
      return HostChoice{host.get(), why};
    }
    passed.push_back(fmt::format("{} (all {} GPUs busy)", host->label(), host->total_gpus()));
    if (!fallback) fallback = HostChoice{host.get(), ""};
  }
  if (fallback) {
    fallback->why = fmt::format("every host with these GPUs is busy ({}); queued on the first", util::join(passed, ", "));
    return *fallback;
  }
  if (!any_serves) {
    return util::make_error(ExitCode::unschedulable, fmt::format("no host of cloud '{}' has the GPUs asked for; see 'gpurun plan'", cloud_));
  }
  return util::make_error(ExitCode::backend, fmt::format("no host of cloud '{}' that has the GPUs asked for is reachable (warnings above)", cloud_));
}

}  // namespace gpurun::cloud
