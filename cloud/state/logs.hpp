#pragma once

// Run logs: <run dir>/log holds a run's stdout, stderr and gpurun's own markers as records, one per
// line, appended by the run's supervisor (LogWriter) and read, replayed or followed live by any
// number of other processes (LogReader, follow, LogRenderer).
//
// Record format (bytes; one record per line):
//   <unix_ms> <attempt> <kind> <text>\n
// unix_ms: decimal milliseconds since the Unix epoch when the line was received; attempt: decimal,
// from 1; kind: 'o' stdout, 'e' stderr, 'm' gpurun marker ("attempt 2 started", "retrying in 2s").
// The upper-case kinds 'O', 'E', 'M' are fragments: the text continues in the next record of the
// same stream with no newline in between (a line longer than max_record_text, a partial line pending
// for a while, or a final line without a newline). text is raw bytes without the newline.
// A record is complete only with its '\n': readers never return a trailing incomplete record (a
// writer that crashed mid-write, or one still writing); a new LogWriter truncates such a torn tail.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/clock.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

enum class LogStream : char { out = 'o', err = 'e', marker = 'm' };

// The longest text one record holds before a line is split into fragments (bounded memory).
inline constexpr std::size_t max_record_text = 1 << 20;
// A partial line (no newline yet) pending this long is written as a fragment by flush(), so that
// prompts and progress bars reach followers.
inline constexpr std::chrono::milliseconds partial_line_delay{1000};

// One parsed record. `text` points into the reader's buffer: valid until its next read().
struct LogRecord {
  std::int64_t unix_ms = 0;
  int attempt = 1;
  LogStream stream = LogStream::out;
  bool line_end = true;  // false for a fragment: the line continues in the stream's next record
  std::string_view text;
};

// Turns a workload's output into records, masking secrets in the byte stream: the part of
// LogWriter that does not touch the file, for backends that build a run's records in memory (from
// a pod's log) with the times their source gives. Single-threaded.
class LogEncoder {
 public:
  // Every occurrence of a non-empty value of `secrets` (without leading and trailing newlines)
  // becomes "***" (see write()).
  explicit LogEncoder(int attempt = 1, std::vector<std::string> secrets = {});

  // Takes `data` the workload wrote on `stream` (out or err) at `unix_ms`. Secrets are masked in the
  // byte stream, across lines and writes: each occurrence (overlapping or adjacent ones joined)
  // becomes "***", so a multi-line value leaves one line. Bytes that may start a secret (at most the
  // longest one minus a byte) wait for the next write; the rest are split at newlines: complete
  // lines become records stamped with `unix_ms` and the attempt, a partial line waits for its end
  // (max_record_text bounds it).
  void write(LogStream stream, std::string_view data, std::int64_t unix_ms);
  // Records a gpurun marker line (masked as well; newlines become spaces).
  void marker(std::string_view text, std::int64_t unix_ms);
  // Ends the current attempt's partial lines (as fragments) and stamps later records with `attempt`.
  void set_attempt(int attempt, std::int64_t unix_ms);
  int attempt() const { return attempt_; }
  // Partial lines pending for partial_line_delay at `unix_ms` become fragments.
  void flush_partial_lines(std::int64_t unix_ms);
  // Passes on everything held (bytes that may start a secret, partial lines as fragments).
  void end(std::int64_t unix_ms);

  // The records built and not cleared yet (complete lines of the record format).
  const std::string& records() const { return buffer_; }
  // When the oldest of records() was built (meaningless while it is empty).
  std::int64_t oldest_record_ms() const { return oldest_buffered_ms_; }
  void clear_records() { buffer_.clear(); }

 private:
  // One output stream's bytes on their way to records.
  struct Stream {
    std::string raw;            // received, not masked yet: they may start a secret
    std::string line;           // masked text of the current line, no record yet
    std::int64_t since_ms = 0;  // when `line` got its first byte
    bool masked_end = false;    // the text masked so far ends with "***" (an adjacent secret joins it)
  };
  void refresh_header(std::int64_t unix_ms);
  void emit(LogStream stream, std::string_view text, bool line_end);
  void emit_line(LogStream stream, std::string_view text, bool line_end);
  void take(LogStream stream, std::string_view masked);
  void release(LogStream stream, bool everything);
  void end_stream(LogStream stream);
  std::size_t first_undecided(std::string_view raw) const;
  std::size_t safe_cut(std::string_view raw, bool everything);
  void find_spans(std::string_view text);
  std::string_view mask(std::string_view text, bool& masked_end);

