#include "commands/report.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/exit_code.hpp"

namespace gpurun::commands {

namespace {

// The exit code of a failure of gpurun itself: its own code, or 125 for the commands that return
// a workload's code (a timeout and a cancel keep 124 and 130; 126/127 are the workload's command).
int failure_code(const Context& ctx, util::ExitCode code) {
  if (!ctx.workload_exit_codes) return util::to_int(code);
  switch (code) {
    case util::ExitCode::timeout:
    case util::ExitCode::cancelled:
    case util::ExitCode::not_executable:
    case util::ExitCode::not_found: return util::to_int(code);
    default: return util::to_int(util::ExitCode::backend);
  }
}

// Returns the exit code; with ctx.json_errors also prints the failure as JSON on stdout.
int failed(Context& ctx, const util::Error& error, bool invalid_input) {
  const int code = failure_code(ctx, error.code);
  if (ctx.json_errors) {
    ctx.out << nlohmann::json{{"id", nullptr},
                              {"status", nullptr},
                              {"exit_code", code},
                              {"error", {{"kind", util::failure_kind(error.code, invalid_input)}, {"message", error.message}}}}
                   .dump()
            << '\n';
  }
  return code;
}

}  // namespace

bool returns_workload_code(const std::vector<std::string>& args) {
  std::size_t i = 0;
  while (i < args.size() && args[i].rfind("-", 0) == 0) i += args[i] == "--config" ? 2 : 1;  // gpurun's own options
  if (i >= args.size()) return false;
  const std::string& command = args[i];
  if (command == "run" || command == "wait" || command == "attach") return true;
  if (command != "logs") return false;
  for (std::size_t j = i + 1; j < args.size() && args[j] != "--"; ++j) {
    if (args[j] == "-f" || args[j] == "--follow") return true;
  }
  return false;
}

int report(Context& ctx, const util::Error& error) {
  ctx.err << "gpurun: error: " << error.message << '\n';
  return failed(ctx, error, false);
}

int report(Context& ctx, const util::Error& error, const std::vector<util::Diagnostic>& diagnostics) {
  if (!diagnostics.empty()) {
    ctx.err << util::format_diagnostics(diagnostics) << '\n';
    ctx.err << fmt::format("gpurun: {} error{} found\n", diagnostics.size(), diagnostics.size() == 1 ? "" : "s");
    return failed(ctx, error, true);
  }
  return report(ctx, error);
}

}  // namespace gpurun::commands
