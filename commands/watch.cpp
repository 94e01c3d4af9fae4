#include "commands/watch.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fmt/format.h>
#include <span>
#include <vector>

#include "cloud/backend/registry.hpp"
#include "commands/runs.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

// A backend's plain output file carries gpurun's attempt markers ("=== gpurun: attempt N ===")
// and Slurm's own notes ("slurmstepd: ..."): show them as markers / on stderr, and stamp the
// lines after a marker with its attempt.
class PlainMarkers {
 public:
  std::span<const cloud::LogRecord> apply(std::span<const cloud::LogRecord> records) {
    out_.clear();
    texts_.clear();
    texts_.reserve(records.size());
    for (cloud::LogRecord record : records) {
      constexpr std::string_view prefix = "=== gpurun: attempt ";
      const std::string_view text = record.text;
      if (at_line_start_ && text.substr(0, prefix.size()) == prefix && text.size() > prefix.size() + 4 &&
          text.substr(text.size() - 4) == " ===") {
        attempt_ = std::atoi(std::string(text.substr(prefix.size())).c_str());
        if (attempt_ > 1) {
          texts_.push_back("attempt " + std::to_string(attempt_) + " started");
          out_.push_back({record.unix_ms, attempt_, cloud::LogStream::marker, true, {}});
        }
        continue;
      }
      if (at_line_start_ && text.substr(0, 12) == "slurmstepd: ") record.stream = cloud::LogStream::err;
      at_line_start_ = record.line_end;
      record.attempt = attempt_;
      out_.push_back(record);
      texts_.emplace_back();
    }
    for (std::size_t i = 0; i < out_.size(); ++i) {
      if (out_[i].stream == cloud::LogStream::marker) out_[i].text = texts_[i];
    }
    return out_;
  }

 private:
  int attempt_ = 1;
  bool at_line_start_ = true;
  std::vector<cloud::LogRecord> out_;
  std::vector<std::string> texts_;
};

// Tells why a followed local run ended when its log did not (`last_marker` is the log's last
// gpurun line): a lost run's supervisor died; any other run's reason is its final marker.
void explain_end(const cloud::Run& run, const std::string& state_dir, const std::string& last_marker, int fd) {
  if (run.status == cloud::RunStatus::succeeded || last_marker == "run " + run.status_reason) return;
  std::string text = fmt::format("gpurun: run {} {}: {}\n", run.id, cloud::to_string(run.status), run.status_reason);
  if (run.status == cloud::RunStatus::lost) {
    text += fmt::format("gpurun: its supervisor's own messages are in {}/supervisor.log; 'gpurun logs {}' shows its output; "
                        "start it again with 'gpurun run {}'\n",
                        cloud::run_dir(state_dir, run.id), run.id, run.function);
  }
  [[maybe_unused]] const auto written = ::write(fd, text.data(), text.size());
}

// Says how a followed remote run ended unless it succeeded or its log's last gpurun line said it
// already (a host's supervisor writes it, e.g. on ssh hosts): the end is told once.
void tell_remote_end(const cloud::Run& run, const std::string& last_marker, int fd) {
  if (run.status == cloud::RunStatus::succeeded || last_marker == "run " + run.status_reason) return;
  const std::string text = "gpurun: " + ended_line(run, cloud::exit_code_of(run)) + "\n";
  [[maybe_unused]] const auto written = ::write(fd, text.data(), text.size());
}

// Writes every complete record of `reader` to `sink`.
template <typename Sink>
util::Result<void> replay(cloud::LogReader& reader, Sink& sink) {
  std::vector<cloud::LogRecord> records;
  while (true) {
    records.clear();
    auto got = reader.read(records, true);
    if (!got) return got.error();
    if (records.empty()) return {};
    if (auto w = sink(records); !w) return w.error();
  }
}

}  // namespace

void WaitingLine::update(const cloud::Run& run) {
  if (run.status != cloud::RunStatus::queued || run.status_reason.rfind("waiting", 0) != 0) return clear();
  const auto now = std::chrono::steady_clock::now();
  const auto waited = util::format_duration(std::chrono::duration_cast<std::chrono::seconds>(now - since_));
  if (tty_) {
    err_ << fmt::format("\r\033[Kgpurun: {}, queued {}", run.status_reason, waited);
    err_.flush();
    shown_ = run.status_reason;
  } else if (run.status_reason != shown_ || now - last_print_ >= std::chrono::seconds(30)) {
    err_ << fmt::format("gpurun: {}, queued {}\n", run.status_reason, waited);
    shown_ = run.status_reason;
    last_print_ = now;
  }
}