  int attempt_ = 1;
  std::vector<std::string> secrets_;
  std::size_t longest_secret_ = 0;
  Stream streams_[2];
  std::string buffer_, masked_, header_;
  std::vector<std::pair<std::size_t, std::size_t>> spans_;  // secret occurrences (joined), scratch
  std::int64_t header_ms_ = -1, now_ms_ = 0, oldest_buffered_ms_ = 0;
};

// Appends records to a log file (a LogEncoder's, stamped from a clock). Single-threaded; one
// writer per file at a time.
class LogWriter {
 public:
  // Opens or creates `path` (0600, O_APPEND, O_CLOEXEC), truncating a torn trailing record left by
  // a crashed writer. Every occurrence of a non-empty value of `secrets` (without leading and
  // trailing newlines) is written as "***" (see LogEncoder::write()). Records are stamped from
  // `clock`, which must outlive the writer.
  static util::Result<LogWriter> open(const std::string& path, int attempt = 1, std::vector<std::string> secrets = {},
                                      const util::Clock& clock = util::system_clock());

  LogWriter(LogWriter&& other) noexcept;
  LogWriter& operator=(LogWriter&& other) noexcept;
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;
  // Closes (best effort) when still open.
  ~LogWriter();

  // Takes `n` bytes the workload wrote on `stream` (out or err), stamped with now; masked and
  // split as LogEncoder::write() says. Writes the buffer when it holds 64 KiB or its oldest record
  // is 50 ms old.
  util::Result<void> write(LogStream stream, const char* data, std::size_t n);
  // Records a gpurun marker line (masked as well; newlines become spaces).
  util::Result<void> marker(std::string_view text);
  // Ends the current attempt's partial lines (as fragments) and stamps later records with `attempt`.
  util::Result<void> set_attempt(int attempt);
  int attempt() const { return encoder_.attempt(); }
  // Writes everything buffered, and partial lines pending for partial_line_delay as fragments. The
  // owner calls it whenever its poll loop is about to wait (and at least every 50 ms while busy),
  // so that followers see a line within ~100 ms.
  util::Result<void> flush();
  // Writes partial lines as fragments, flushes and closes the file. Later calls do nothing.
  util::Result<void> close();

 private:
  LogWriter() = default;
  util::Result<void> write_buffer();

  int fd_ = -1;
  const util::Clock* clock_ = &util::system_clock();
  std::string path_;
  LogEncoder encoder_;
  std::uint64_t size_ = 0;  // file size after the last complete write
};

// How a log file is written.
enum class LogFormat {
  records,  // gpurun's record format above
  plain,    // a backend's raw output file (e.g. Slurm's): every line is a stdout record
};

// The bytes of a run's log wherever they are (a local file, a file on a cluster read over SSH, a
// pod's log): what LogReader, tail_offset and end_offset read.
class LogBytes {
 public:
  virtual ~LogBytes() = default;
  // Copies up to `max` bytes from `offset` on into `out`; returns how many (0: nothing more yet; a
  // log that does not exist yet reads as empty, not as an error).
  virtual util::Result<std::size_t> read(std::uint64_t offset, char* out, std::size_t max) = 0;
  // Bytes written so far (0 while the log does not exist).
  virtual util::Result<std::uint64_t> size() = 0;
  // Where the bytes are, for error messages ("/path/log", "gpu1:/scratch/x.log").
  virtual std::string describe() const = 0;
};

// The bytes of the local file at `path` (opened on first read; it may not exist yet).
std::unique_ptr<LogBytes> file_log_bytes(std::string path);

// Reads the complete records of a log from an offset on; the log may not exist yet.
class LogReader {
 public:
  // Starts at byte `offset` (0: the beginning; see end_offset() to follow new records only). For
  // LogFormat::plain, records get `plain_attempt` and the time they were read.
  explicit LogReader(std::unique_ptr<LogBytes> bytes, std::uint64_t offset = 0, LogFormat format = LogFormat::records,
                     int plain_attempt = 1);
  // The same over the local file at `path`.
  explicit LogReader(std::string path, std::uint64_t offset = 0, LogFormat format = LogFormat::records,
                     int plain_attempt = 1);
  LogReader(LogReader&& other) noexcept;
  LogReader& operator=(LogReader&& other) = delete;
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;
  ~LogReader();

