#include "commands/push_progress.hpp"

#include <chrono>
#include <fmt/format.h>
#include <memory>

#include "util/units.hpp"

namespace gpurun::commands {

cloud::PushProgress push_progress(Context& ctx) {
  auto short_digest = [](const std::string& digest) { return digest.substr(0, std::min<std::size_t>(digest.size(), 19)); };
  cloud::PushProgress progress;
  if (ctx.err_is_tty) {
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    progress.on_bytes = [&ctx, last, short_digest](const std::string& label, const std::string& digest, std::uint64_t sent,
                                                   std::uint64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - *last < std::chrono::milliseconds(100) && sent < total) return;
      *last = now;
      ctx.err << fmt::format("\r\033[Kgpurun: {}: {} {} / {}", label, short_digest(digest), util::format_size(sent),
                             util::format_size(total));
      ctx.err.flush();
    };
  }
  progress.on_blob = [&ctx, short_digest](const std::string& label, const cloud::oci::Descriptor& blob,
                                          cloud::registry::BlobOutcome::How how, std::uint64_t bytes) {
    std::string what = how == cloud::registry::BlobOutcome::How::uploaded ? "uploaded " + util::format_size(bytes)
                       : how == cloud::registry::BlobOutcome::How::mounted ? std::string("mounted")
                                                                            : std::string("already there");
    ctx.err << fmt::format("{}gpurun: {}: {} ({}) {}\n", ctx.err_is_tty ? "\r\033[K" : "", label, short_digest(blob.digest),
                           util::format_size(blob.size), what);
  };
  progress.on_done = [&ctx](const std::string& line) { ctx.err << "gpurun: " << line << '\n'; };
  return progress;
}

}  // namespace gpurun::commands
