#pragma once

#include <string>
#include <vector>

namespace gpurun::commands {

// A plain text table: left-aligned columns separated by two spaces, header first.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // The rendered table, each line ending in '\n'; no trailing blanks.
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace gpurun::commands