  // Replaces `records` with complete records appended since the last call (about 256 KiB of them
  // at most; call again while it returns some); 0 means none is complete yet, also while the file
  // does not exist. Malformed lines are skipped. With `final` (the writer is done), a plain file's
  // unterminated last line is returned as a fragment; a torn record-format tail never is.
  util::Result<std::size_t> read(std::vector<LogRecord>& records, bool final = false);
  // Byte offset of the first record not returned yet.
  std::uint64_t offset() const { return file_offset_ - (end_ - begin_); }
  // Where the log is (LogBytes::describe).
  std::string describe() const { return bytes_->describe(); }
  // Lines skipped as malformed so far.
  std::size_t skipped() const { return skipped_; }

 private:
  bool parse_line(std::string_view line, LogRecord& record);

  std::unique_ptr<LogBytes> bytes_;
  LogFormat format_;
  int plain_attempt_;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;
  std::uint64_t file_offset_ = 0;  // file offset of buffer_[end_]
  std::size_t skipped_ = 0;
  bool discarding_ = false;  // inside an over-long malformed line
};

// Size of the file at `path` after its last complete record (0 when missing): where to start a
// reader that follows new records only.
util::Result<std::uint64_t> end_offset(LogBytes& bytes);
util::Result<std::uint64_t> end_offset(const std::string& path);
// Offset of the first of the last `lines` lines of the log (0 when it has fewer), found by reading
// the file backwards in 64 KiB blocks. Markers count as lines; a fragmented line counts once.
util::Result<std::uint64_t> tail_offset(LogBytes& bytes, std::size_t lines, LogFormat format = LogFormat::records);
util::Result<std::uint64_t> tail_offset(const std::string& path, std::size_t lines,
                                        LogFormat format = LogFormat::records);

// Passes every record from `reader` to `sink`, batch by batch, until `ended()` has returned true
// and a read after that found nothing new (so no line written before the end is lost), sleeping
// `poll` whenever no data is there. Error ExitCode::cancelled when *cancelled turns true; errors
// returned by `sink` stop it too.
util::Result<void> follow(LogReader& reader, const std::function<bool()>& ended,
                          const std::function<util::Result<void>(std::span<const LogRecord>)>& sink,
                          std::chrono::milliseconds poll = std::chrono::milliseconds(25),
                          const std::atomic<bool>* cancelled = nullptr);

struct RenderOptions {
  // The output is a terminal: lines get "<function> | " in front (when `function` is set), markers
  // are dim, and partial lines are ended before a marker and by LogRenderer::finish. Piped output
  // is the raw text.
  bool terminal = false;
  std::string function;
  bool timestamps = false;  // "2024-05-01T12:34:56.789Z " in front of each line (UTC)
  std::optional<std::int64_t> since_unix_ms;  // skip records older than this
  bool color = true;        // dim markers on a terminal; false under NO_COLOR
};

// Per-stream line state across records (whether a fragment left the stream mid-line).
struct RenderState {
  bool mid_line[2] = {false, false};  // out, err
  std::int64_t cached_second = -1;    // timestamp text cache
  char cached_text[24] = {};
};

// Appends `record` as shown to its destination: stdout records to `out`, stderr records and
// markers to `err`. A marker is a whole line "gpurun: <text>" starting on a fresh line (a partial
// stderr line, or on a terminal any partial line, is ended first). Fragments are joined without a
// newline and get the prefix and timestamp once per line. Returns false (appending nothing) for a
// record older than options.since_unix_ms.
bool render_record(const LogRecord& record, const RenderOptions& options, RenderState& state, std::string& out,
                   std::string& err);

// Renders batches of records to two file descriptors with large write(2)s, keeping the order of
// stdout and stderr records (a buffer is written before the other one takes a record).
class LogRenderer {
 public:
  LogRenderer(RenderOptions options, int out_fd, int err_fd);
  // Renders the batch and writes it out by its end (one write per stream and switch, not per line).
  util::Result<void> write(std::span<const LogRecord> records);
  // Ends a partial line on a terminal and writes everything buffered.
  util::Result<void> finish();

 private:
  util::Result<void> drain(int which);

  RenderOptions options_;
  RenderState state_;
  int fds_[2];
  int last_ = 0;
  std::string buffers_[2];
};

}  // namespace gpurun::cloud
