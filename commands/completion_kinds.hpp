#pragma once

// Shell completion (gpurun __complete) walks the CLI11 tree at run time and learns what values an
// option or positional takes from its type_name(). Command authors: give every option that takes
// a value, positionals included, one of these type names (complete_as sets them):
//   "FILE", "MANIFEST", "PATH"  a path: the shell completes files natively
//   "DIR"                       a directory
//   "FUNCTION"                  a function of the manifest in effect (-f/--file on the line, else
//                               ./gpurun.yaml) or of a deployment (APP/FUNCTION when ambiguous)
//   "RUN"                       a run id from the state, newest first
//   "GPU"                       a --gpu spec: none, any, any:N, TYPE, TYPE:N, TYPE-NNGB, lists
//   "CLOUD"                     a cloud name from the config (--config on the line respected)
//   "APP"                       a deployed app name
//   "VERSION"                   a version of the app given earlier on the line (positional "app")
//   "VOLUME"                    a volume, as NAME and APP/NAME
// For a fixed set of values add ->check(CLI::IsMember({"a", "b"})): the set completes. Any other
// type name (N, DURATION, TEXT, ...) completes nothing. Options and subcommands in the group ""
// (hidden) are never offered.

#include <string>
#include <vector>

namespace CLI {
class Option;
}

namespace gpurun::commands {

enum class ValueKind { none, file, directory, function, run, gpu, cloud, app, version, volume, choices };

struct ValueCompletion {
  ValueKind kind = ValueKind::none;
  std::vector<std::string> choices;  // kind == choices
};

// Sets `option`'s type name to the one that stands for `kind` (not for none or choices); returns it.
CLI::Option* complete_as(CLI::Option* option, ValueKind kind);

// What values `option` takes, judged from its type name and an IsMember check ("T:{a,b}").
ValueCompletion value_completion(const CLI::Option& option);

}  // namespace gpurun::commands
