#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cloud/state/logs.hpp"
#include "cloud/state/state.hpp"
#include "tests/unit/read_text.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun::cloud;
using gpurun::test::TempDir;

namespace {

struct Owned {
  std::int64_t unix_ms;
  int attempt;
  char kind;  // 'o', 'E', ... as in the file
  std::string text;
};

char kind_of(const LogRecord& record) {
  const char kind = static_cast<char>(record.stream);
  return record.line_end ? kind : static_cast<char>(kind - 'a' + 'A');
}

std::vector<Owned> read_all(const std::string& path, std::uint64_t offset = 0) {
  LogReader reader(path, offset);
  std::vector<LogRecord> batch;
  std::vector<Owned> all;
  while (true) {
    auto got = reader.read(batch);
    REQUIRE(got.ok());
    if (*got == 0) break;
    for (const LogRecord& r : batch) all.push_back({r.unix_ms, r.attempt, kind_of(r), std::string(r.text)});
  }
  return all;
}

std::string kinds_and_texts(const std::vector<Owned>& records) {
  std::string result;
  for (const Owned& r : records) result += std::string(1, r.kind) + ":" + r.text + "|";
  return result;
}

void append_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << text;
}

LogWriter open_writer(const std::string& path, int attempt = 1, std::vector<std::string> secrets = {}) {
  auto writer = LogWriter::open(path, attempt, std::move(secrets));
  REQUIRE(writer.ok());
  return std::move(*writer);
}

void put(LogWriter& writer, LogStream stream, const std::string& text) {
  REQUIRE(writer.write(stream, text.data(), text.size()).ok());
}

// Renders records to a string per destination.
std::pair<std::string, std::string> render_all(const std::vector<LogRecord>& records, const RenderOptions& options) {
  std::string out, err;
  RenderState state;
  for (const LogRecord& record : records) render_record(record, options, state, out, err);
  return {out, err};
}

}  // namespace

TEST_CASE("logs: a write on a full disk names the error and the log's path") {
  auto writer = LogWriter::open("/dev/full");
  REQUIRE(writer.ok());
  auto written = writer->marker("hello");
  REQUIRE_FALSE(written.ok());
  CHECK(written.error().code == gpurun::util::ExitCode::backend);
  CHECK(written.error().message ==
        "no space left on device writing the run log at /dev/full; free space on its file system and start the run again");
}

TEST_CASE("logs: lines split across chunks are intact") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path);
  put(writer, LogStream::out, "hel");
  put(writer, LogStream::out, "lo\nwor");
  put(writer, LogStream::out, "ld\n\nend\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:hello|o:world|o:|o:end|");
  CHECK(std::regex_match(gpurun::test::read_text(path), std::regex("([0-9]{13} 1 o (hello|world||end)\n){4}")));
}

TEST_CASE("logs: stdout and stderr keep the order in which their lines end") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path);
  put(writer, LogStream::out, "a\n");
  put(writer, LogStream::err, "b\n");
  put(writer, LogStream::out, "c\nx");
  put(writer, LogStream::err, "y\n");
  put(writer, LogStream::out, "z\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:a|e:b|o:c|e:y|o:xz|");
}

TEST_CASE("logs: a partial final line is a fragment written at close") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path);
  put(writer, LogStream::out, "done\nlast");
  put(writer, LogStream::err, "oops");
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:done|");  // pending for less than partial_line_delay
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:done|O:last|E:oops|");
  CHECK(writer.close().ok());
  CHECK(!writer.write(LogStream::out, "x", 1).ok());
}

TEST_CASE("logs: a partial line pending for a while reaches followers as a fragment") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  gpurun::util::ManualClock clock;
  auto opened = LogWriter::open(path, 1, {}, clock);
  REQUIRE(opened.ok());
  LogWriter writer = std::move(*opened);
  put(writer, LogStream::out, "Epoch 1: 50%");
  clock.advance(partial_line_delay - std::chrono::milliseconds(1));
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)).empty());  // not pending long enough yet
  clock.advance(std::chrono::milliseconds(1));
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)) == "O:Epoch 1: 50%|");
  put(writer, LogStream::out, " 100%\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "O:Epoch 1: 50%|o: 100%|");
}

