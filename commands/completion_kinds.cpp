#include "commands/completion_kinds.hpp"

#include <CLI/CLI.hpp>

#include "util/strings.hpp"

namespace gpurun::commands {

CLI::Option* complete_as(CLI::Option* option, ValueKind kind) {
  switch (kind) {
    case ValueKind::file: return option->type_name("FILE");
    case ValueKind::directory: return option->type_name("DIR");
    case ValueKind::function: return option->type_name("FUNCTION");
    case ValueKind::run: return option->type_name("RUN");
    case ValueKind::gpu: return option->type_name("GPU");
    case ValueKind::cloud: return option->type_name("CLOUD");
    case ValueKind::app: return option->type_name("APP");
    case ValueKind::version: return option->type_name("VERSION");
    case ValueKind::volume: return option->type_name("VOLUME");
    case ValueKind::none:
    case ValueKind::choices: break;
  }
  return option;
}

ValueCompletion value_completion(const CLI::Option& option) {
  const std::string full = option.get_type_name();
  ValueCompletion out;
  // Validators append ":<description>"; IsMember's is "{a,b,c}".
  const auto open = full.find(":{");
  if (open != std::string::npos && full.back() == '}') {
    out.kind = ValueKind::choices;
    out.choices = util::split(std::string_view(full).substr(open + 2, full.size() - open - 3), ',');
    return out;
  }
  const std::string base = full.substr(0, full.find(':'));
  if (base == "FILE" || base == "MANIFEST" || base == "PATH") out.kind = ValueKind::file;
  else if (base == "DIR") out.kind = ValueKind::directory;
  else if (base == "FUNCTION") out.kind = ValueKind::function;
  else if (base == "RUN") out.kind = ValueKind::run;
  else if (base == "GPU") out.kind = ValueKind::gpu;
  else if (base == "CLOUD") out.kind = ValueKind::cloud;
  else if (base == "APP") out.kind = ValueKind::app;
  else if (base == "VERSION") out.kind = ValueKind::version;
  else if (base == "VOLUME") out.kind = ValueKind::volume;
  return out;
}

}  // namespace gpurun::commands
