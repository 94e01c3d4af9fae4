#include "commands/confirm.hpp"

#include <fmt/format.h>

namespace gpurun::commands {

util::Result<bool> confirmed(Context& ctx, bool yes, const std::string& question, const std::string& what) {
  if (yes) return true;
  if (!ctx.in_is_tty) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("{} deletes {}; pass --yes to do it without asking", what, question));
  }
  ctx.err << fmt::format("gpurun: {} deletes {}. Go on? [y/N] ", what, question);
  ctx.err.flush();
  std::string answer;
  std::getline(ctx.in, answer);
  return !answer.empty() && (answer[0] == 'y' || answer[0] == 'Y');
}

}  // namespace gpurun::commands