TEST_CASE("logs: long lines are split into records of at most max_record_text and re-joined") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  std::string line;
  for (std::size_t i = 0; line.size() < 2 * max_record_text + max_record_text / 2; ++i) line += std::to_string(i) + ",";
  LogWriter writer = open_writer(path);
  SUBCASE("in one write") { put(writer, LogStream::err, line + "\nnext\n"); }
  SUBCASE("in small chunks") {
    const std::string all = line + "\nnext\n";
    for (std::size_t at = 0; at < all.size(); at += 4093) put(writer, LogStream::err, all.substr(at, 4093));
  }
  REQUIRE(writer.close().ok());
  const std::vector<Owned> records = read_all(path);
  REQUIRE(records.size() == 4);
  CHECK(records[0].kind == 'E');
  CHECK(records[1].kind == 'E');
  CHECK(records[2].kind == 'e');
  CHECK(records[3].text == "next");
  CHECK(records[0].text.size() == max_record_text);
  CHECK(records[0].text + records[1].text + records[2].text == line);

  std::vector<LogRecord> views;
  for (const Owned& r : records) {
    views.push_back({r.unix_ms, r.attempt, LogStream::err, r.kind == 'e', r.text});
  }
  CHECK(render_all(views, {}).second == line + "\nnext\n");
}

TEST_CASE("logs: secret values are masked") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path, 1, {"hunter22", "ab", "", "abcd", "cdef"});
  put(writer, LogStream::out, "pass=hunter22 and ab\n");
  put(writer, LogStream::err, "token=hun");  // split across two chunks of one line
  put(writer, LogStream::err, "ter22!\n");
  put(writer, LogStream::out, "xabcdefx hunter22hunter22\n");  // overlapping or adjacent secrets mask their union
  REQUIRE(writer.marker("env has hunter22").ok());
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:pass=*** and ***|e:token=***!|o:x***x ***|m:env has ***|");
}

TEST_CASE("logs: a secret at a fragment boundary stays masked") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  const std::string line = std::string(max_record_text - 3, 'a') + "hunter22" + std::string(10, 'b');
  LogWriter writer = open_writer(path, 1, {"hunter22"});
  for (std::size_t at = 0; at < line.size(); at += 4096) put(writer, LogStream::out, line.substr(at, 4096));
  put(writer, LogStream::out, "\n");
  REQUIRE(writer.close().ok());
  const std::string file = gpurun::test::read_text(path);
  CHECK(file.find("hunter22") == std::string::npos);
  CHECK(file.find("hun") == std::string::npos);
  std::string joined;
  for (const Owned& r : read_all(path)) joined += r.text;
  CHECK(joined == std::string(max_record_text - 3, 'a') + "***" + std::string(10, 'b'));
}

const std::string test_pem =
    "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n-----END TEST KEY-----";

TEST_CASE("logs: a multi-line secret is masked whole however the output is split") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  const std::string output = "before\nkey=" + test_pem + " after\n" + test_pem + "\nKUpR\n-----END\nend\n";
  LogWriter writer = open_writer(path, 1, {test_pem + "\n", "s3cr3t-token"});  // newlines around a value are no part of it
  std::size_t chunk = 0;
  SUBCASE("whole") { chunk = output.size(); }
  SUBCASE("1-byte chunks") { chunk = 1; }
  SUBCASE("7-byte chunks") { chunk = 7; }
  for (std::size_t at = 0; at < output.size(); at += chunk) put(writer, LogStream::out, output.substr(at, chunk));
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:before|o:key=*** after|o:***|o:KUpR|o:-----END|o:end|");
  CHECK(gpurun::test::read_text(path).find("MIIB") == std::string::npos);
}

TEST_CASE("logs: a secret split across two writes with a flush in between stays whole") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  gpurun::util::ManualClock clock;
  auto opened = LogWriter::open(path, 1, {test_pem}, clock);
  REQUIRE(opened.ok());
  LogWriter writer = std::move(*opened);
  put(writer, LogStream::out, "pem=" + test_pem.substr(0, 40));
  clock.advance(partial_line_delay);
  REQUIRE(writer.flush().ok());
  // What may start the secret waits; the text before it reaches followers as a fragment.
  CHECK(kinds_and_texts(read_all(path)) == "O:pem=|");
  put(writer, LogStream::out, test_pem.substr(40) + "!\nnext\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "O:pem=|o:***!|o:next|");
}

TEST_CASE("logs: a line that cannot start a secret is not held back") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path, 1, {test_pem});
  put(writer, LogStream::out, "step 1\n");
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:step 1|");
  put(writer, LogStream::out, "-----BEGIN TEST KEY-----\n");  // may be the secret's start: waits
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:step 1|");
  put(writer, LogStream::out, "MIIB no\n");
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:step 1|o:-----BEGIN TEST KEY-----|o:MIIB no|");
  REQUIRE(writer.close().ok());
}

