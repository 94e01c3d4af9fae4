// libFuzzer target: the run log reader (cloud::LogReader on gpurun's record format and on plain
// files, tail_offset, end_offset, render_record). scripts/fuzz logs SECONDS.
// Invariants: records never hold a newline; printing the records and reading them back gives the
// same records; reading from tail_offset gives a suffix of all records; the reader stops at the
// last complete record (end_offset); a plain file reads back byte for byte; piped stdout is the
// records' text.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/state/logs.hpp"
#include "fuzz_fail.hpp"

namespace {

using gpurun::fuzz::fail;
namespace cloud = gpurun::cloud;

struct Owned {
  std::int64_t unix_ms;
  int attempt;
  cloud::LogStream stream;
  bool line_end;
  std::string text;
  bool operator==(const Owned&) const = default;
};

const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/gpurun-logs-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) fail("cannot create a scratch directory");
    return pattern;
  }();
  return dir;
}

void write_file(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot write a scratch file");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) fail("cannot write a scratch file");
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

std::vector<Owned> read_all(cloud::LogReader& reader) {
  std::vector<Owned> all;
  std::vector<cloud::LogRecord> batch;
  while (true) {
    auto got = reader.read(batch, true);
    if (!got.ok()) fail("LogReader::read failed on a readable file");
    if (*got == 0) break;
    for (const auto& r : batch) all.push_back({r.unix_ms, r.attempt, r.stream, r.line_end, std::string(r.text)});
  }
  return all;
}

std::string print(const std::vector<Owned>& records) {
  std::string out;
  for (const auto& r : records) {
    const char kind = static_cast<char>(r.stream);
    out += std::to_string(r.unix_ms) + ' ' + std::to_string(r.attempt) + ' ' +
           static_cast<char>(r.line_end ? kind : kind - 'a' + 'A') + ' ' + r.text + '\n';
  }
  return out;
}

void check_records(const std::string& path, std::string_view text) {
  cloud::LogReader reader(path);
  const auto records = read_all(reader);
  for (const auto& r : records) {
    if (r.text.find('\n') != std::string::npos) fail("records: a newline inside a record");
    if (r.unix_ms < 0 || r.attempt < 0) fail("records: a negative time or attempt");
  }
  const auto end = cloud::end_offset(path);
  if (!end.ok() || reader.offset() != *end || *end > text.size()) fail("records: the reader did not stop at end_offset");
  if (*end > 0 && text[*end - 1] != '\n') fail("records: end_offset is not after a newline");

  const std::string again_path = path + ".printed";
  write_file(again_path, print(records));
  cloud::LogReader again(again_path);
  if (read_all(again) != records) fail("records: read(print(records)) != records");

  for (std::size_t lines : {1u, 3u, 100u}) {
    const auto tail = cloud::tail_offset(path, lines);
    if (!tail.ok() || *tail > *end || (*tail > 0 && text[*tail - 1] != '\n')) fail("tail_offset: not a record start");
    cloud::LogReader from(path, *tail);
    const auto suffix = read_all(from);
    if (suffix.size() > records.size() ||
        !std::equal(suffix.begin(), suffix.end(), records.end() - static_cast<std::ptrdiff_t>(suffix.size()))) {
      fail("tail_offset: reading from it is not a suffix of the records");
    }
  }

  std::vector<cloud::LogRecord> views;
  for (const auto& r : records) views.push_back({r.unix_ms, r.attempt, r.stream, r.line_end, r.text});
  cloud::RenderOptions options;
  cloud::RenderState state;
  std::string out, err, expected;
  for (const auto& v : views) {
    (void)cloud::render_record(v, options, state, out, err);
    if (v.stream == cloud::LogStream::out) expected += std::string(v.text) + (v.line_end ? "\n" : "");
  }
  if (out != expected) fail("render: piped stdout is not the records' text");
}

void check_plain(const std::string& path, std::string_view text) {
  cloud::LogReader reader(path, 0, cloud::LogFormat::plain, 2);
  std::string joined;
  for (const auto& r : read_all(reader)) {
    if (r.attempt != 2 || r.stream != cloud::LogStream::out) fail("plain: a record with another attempt or stream");
    joined += r.text + (r.line_end ? "\n" : "");
  }
  if (joined != text) fail("plain: the records are not the file's bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string path = scratch_dir() + "/log";
  write_file(path, text);
  check_records(path, text);
  check_plain(path, text);
  return 0;
}
