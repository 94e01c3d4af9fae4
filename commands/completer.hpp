#pragma once

// `gpurun __complete WORD...`: the candidates for the last word (the one being completed, maybe
// empty), found by walking the CLI11 tree at run time (see commands/completion_kinds.hpp for how an
// option declares its values). The shell scripts in completions/ speak this protocol.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace gpurun::commands {

struct Candidate {
  std::string value;
  std::string description;  // may be empty
};

struct Completion {
  bool files = false;        // the shell completes paths natively (no candidates)
  bool directories = false;  // the shell completes directories natively (no candidates)
  bool keep_order = false;   // candidates are ordered (runs newest first): the shell must not sort
  std::vector<Candidate> candidates;
};

// The completion of words.back() after the words before it (the program name excluded; an empty
// list completes an empty word). Never throws and never prints: a broken manifest, config or
// state contributes no candidates.
Completion complete(CLI::App& root, const std::vector<std::string>& words);

// The wire format: a first line ":" followed by comma-separated directives (files, dirs, nosort),
// then one line per candidate, "VALUE" or "VALUE\tDESCRIPTION".
std::string format_completion(const Completion& completion);

}  // namespace gpurun::commands