TEST_CASE("logs: a secret that is a prefix of another, and overlapping secrets") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  const std::string output = "a=abcd b=abcdefgh c=abcdefgX d=xxefghijyy e=abcdabcd f=abcdefghijkl\n";
  LogWriter writer = open_writer(path, 1, {"abcd", "abcdefgh", "efghijkl"});
  std::size_t chunk = 0;
  SUBCASE("whole") { chunk = output.size(); }
  SUBCASE("1-byte chunks") { chunk = 1; }
  SUBCASE("3-byte chunks") { chunk = 3; }
  for (std::size_t at = 0; at < output.size(); at += chunk) put(writer, LogStream::out, output.substr(at, chunk));
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:a=*** b=*** c=***efgX d=xxefghijyy e=*** f=***|");
}

TEST_CASE("logs: a secret's prefix at the end of the output is not a secret") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path, 1, {"hunter22"});
  put(writer, LogStream::out, "one\nhunt");
  put(writer, LogStream::err, "e hunter");
  REQUIRE(writer.set_attempt(2).ok());
  put(writer, LogStream::out, "er22\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:one|O:hunt|E:e hunter|o:er22|");
}

TEST_CASE("logs: an endless run of touching secrets is not held without bound") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  gpurun::util::ManualClock clock;
  auto opened = LogWriter::open(path, 1, {"abcd"}, clock);
  REQUIRE(opened.ok());
  LogWriter writer = std::move(*opened);
  std::string chunk;
  while (chunk.size() < 4096) chunk += "abcd";
  for (std::size_t written = 0; written < 2 * max_record_text; written += chunk.size()) {
    put(writer, LogStream::out, chunk);
  }
  clock.advance(partial_line_delay);
  REQUIRE(writer.flush().ok());
  CHECK(kinds_and_texts(read_all(path)) == "O:***|");
  put(writer, LogStream::out, "abcd!\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "O:***|o:!|");
}

TEST_CASE("logs: a multi-line secret in a marker is masked whole") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path, 1, {test_pem});
  REQUIRE(writer.marker("key\n" + test_pem + "\nend").ok());
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "m:key *** end|");
}

TEST_CASE("logs: attempts and markers") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  {
    LogWriter writer = open_writer(path);
    put(writer, LogStream::out, "one\npart");
    REQUIRE(writer.marker("attempt 1 failed\nwith exit code 1").ok());
    REQUIRE(writer.set_attempt(2).ok());
    CHECK(writer.attempt() == 2);
    REQUIRE(writer.marker("retrying in 2s").ok());
    put(writer, LogStream::out, "two\n");
  }  // the destructor closes
  const std::vector<Owned> records = read_all(path);
  CHECK(kinds_and_texts(records) == "o:one|m:attempt 1 failed with exit code 1|O:part|m:retrying in 2s|o:two|");
  REQUIRE(records.size() == 5);
  CHECK(records[0].attempt == 1);
  CHECK(records[2].attempt == 1);
  CHECK(records[3].attempt == 2);
  CHECK(records[4].attempt == 2);
  CHECK(std::llabs(records[4].unix_ms - gpurun::util::now_unix_ms()) < 60'000);

  // A later writer (another supervisor) appends.
  LogWriter again = open_writer(path, 3);
  put(again, LogStream::err, "three\n");
  REQUIRE(again.close().ok());
  const std::vector<Owned> more = read_all(path);
  REQUIRE(more.size() == 6);
  CHECK(more[5].attempt == 3);
  CHECK(more[5].text == "three");
}

TEST_CASE("logs: the reader ignores an incomplete trailing record until it is completed") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogReader reader(path);
  std::vector<LogRecord> batch;
  auto got = reader.read(batch);  // no file yet
  REQUIRE(got.ok());
  CHECK(*got == 0);

  append_file(path, "100 1 o hello\n200 1 e wor");
  got = reader.read(batch);
  REQUIRE(got.ok());
  REQUIRE(*got == 1);
  CHECK(batch[0].unix_ms == 100);
  CHECK(batch[0].text == "hello");
  CHECK(reader.offset() == 14);
  got = reader.read(batch);
  REQUIRE(got.ok());
  CHECK(*got == 0);

  append_file(path, "ld\ngarbage line\n300 2 m the end\n");
  got = reader.read(batch);
  REQUIRE(got.ok());
  REQUIRE(*got == 2);
  CHECK(batch[0].stream == LogStream::err);
  CHECK(batch[0].text == "world");
  CHECK(batch[1].stream == LogStream::marker);
  CHECK(batch[1].attempt == 2);
  CHECK(batch[1].text == "the end");
  CHECK(reader.skipped() == 1);
  CHECK(reader.offset() == std::filesystem::file_size(path));
  CHECK(*end_offset(path) == std::filesystem::file_size(path));
}

