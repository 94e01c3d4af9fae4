#include "util/exit_code.hpp"

namespace gpurun::util {

std::string_view failure_kind(ExitCode code, bool invalid_input) {
  switch (code) {
    case ExitCode::usage: return invalid_input ? "invalid" : "usage";
    case ExitCode::unschedulable: return "unschedulable";
    case ExitCode::timeout: return "timeout";
    case ExitCode::backend: return "backend";
    case ExitCode::not_executable: return "not_executable";
    case ExitCode::not_found: return "not_found";
    case ExitCode::cancelled: return "cancelled";
    case ExitCode::ok:
    case ExitCode::failure: break;
  }
  return "internal";
}

}  // namespace gpurun::util
