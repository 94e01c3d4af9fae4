#include "commands/watch.hpp"

#include <cstdlib>

#include "cloud/local_backend.hpp"

namespace gpurun::commands {

util::Result<cloud::Run> watch_run(cloud::StateStore& store, const std::string& run_id, const WatchOptions& options) {
  auto run = store.get_run(run_id);
  if (!run) return run.error();
  const std::string path = cloud::run_dir(store.dir(), run->id) + "/log";
  std::uint64_t start = 0;
  if (options.tail) {
    auto offset = cloud::tail_offset(path, *options.tail);
    if (!offset) return offset.error();
    start = *offset;
  }
  cloud::LogReader reader(path, start);
  cloud::RenderOptions render = options.render;
  if (const char* no_color = std::getenv("NO_COLOR"); no_color != nullptr && *no_color != '\0') render.color = false;
  cloud::LogRenderer renderer(render, options.out_fd, options.err_fd);
  auto sink = [&](std::span<const cloud::LogRecord> records) { return renderer.write(records); };
  if (!options.follow) {
    std::vector<cloud::LogRecord> records;
    while (true) {
      records.clear();
      auto got = reader.read(records, true);
      if (!got) return got.error();
      if (records.empty()) break;
      if (auto w = renderer.write(records); !w) return w.error();
    }
    if (auto f = renderer.finish(); !f) return f.error();
    return run;
  }
  cloud::Run last = *run;
  auto last_check = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto ended = [&]() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check < std::chrono::milliseconds(5)) return cloud::is_terminal(last.status);
    last_check = now;
    (void)store.reconcile_lost();
    if (auto fresh = store.get_run(last.id)) last = *fresh;
    if (options.on_poll) options.on_poll(last);
    return cloud::is_terminal(last.status);
  };
  auto followed = cloud::follow(reader, ended, sink, std::chrono::milliseconds(5), options.stop);
  (void)renderer.finish();
  if (!followed) return followed.error();
  return last;
}

}  // namespace gpurun::commands