TEST_CASE("logs: a new writer truncates a torn record left by a crash") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  append_file(path, "100 1 o a\n200 1 o par");
  CHECK(*end_offset(path) == 10);
  LogWriter writer = open_writer(path, 2);
  put(writer, LogStream::out, "b\n");
  REQUIRE(writer.close().ok());
  CHECK(kinds_and_texts(read_all(path)) == "o:a|o:b|");
  CHECK(gpurun::test::read_text(path).substr(0, 10) == "100 1 o a\n");
}

TEST_CASE("logs: a flushed line is visible to a reader at once") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path);
  LogReader reader(path, *end_offset(path));
  put(writer, LogStream::out, "first\n");
  REQUIRE(writer.flush().ok());
  std::vector<LogRecord> batch;
  auto got = reader.read(batch);
  REQUIRE(got.ok());
  REQUIRE(*got == 1);
  CHECK(batch[0].text == "first");
}

TEST_CASE("logs: follow gets every line of a writer in another process, in order") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  const std::string done = dir.path() + "/done";
  const int lines = 300;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto writer = LogWriter::open(path);
    if (!writer) ::_exit(1);
    for (int i = 0; i < lines; ++i) {
      const std::string line = "line " + std::to_string(i) + "\n";
      if (!writer->write(i % 3 == 0 ? LogStream::err : LogStream::out, line.data(), line.size())) ::_exit(2);
      if (i % 20 == 0) {
        if (!writer->flush()) ::_exit(3);
        ::usleep(5000);
      }
    }
    put(*writer, LogStream::out, "no newline");  // ends the run with a partial line
    if (!writer->close()) ::_exit(4);
    std::ofstream(done) << "x";  // the run ended (the supervisor's status change)
    ::_exit(0);
  }
  LogReader reader(path);
  std::vector<std::string> seen;
  auto followed = follow(
      reader, [&] { return std::filesystem::exists(done); },
      [&](std::span<const LogRecord> batch) -> gpurun::util::Result<void> {
        for (const LogRecord& r : batch) seen.emplace_back(r.text);
        return {};
      },
      std::chrono::milliseconds(10));
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(followed.ok());
  REQUIRE(seen.size() == lines + 1);
  for (int i = 0; i < lines; ++i) CHECK(seen[static_cast<std::size_t>(i)] == "line " + std::to_string(i));
  CHECK(seen.back() == "no newline");
}

TEST_CASE("logs: follow after a quick run still returns every line") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  LogWriter writer = open_writer(path);
  std::string many;
  for (int i = 0; i < 20000; ++i) many += "quick " + std::to_string(i) + "\n";
  put(writer, LogStream::out, many);
  REQUIRE(writer.close().ok());
  LogReader reader(path);
  std::size_t count = 0;
  std::string last;
  auto followed = follow(
      reader, [] { return true; },
      [&](std::span<const LogRecord> batch) -> gpurun::util::Result<void> {
        count += batch.size();
        last = std::string(batch.back().text);
        return {};
      });
  REQUIRE(followed.ok());
  CHECK(count == 20000);
  CHECK(last == "quick 19999");

  std::atomic<bool> cancelled{true};
  LogReader idle(dir.path() + "/missing");
  auto stopped = follow(
      idle, [] { return false; }, [](std::span<const LogRecord>) -> gpurun::util::Result<void> { return {}; },
      std::chrono::milliseconds(1), &cancelled);
  REQUIRE(!stopped.ok());
  CHECK(stopped.error().code == gpurun::util::ExitCode::cancelled);
  CHECK(stopped.error().message == "following the log " + dir.path() + "/missing: cancelled");
}