void WaitingLine::clear() {
  if (shown_.empty() || !tty_) return;
  err_ << "\r\033[K";
  err_.flush();
  shown_.clear();
}

util::Result<cloud::Run> refresh_local_run(cloud::StateStore& store, const std::string& run_id) {
  const auto reconciled = store.reconcile_lost();
  auto run = store.get_run(run_id);
  if (!run) return run.error();
  if (!reconciled && !cloud::is_terminal(run->status) && !cloud::run_lock_held(store.dir(), run->id)) {
    return util::make_error(reconciled.error().code, fmt::format("run {} lost its supervisor and cannot be marked lost: {}",
                                                                 run->id, reconciled.error().message));
  }
  return run;
}

util::Result<cloud::Run> watch_run(cloud::StateStore& store, const std::string& run_id, const WatchOptions& options) {
  auto run = store.get_run(run_id);
  if (!run) return run.error();
  cloud::LogSource source{cloud::file_log_bytes(cloud::run_dir(store.dir(), run->id) + "/log"), cloud::LogFormat::records};
  if (options.backend != nullptr) {
    auto opened = options.backend->open_log(store, *run);
    if (!opened) return opened.error();
    source = std::move(*opened);
  }
  const bool remote = options.backend != nullptr && options.backend->remote();
  std::uint64_t start = 0;
  if (options.tail) {
    auto offset = cloud::tail_offset(*source.bytes, *options.tail, source.format);
    if (!offset) return offset.error();
    start = *offset;
  }
  cloud::LogReader reader(std::move(source.bytes), start, source.format);
  cloud::RenderOptions render = options.render;
  if (const char* no_color = std::getenv("NO_COLOR"); no_color != nullptr && *no_color != '\0') render.color = false;
  cloud::LogRenderer renderer(render, options.out_fd, options.err_fd);
  PlainMarkers markers;
  const bool plain = source.format == cloud::LogFormat::plain;
  std::string last_marker;
  auto sink = [&](std::span<const cloud::LogRecord> records) {
    if (options.before_output && !records.empty()) options.before_output();
    for (const auto& record : records) {
      if (record.stream == cloud::LogStream::marker) last_marker = record.text;
    }
    return renderer.write(plain ? markers.apply(records) : records);
  };
  if (!options.follow) {
    if (auto replayed = replay(reader, sink); !replayed) return replayed.error();
    if (auto f = renderer.finish(); !f) return f.error();
    return run;
  }
  cloud::Run last = *run;
  auto last_check = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  // A remote backend is polled with back-off (200 ms doubling to 1 s while nothing changes).
  auto interval = std::chrono::milliseconds(remote ? 200 : 5);
  std::optional<util::Error> refresh_error;
  auto last_poll = last_check;
  auto ended = [&]() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check < interval) {
      if (options.on_poll && remote && now - last_poll >= std::chrono::milliseconds(100)) {
        last_poll = now;
        options.on_poll(last);
      }
      return cloud::is_terminal(last.status);
    }
    last_check = now;
    if (remote) {
      auto fresh = options.backend->refresh(store, last);
      if (!fresh) {
        refresh_error = fresh.error();
        return true;
      }
      const bool changed = fresh->status != last.status || fresh->status_reason != last.status_reason ||
                           fresh->attempt != last.attempt;
      interval = changed ? std::chrono::milliseconds(200) : std::min(interval * 2, std::chrono::milliseconds(1000));
      last = *fresh;
    } else {
      auto fresh = refresh_local_run(store, last.id);
      if (!fresh) {
        refresh_error = fresh.error();
        return true;
      }
      last = *fresh;
    }
    last_poll = now;
    if (options.on_poll) options.on_poll(last);
    return cloud::is_terminal(last.status);
  };
  auto followed = cloud::follow(reader, ended, sink, std::chrono::milliseconds(5), options.stop);
  (void)renderer.finish();
  if (!followed) return followed.error();
  if (refresh_error) return *refresh_error;
  if (options.explain_end && cloud::is_terminal(last.status)) {
    if (remote) {
      tell_remote_end(last, last_marker, options.err_fd);
    } else {
      explain_end(last, store.dir(), last_marker, options.err_fd);
    }
  }
  return last;
}

}  // namespace gpurun::commands