TEST_CASE("logs: tail finds the start of the last N lines") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  CHECK(*tail_offset(path, 5) == 0);  // missing file
  append_file(path, "1 1 o a\n2 1 O b\n3 1 e c\n4 1 o d\n5 1 m e\n6 1 O f");
  // Lines: a, bd (fragment b ends with d; c between), c, e; the torn "f" does not count.
  CHECK(*tail_offset(path, 0) == 40);
  CHECK(*tail_offset(path, 1) == 32);
  CHECK(*tail_offset(path, 2) == 24);  // a line's fragments before another stream's line are cut off
  CHECK(*tail_offset(path, 3) == 8);
  CHECK(*tail_offset(path, 4) == 0);
  CHECK(*tail_offset(path, 100) == 0);
  append_file(path, "\n");  // the last record, a fragment, counts as a line
  CHECK(*tail_offset(path, 1) == 40);
  CHECK(*tail_offset(path, 2) == 32);

  // Over many 64 KiB blocks.
  const std::string big = dir.path() + "/big";
  LogWriter writer = open_writer(big);
  for (int i = 0; i < 50000; ++i) {
    const std::string line = "line " + std::to_string(i) + std::string(static_cast<std::size_t>(i % 37), '.') + "\n";
    put(writer, i % 2 ? LogStream::out : LogStream::err, line);
  }
  REQUIRE(writer.close().ok());
  for (std::size_t n : {1, 999, 1000, 4321, 49999}) {
    const std::vector<Owned> tail = read_all(big, *tail_offset(big, n));
    REQUIRE(tail.size() == n);
    CHECK(tail.front().text.substr(0, tail.front().text.find('.')) == "line " + std::to_string(50000 - n));
  }
  CHECK(*tail_offset(big, 50000) == 0);

  const std::string plain = dir.path() + "/plain";
  append_file(plain, "x\ny\nz\npartial");
  CHECK(*tail_offset(plain, 2, LogFormat::plain) == 2);
}

TEST_CASE("logs: rendering with --since, --timestamps, terminal prefix and markers") {
  const std::int64_t t = 1714566896789;  // 2024-05-01T12:34:56.789Z
  const std::vector<LogRecord> records = {
      {t - 5000, 1, LogStream::out, true, "old"},
      {t, 1, LogStream::out, false, "progress "},
      {t, 1, LogStream::err, true, "warning"},
      {t + 1, 1, LogStream::out, true, "done"},
      {t + 2, 1, LogStream::marker, true, "attempt 2 started"},
  };
  SUBCASE("raw") {
    auto [out, err] = render_all(records, {});
    CHECK(out == "old\nprogress done\n");
    CHECK(err == "warning\ngpurun: attempt 2 started\n");
  }
  SUBCASE("since") {
    RenderOptions options;
    options.since_unix_ms = t;
    auto [out, err] = render_all(records, options);
    CHECK(out == "progress done\n");
    CHECK(err == "warning\ngpurun: attempt 2 started\n");
  }
  SUBCASE("timestamps") {
    RenderOptions options;
    options.timestamps = true;
    auto [out, err] = render_all(records, options);
    CHECK(out == format_iso8601(t - 5000) + " old\n2024-05-01T12:34:56.789Z progress done\n");
    CHECK(err == "2024-05-01T12:34:56.789Z warning\n2024-05-01T12:34:56.791Z gpurun: attempt 2 started\n");
  }
  SUBCASE("terminal") {
    RenderOptions options;
    options.terminal = true;
    options.function = "train";
    auto [out, err] = render_all(records, options);
    CHECK(out == "train | old\ntrain | progress done\n");
    CHECK(err == "train | warning\n\033[2mgpurun: attempt 2 started\033[0m\n");
  }
  SUBCASE("a marker starts a fresh line") {
    const std::vector<LogRecord> partial = {
        {t, 1, LogStream::out, false, "50%"},
        {t, 1, LogStream::err, false, "Password:"},
        {t, 1, LogStream::marker, true, "timed out after 10s"},
    };
    auto [out, err] = render_all(partial, {});
    CHECK(out == "50%");
    CHECK(err == "Password:\ngpurun: timed out after 10s\n");
    RenderOptions options;
    options.terminal = true;
    auto [tty_out, tty_err] = render_all({partial[0], partial[2]}, options);
    CHECK(tty_out == "50%");
    CHECK(tty_err == "\n\033[2mgpurun: timed out after 10s\033[0m\n");
  }
}

TEST_CASE("logs: LogRenderer keeps the order of stdout and stderr on one descriptor") {
  TempDir dir;
  const std::string path = dir.path() + "/out";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back(std::string(40, static_cast<char>('a' + i % 26)) + std::to_string(i));
  std::vector<LogRecord> records;
  std::string expected;
  for (int i = 0; i < 3000; ++i) {
    // Runs of stdout lines with stderr lines in between, beyond the 64 KiB buffer.
    const std::string& text = texts[static_cast<std::size_t>(i)];
    records.push_back({1, 1, i % 7 == 0 ? LogStream::err : LogStream::out, true, text});
    expected += text + "\n";
  }
  records.push_back({1, 1, LogStream::out, false, "tail"});
  expected += "tail";
  SUBCASE("piped") {
    LogRenderer renderer({}, fd, fd);
    REQUIRE(renderer.write(std::span(records).first(1500)).ok());
    REQUIRE(renderer.write(std::span(records).subspan(1500)).ok());
    REQUIRE(renderer.finish().ok());
  }
  SUBCASE("terminal") {
    RenderOptions options;
    options.terminal = true;
    LogRenderer renderer(options, fd, fd);
    REQUIRE(renderer.write(records).ok());
    REQUIRE(renderer.finish().ok());
    expected += "\n";  // a partial line is ended on a terminal
  }
  ::close(fd);
  CHECK(gpurun::test::read_text(path) == expected);
}

TEST_CASE("logs: a plain output file reads as stdout lines") {
  TempDir dir;
  const std::string path = dir.path() + "/slurm-42.out";
  append_file(path, "epoch 1\nepoch 2\nfinal");
  LogReader reader(path, 0, LogFormat::plain, 2);
  std::vector<LogRecord> batch;
  auto got = reader.read(batch);
  REQUIRE(got.ok());
  REQUIRE(*got == 2);
  CHECK(batch[1].text == "epoch 2");
  CHECK(batch[1].attempt == 2);
  CHECK(batch[1].stream == LogStream::out);
  CHECK(std::llabs(batch[1].unix_ms - gpurun::util::now_unix_ms()) < 60'000);
  got = reader.read(batch);
  REQUIRE(got.ok());
  CHECK(*got == 0);
  got = reader.read(batch, true);
  REQUIRE(got.ok());
  REQUIRE(*got == 1);
  CHECK(batch[0].text == "final");
  CHECK(!batch[0].line_end);
}

namespace {

// Log bytes that are not a file: handed out at most `chunk` bytes per read (as a remote reader may).
class ChunkedBytes final : public LogBytes {
 public:
  ChunkedBytes(std::string data, std::size_t chunk) : data_(std::move(data)), chunk_(chunk) {}
  gpurun::util::Result<std::size_t> read(std::uint64_t offset, char* out, std::size_t max) override {
    if (offset >= data_.size()) return std::size_t{0};
    const std::size_t n = std::min({max, chunk_, data_.size() - static_cast<std::size_t>(offset)});
    std::memcpy(out, data_.data() + offset, n);
    ++reads;
    return n;
  }
  gpurun::util::Result<std::uint64_t> size() override { return data_.size(); }
  std::string describe() const override { return "remote:/x.log"; }
  int reads = 0;

 private:
  std::string data_;
  std::size_t chunk_;
};

}  // namespace

TEST_CASE("logs: readers, tails and ends work on any LogBytes, read in small pieces") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  {
    auto writer = open_writer(path);
    put(writer, LogStream::out, "one\ntwo\n");
    put(writer, LogStream::err, "three\n");
    put(writer, LogStream::out, "four");
    REQUIRE(writer.close().ok());
  }
  std::ifstream in(path, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE_FALSE(data.empty());

  auto bytes = std::make_unique<ChunkedBytes>(data, 7);
  ChunkedBytes& seen = *bytes;
  LogReader reader(std::move(bytes));
  std::vector<LogRecord> batch;
  std::string texts;
  while (true) {
    auto got = reader.read(batch, true);
    REQUIRE(got.ok());
    if (*got == 0) break;
    for (const auto& r : batch) texts += std::string(r.text) + "|";
  }
  CHECK(texts == "one|two|three|four|");
  CHECK(seen.reads > 3);  // it really read through the interface, 7 bytes at a time
  CHECK(reader.describe() == "remote:/x.log");

  ChunkedBytes tail_bytes(data, 5);
  auto from_file = tail_offset(path, 2);
  auto from_bytes = tail_offset(tail_bytes, 2);
  REQUIRE(from_file.ok());
  REQUIRE(from_bytes.ok());
  CHECK(*from_bytes == *from_file);
  CHECK(*from_bytes > 0);
  auto end = end_offset(tail_bytes);
  REQUIRE(end.ok());
  CHECK(*end == data.size());
}
