#include "cloud/state/logs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cctype>
#include <cstring>
#include <ctime>
#include <thread>


namespace gpurun::cloud {

using util::ExitCode;
using util::make_error;

namespace {

constexpr std::size_t write_threshold = 64 * 1024;
constexpr std::int64_t max_buffer_age_ms = 50;
constexpr std::size_t read_block = 256 * 1024;
constexpr std::size_t max_read_buffer = 4 * max_record_text + 4096;
constexpr std::size_t tail_block = 64 * 1024;
constexpr std::size_t header_reach = 64;  // a record header is shorter than this

util::Error io_error(ExitCode code, const std::string& what, int error_number, std::string_view todo = {}) {
  std::string message = what + ": " + std::strerror(error_number);
  if (!todo.empty()) message += "; " + std::string(todo);
  return make_error(code, std::move(message));
}

int stream_index(LogStream stream) { return stream == LogStream::out ? 0 : 1; }

// Writes all of `data`; false with errno set on failure.
bool write_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t done = ::write(fd, data, n);
    if (done < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += done;
    n -= static_cast<std::size_t>(done);
  }
  return true;
}

ssize_t pread_full(int fd, char* data, std::size_t n, std::uint64_t offset) {
  std::size_t total = 0;
  while (total < n) {
    const ssize_t got = ::pread(fd, data + total, n - total, static_cast<off_t>(offset + total));
    if (got < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (got == 0) break;
    total += static_cast<std::size_t>(got);
  }
  return static_cast<ssize_t>(total);
}

// The offset just after the last '\n' in the first `size` bytes of `fd` (0 when there is none), or
// -1 on a read error.
std::int64_t complete_end(int fd, std::uint64_t size) {
  std::vector<char> block(tail_block);
  std::uint64_t end = size;
  while (end > 0) {
    const std::uint64_t start = end > tail_block ? end - tail_block : 0;
    const std::size_t length = static_cast<std::size_t>(end - start);
    if (pread_full(fd, block.data(), length, start) != static_cast<ssize_t>(length)) return -1;
    if (const void* newline = ::memrchr(block.data(), '\n', length)) {
      return static_cast<std::int64_t>(start + static_cast<std::size_t>(static_cast<const char*>(newline) - block.data()) + 1);
    }
    end = start;
  }
  return 0;
}

// A local log file, opened on first read.
class FileLogBytes final : public LogBytes {
 public:
  explicit FileLogBytes(std::string path) : path_(std::move(path)) {}
  FileLogBytes(const FileLogBytes&) = delete;
  FileLogBytes& operator=(const FileLogBytes&) = delete;
  ~FileLogBytes() override {
    if (fd_ >= 0) ::close(fd_);
  }

  util::Result<std::size_t> read(std::uint64_t offset, char* out, std::size_t max) override {
    if (auto opened = open(); !opened) return opened.error();
    if (fd_ < 0) return std::size_t{0};
    const ssize_t got = pread_full(fd_, out, max, offset);
    if (got < 0) return io_error(ExitCode::backend, "cannot read the log " + path_, errno);
    return static_cast<std::size_t>(got);
  }

  util::Result<std::uint64_t> size() override {
    if (auto opened = open(); !opened) return opened.error();
    if (fd_ < 0) return std::uint64_t{0};
    struct stat info {};
    if (::fstat(fd_, &info) != 0) return io_error(ExitCode::backend, "cannot read the log " + path_, errno);
    return static_cast<std::uint64_t>(info.st_size);
  }

  std::string describe() const override { return path_; }

 private:
  // Opens the file once it exists (a missing file leaves fd_ at -1).
  util::Result<void> open() {
    if (fd_ >= 0) return {};
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0 && errno != ENOENT) return io_error(ExitCode::backend, "cannot open the log " + path_, errno);
    return {};
  }

  std::string path_;
  int fd_ = -1;
};

// Reads exactly `n` bytes at `offset` (fewer only at the end of the log).
util::Result<std::size_t> read_full(LogBytes& bytes, char* data, std::size_t n, std::uint64_t offset) {
  std::size_t total = 0;
  while (total < n) {
    auto got = bytes.read(offset + total, data + total, n - total);
    if (!got) return got.error();
    if (*got == 0) break;
    total += *got;
  }
  return total;
}

// The offset just after the last '\n' in the first `size` bytes of `bytes` (0 when there is none).
util::Result<std::uint64_t> complete_end(LogBytes& bytes, std::uint64_t size) {
  std::vector<char> block(tail_block);
  std::uint64_t end = size;
  while (end > 0) {
    const std::uint64_t start = end > tail_block ? end - tail_block : 0;
    const std::size_t length = static_cast<std::size_t>(end - start);
    auto got = read_full(bytes, block.data(), length, start);
    if (!got) return got.error();
    if (*got != length) return make_error(ExitCode::backend, "cannot read the log " + bytes.describe() + ": it shrank");
    if (const void* newline = ::memrchr(block.data(), '\n', length)) {
      return start + static_cast<std::size_t>(static_cast<const char*>(newline) - block.data()) + 1;
    }
    end = start;
  }
  return std::uint64_t{0};
}

// Parses the decimal digits at text[i...] (at least one, at most `max_digits`), then one space.
bool parse_field(std::string_view text, std::size_t& i, std::int64_t& value, std::size_t max_digits) {
  const std::size_t start = i;
  value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < max_digits) {
    value = value * 10 + (text[i] - '0');
    ++i;
  }
  if (i == start || i >= text.size() || text[i] != ' ') return false;
  ++i;
  return true;
}

// The kind letter of a record line (0 when malformed) and where its text starts.
char record_kind(std::string_view line, std::size_t& text_start, std::int64_t& unix_ms, std::int64_t& attempt) {
  std::size_t i = 0;
  if (!parse_field(line, i, unix_ms, 18) || !parse_field(line, i, attempt, 9)) return 0;
  if (i + 1 >= line.size() || line[i + 1] != ' ') return 0;
  const char kind = line[i];
  if (std::strchr("oemOEM", kind) == nullptr || kind == 0) return 0;
  text_start = i + 2;
  return kind;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LogEncoder

LogEncoder::LogEncoder(int attempt, std::vector<std::string> secrets) : attempt_(attempt) {
  for (std::string& secret : secrets) {
    // Newlines around a value are not part of it: the lines around a masked value keep their own.
    const std::size_t first = secret.find_first_not_of("\r\n");
    if (first == std::string::npos) continue;
    secret = secret.substr(first, secret.find_last_not_of("\r\n") - first + 1);
    longest_secret_ = std::max(longest_secret_, secret.size());
    secrets_.push_back(std::move(secret));
  }
}

void LogEncoder::refresh_header(std::int64_t unix_ms) {
  if (unix_ms == header_ms_) return;
  header_ms_ = unix_ms;
  char text[48];
  char* end = std::to_chars(text, text + 20, unix_ms).ptr;
  *end++ = ' ';
  end = std::to_chars(end, end + 12, attempt_).ptr;
  *end++ = ' ';
  header_.assign(text, end);
}

// Fills spans_ with the occurrences of every secret in `text`, sorted, overlapping or adjacent
// ones joined.
void LogEncoder::find_spans(std::string_view text) {
  spans_.clear();
  for (const std::string& secret : secrets_) {
    std::size_t from = 0;
    while (from + secret.size() <= text.size()) {
      const void* hit = ::memmem(text.data() + from, text.size() - from, secret.data(), secret.size());
      if (hit == nullptr) break;
      const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
      spans_.emplace_back(at, at + secret.size());
      from = at + 1;
    }
  }
  if (spans_.size() < 2) return;
  std::sort(spans_.begin(), spans_.end());
  std::size_t joined = 0;
  for (std::size_t i = 1; i < spans_.size(); ++i) {
    if (spans_[i].first <= spans_[joined].second) {
      spans_[joined].second = std::max(spans_[joined].second, spans_[i].second);
    } else {
      spans_[++joined] = spans_[i];
    }
  }
  spans_.resize(joined + 1);
}

// `text` with each (joined) secret occurrence as "***"; one at its start continues the "***" the
// text before ended with when `masked_end` is set, which is updated to whether this one ends so.
std::string_view LogEncoder::mask(std::string_view text, bool& masked_end) {
  if (secrets_.empty() || text.empty()) return text;
  find_spans(text);
  if (spans_.empty()) {
    masked_end = false;
    return text;
  }
  masked_.clear();
  std::size_t copied = 0;
  for (const auto& [start, stop] : spans_) {
    masked_.append(text.data() + copied, start - copied);
    if (start > 0 || !masked_end) masked_ += "***";
    copied = stop;
  }
  masked_.append(text.data() + copied, text.size() - copied);
  masked_end = copied == text.size();
  return masked_;
}

// The first position of `raw` from which the rest is a proper prefix of a secret (more bytes may
// complete it), or raw.size().
std::size_t LogEncoder::first_undecided(std::string_view raw) const {
  const std::size_t n = raw.size();
  for (std::size_t p = n >= longest_secret_ ? n - longest_secret_ + 1 : 0; p < n; ++p) {
    for (const std::string& secret : secrets_) {
      if (secret.size() > n - p && secret[0] == raw[p] && std::memcmp(secret.data(), raw.data() + p, n - p) == 0) {
        return p;
      }
    }
  }
  return n;
}

// How much of `raw` can be masked and passed on now: all of it when `everything`, else up to the
// first undecided byte, moved back to the start of the (joined) secret occurrence it would cut, or
// forward to its end when that would hold over max_record_text bytes (an endless run of secrets).
std::size_t LogEncoder::safe_cut(std::string_view raw, bool everything) {
  if (everything) return raw.size();
  std::size_t cut = first_undecided(raw);
  find_spans(raw);
  for (const auto& [start, stop] : spans_) {
    if (start < cut && cut < stop) cut = raw.size() - start > max_record_text + longest_secret_ ? stop : start;
  }
  return cut;
}

void LogEncoder::emit(LogStream stream, std::string_view text, bool line_end) {
  if (buffer_.empty()) oldest_buffered_ms_ = now_ms_;
  refresh_header(now_ms_);
  char kind = static_cast<char>(stream);
  if (!line_end) kind = static_cast<char>(kind - 'a' + 'A');
  buffer_ += header_;
  buffer_ += kind;
  buffer_ += ' ';
  buffer_.append(text);
  buffer_ += '\n';
}

// Emits the (masked) text as a record, as fragments of max_record_text when it is longer.
void LogEncoder::emit_line(LogStream stream, std::string_view text, bool line_end) {
  while (text.size() > max_record_text) {
    emit(stream, text.substr(0, max_record_text), false);
    text.remove_prefix(max_record_text);
  }
  emit(stream, text, line_end);
}

// Splits masked text of `stream` at newlines into records; a partial line waits in the stream's
// `line` (fragments of max_record_text leave it when it grows longer).
void LogEncoder::take(LogStream stream, std::string_view masked) {
  Stream& state = streams_[stream_index(stream)];
  while (!masked.empty()) {
    const void* found = std::memchr(masked.data(), '\n', masked.size());
    if (found == nullptr) {
      if (state.line.empty()) state.since_ms = now_ms_;
      state.line.append(masked);
      if (state.line.size() > max_record_text) {
        const std::size_t whole = (state.line.size() - 1) / max_record_text * max_record_text;
        emit_line(stream, std::string_view(state.line).substr(0, whole), false);
        state.line.erase(0, whole);
      }
      return;
    }
    const std::size_t newline = static_cast<std::size_t>(static_cast<const char*>(found) - masked.data());
    if (state.line.empty()) {
      emit_line(stream, masked.substr(0, newline), true);
    } else {
      state.line.append(masked.substr(0, newline));
      emit_line(stream, state.line, true);
      state.line.clear();
    }
    masked.remove_prefix(newline + 1);
  }
}

// Masks and passes on the raw bytes of `stream` that cannot start a secret any more (all of them
// when `everything`: no more bytes follow).
void LogEncoder::release(LogStream stream, bool everything) {
  Stream& state = streams_[stream_index(stream)];
  if (state.raw.empty()) return;
  const std::size_t cut = safe_cut(state.raw, everything);
  if (cut == 0) return;
  take(stream, mask(std::string_view(state.raw).substr(0, cut), state.masked_end));
  state.raw.erase(0, cut);
}

// Passes on everything `stream` holds; a partial line becomes a fragment.
void LogEncoder::end_stream(LogStream stream) {
  release(stream, true);
  Stream& state = streams_[stream_index(stream)];
  if (!state.line.empty()) emit_line(stream, state.line, false);
  state.line.clear();
  state.masked_end = false;
}

void LogEncoder::write(LogStream stream, std::string_view data, std::int64_t unix_ms) {
  if (stream == LogStream::marker) return marker(data, unix_ms);
  now_ms_ = unix_ms;
  if (secrets_.empty()) {
    take(stream, data);
  } else {
    streams_[stream_index(stream)].raw.append(data);
    release(stream, false);
  }
}

void LogEncoder::marker(std::string_view text, std::int64_t unix_ms) {
  now_ms_ = unix_ms;
  bool masked_end = false;
  std::string line(mask(text, masked_end));
  std::replace(line.begin(), line.end(), '\n', ' ');
  emit_line(LogStream::marker, line, true);
}

void LogEncoder::set_attempt(int attempt, std::int64_t unix_ms) {
  end(unix_ms);
  attempt_ = attempt;
  header_ms_ = -1;
}

void LogEncoder::flush_partial_lines(std::int64_t unix_ms) {
  now_ms_ = unix_ms;
  for (LogStream stream : {LogStream::out, LogStream::err}) {
    Stream& state = streams_[stream_index(stream)];
    if (!state.line.empty() && now_ms_ - state.since_ms >= partial_line_delay.count()) {
      emit_line(stream, state.line, false);
      state.line.clear();
    }
  }
}

void LogEncoder::end(std::int64_t unix_ms) {
  now_ms_ = unix_ms;
  end_stream(LogStream::out);
  end_stream(LogStream::err);
}

// ---------------------------------------------------------------------------------------------
// LogWriter

util::Result<LogWriter> LogWriter::open(const std::string& path, int attempt, std::vector<std::string> secrets,
                                        const util::Clock& clock) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return io_error(ExitCode::backend, "cannot open the log " + path, errno, "check the state directory");
  struct stat info {};
  std::int64_t end = 0;
  if (::fstat(fd, &info) != 0 || (end = complete_end(fd, static_cast<std::uint64_t>(info.st_size))) < 0 ||
      (end != info.st_size && ::ftruncate(fd, end) != 0)) {
    const int error_number = errno;
    ::close(fd);
    return io_error(ExitCode::backend, "cannot prepare the log " + path, error_number, "check the state directory");
  }
  LogWriter writer;
  writer.fd_ = fd;
  writer.clock_ = &clock;
  writer.path_ = path;
  writer.size_ = static_cast<std::uint64_t>(end);
  writer.encoder_ = LogEncoder(attempt, std::move(secrets));
  return writer;
}

LogWriter::LogWriter(LogWriter&& other) noexcept { *this = std::move(other); }

LogWriter& LogWriter::operator=(LogWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) (void)close();
    fd_ = std::exchange(other.fd_, -1);
    clock_ = other.clock_;
    path_ = std::move(other.path_);
    encoder_ = std::move(other.encoder_);
    size_ = other.size_;
  }
  return *this;
}

LogWriter::~LogWriter() {
  if (fd_ >= 0) (void)close();
}

util::Result<void> LogWriter::write(LogStream stream, const char* data, std::size_t n) {
  if (fd_ < 0) return make_error(ExitCode::backend, "cannot write the log " + path_ + ": it is closed");
  if (stream == LogStream::marker) return marker(std::string_view(data, n));
  const std::int64_t now = clock_->now_unix_ms();
  encoder_.write(stream, std::string_view(data, n), now);
  const std::string& buffered = encoder_.records();
  if (buffered.size() >= write_threshold || (!buffered.empty() && now - encoder_.oldest_record_ms() >= max_buffer_age_ms)) {
    return write_buffer();
  }
  return {};
}

util::Result<void> LogWriter::marker(std::string_view text) {
  if (fd_ < 0) return make_error(ExitCode::backend, "cannot write the log " + path_ + ": it is closed");
  encoder_.marker(text, clock_->now_unix_ms());
  return write_buffer();
}

util::Result<void> LogWriter::set_attempt(int attempt) {
  if (fd_ < 0) return make_error(ExitCode::backend, "cannot write the log " + path_ + ": it is closed");
  encoder_.set_attempt(attempt, clock_->now_unix_ms());
  return write_buffer();
}

util::Result<void> LogWriter::flush() {
  if (fd_ < 0) return {};
  encoder_.flush_partial_lines(clock_->now_unix_ms());
  return write_buffer();
}

util::Result<void> LogWriter::close() {
  if (fd_ < 0) return {};
  encoder_.end(clock_->now_unix_ms());
  util::Result<void> result = write_buffer();
  ::close(fd_);
  fd_ = -1;
  return result;
}

util::Result<void> LogWriter::write_buffer() {
  const std::string& buffer = encoder_.records();
  if (buffer.empty()) return {};
  const bool written = write_all(fd_, buffer.data(), buffer.size());
  const int error_number = errno;
  if (written) {
    size_ += buffer.size();
  } else if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
    // Leaves a torn record, which readers ignore and the next LogWriter::open removes.
  }
  encoder_.clear_records();
  if (!written) {
    // "no space left on device writing the run log at PATH; ...": the reason a run ends with.
    std::string why = std::strerror(error_number);
    if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    const bool full = error_number == ENOSPC || error_number == EDQUOT;
    return make_error(ExitCode::backend, why + " writing the run log at " + path_ + "; " +
                                             (full ? "free space on its file system and start the run again"
                                                   : "check the state directory's file system"));
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// LogReader

std::unique_ptr<LogBytes> file_log_bytes(std::string path) { return std::make_unique<FileLogBytes>(std::move(path)); }

LogReader::LogReader(std::unique_ptr<LogBytes> bytes, std::uint64_t offset, LogFormat format, int plain_attempt)
    : bytes_(std::move(bytes)), format_(format), plain_attempt_(plain_attempt), file_offset_(offset) {}

LogReader::LogReader(std::string path, std::uint64_t offset, LogFormat format, int plain_attempt)
    : LogReader(file_log_bytes(std::move(path)), offset, format, plain_attempt) {}

LogReader::LogReader(LogReader&& other) noexcept
    : bytes_(std::move(other.bytes_)),
      format_(other.format_),
      plain_attempt_(other.plain_attempt_),
      buffer_(std::move(other.buffer_)),
      begin_(other.begin_),
      end_(other.end_),
      file_offset_(other.file_offset_),
      skipped_(other.skipped_),
      discarding_(other.discarding_) {}

LogReader::~LogReader() = default;

bool LogReader::parse_line(std::string_view line, LogRecord& record) {
  std::size_t text_start = 0;
  std::int64_t unix_ms = 0;
  std::int64_t attempt = 0;
  const char kind = record_kind(line, text_start, unix_ms, attempt);
  if (kind == 0) return false;
  record.unix_ms = unix_ms;
  record.attempt = static_cast<int>(attempt);
  record.line_end = kind >= 'a';
  record.stream = static_cast<LogStream>(kind >= 'a' ? kind : kind - 'A' + 'a');
  record.text = line.substr(text_start);
  return true;
}

util::Result<std::size_t> LogReader::read(std::vector<LogRecord>& records, bool final) {
  records.clear();
  if (buffer_.empty()) buffer_.resize(read_block);
  const std::int64_t now = format_ == LogFormat::plain ? util::now_unix_ms() : 0;
  std::size_t pos = 0;
  while (true) {
    if (begin_ > 0) {
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == buffer_.size()) {
      if (buffer_.size() < max_read_buffer) {
        buffer_.resize(std::min(2 * buffer_.size(), max_read_buffer));
      } else {  // a line longer than any record: not written by LogWriter
        ++skipped_;
        discarding_ = true;
        end_ = 0;
      }
    }
    const std::size_t space = buffer_.size() - end_;
    auto read = read_full(*bytes_, buffer_.data() + end_, space, file_offset_);
    if (!read) return read.error();
    const std::size_t got = *read;
    end_ += got;
    file_offset_ += got;

    const char* const data = buffer_.data();
    pos = begin_;
    while (pos < end_) {
      const void* found = std::memchr(data + pos, '\n', end_ - pos);
      if (found == nullptr) break;
      const std::size_t newline = static_cast<std::size_t>(static_cast<const char*>(found) - data);
      const std::string_view line(data + pos, newline - pos);
      pos = newline + 1;
      if (discarding_) {
        discarding_ = false;
        continue;
      }
      LogRecord record;
      if (format_ == LogFormat::plain) {
        record = LogRecord{now, plain_attempt_, LogStream::out, true, line};
      } else if (!parse_line(line, record)) {
        ++skipped_;
        continue;
      }
      records.push_back(record);
    }
    // Nothing yet from a full buffer (one long record, or malformed lines): read on.
    if (!records.empty() || got < space) break;
    if (format_ == LogFormat::plain && end_ - pos >= max_record_text) break;
    begin_ = pos;
  }
  const char* const data = buffer_.data();
  if (format_ == LogFormat::plain && !discarding_) {
    while (end_ - pos >= max_record_text || (final && pos < end_)) {
      const std::size_t length = std::min(end_ - pos, max_record_text);
      records.push_back(LogRecord{now, plain_attempt_, LogStream::out, false, std::string_view(data + pos, length)});
      pos += length;
    }
  }
  begin_ = pos;
  return records.size();
}

util::Result<std::uint64_t> end_offset(LogBytes& bytes) {
  auto size = bytes.size();
  if (!size) return size.error();
  return complete_end(bytes, *size);
}

util::Result<std::uint64_t> end_offset(const std::string& path) {
  FileLogBytes bytes(path);
  return end_offset(bytes);
}

util::Result<std::uint64_t> tail_offset(const std::string& path, std::size_t lines, LogFormat format) {
  FileLogBytes bytes(path);
  return tail_offset(bytes, lines, format);
}

util::Result<std::uint64_t> tail_offset(LogBytes& bytes, std::size_t lines, LogFormat format) {
  auto complete = end_offset(bytes);
  if (!complete) return complete.error();
  const std::uint64_t end = *complete;
  if (end == 0 || lines == 0) return end;
  // A window [window_start, window_start + window.size()) of the file, moved backwards block by
  // block; it overlaps the previous window by header_reach bytes so that the header of a record
  // starting just after a newline near its end is in it.
  std::vector<char> window;
  std::uint64_t window_start = end;
  auto load_before = [&](std::uint64_t before) -> bool {
    const std::uint64_t start = before > tail_block ? before - tail_block : 0;
    const std::uint64_t stop = std::min(end, before + header_reach);
    window.resize(static_cast<std::size_t>(stop - start));
    auto got = read_full(bytes, window.data(), window.size(), start);
    if (!got || *got != window.size()) return false;
    window_start = start;
    return true;
  };
  // Scans record by record from the last one; `record_end` is the offset of the current record's
  // '\n', `search_to` where the search for the previous newline continues.
  std::uint64_t record_end = end - 1;
  std::uint64_t search_to = record_end;
  std::size_t counted = 0;
  bool last = true;
  std::uint64_t result = 0;
  bool done = false;
  while (!done) {
    // Find the newline before the current record (its start is just after it).
    std::int64_t previous = -1;
    while (true) {
      if (search_to > window_start) {
        const std::size_t length = static_cast<std::size_t>(search_to - window_start);
        if (const void* hit = ::memrchr(window.data(), '\n', length)) {
          previous = static_cast<std::int64_t>(window_start) +
                     (static_cast<const char*>(hit) - window.data());
          break;
        }
      }
      if (window_start == 0) break;
      const std::uint64_t old_start = window_start;
      if (!load_before(old_start)) return make_error(ExitCode::backend, "cannot read the log " + bytes.describe());
      search_to = std::min(search_to, old_start);
    }
    const std::uint64_t record_start = static_cast<std::uint64_t>(previous + 1);
    bool line_end = true;
    if (format == LogFormat::records) {
      const std::size_t at = static_cast<std::size_t>(record_start - window_start);
      const std::size_t length =
          std::min<std::size_t>(window.size() - at, static_cast<std::size_t>(record_end - record_start));
      std::size_t text_start = 0;
      std::int64_t unix_ms = 0;
      std::int64_t attempt = 0;
      const char kind = record_kind(std::string_view(window.data() + at, length), text_start, unix_ms, attempt);
      line_end = kind == 0 || kind >= 'a';
    }
    if (line_end || last) {
      if (counted == lines) {
        result = record_end + 1;
        done = true;
        break;
      }
      ++counted;
    }
    last = false;
    if (previous < 0) break;
    record_end = static_cast<std::uint64_t>(previous);
    search_to = record_end;
  }
  return result;
}

util::Result<void> follow(LogReader& reader, const std::function<bool()>& ended,
                          const std::function<util::Result<void>(std::span<const LogRecord>)>& sink,
                          std::chrono::milliseconds poll, const std::atomic<bool>* cancelled) {
  std::vector<LogRecord> batch;
  batch.reserve(4096);
  while (true) {
    if (cancelled != nullptr && cancelled->load()) {
      return make_error(ExitCode::cancelled, "following the log " + reader.describe() + ": cancelled");
    }
    // Checked before reading: a read that finds nothing after the end has seen all there is.
    const bool was_ended = ended();
    util::Result<std::size_t> got = reader.read(batch);
    if (!got) return got.error();
    if (*got == 0 && was_ended) {
      got = reader.read(batch, true);
      if (!got) return got.error();
      if (*got > 0) return sink(batch);
      return {};
    }
    if (*got > 0) {
      if (util::Result<void> sunk = sink(batch); !sunk) return sunk;
      continue;
    }
    std::this_thread::sleep_for(poll);
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering

namespace {

void append_timestamp(std::int64_t unix_ms, RenderState& state, std::string& out) {
  std::int64_t seconds = unix_ms / 1000;
  int millis = static_cast<int>(unix_ms % 1000);
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  if (seconds != state.cached_second) {
    state.cached_second = seconds;
    const std::time_t time = static_cast<std::time_t>(seconds);
    std::tm utc{};
    ::gmtime_r(&time, &utc);
    std::strftime(state.cached_text, sizeof state.cached_text, "%Y-%m-%dT%H:%M:%S", &utc);
  }
  out += state.cached_text;
  const char tail[] = {'.', static_cast<char>('0' + millis / 100), static_cast<char>('0' + millis / 10 % 10),
                       static_cast<char>('0' + millis % 10), 'Z', ' '};
  out.append(tail, sizeof tail);
}

}  // namespace

bool render_record(const LogRecord& record, const RenderOptions& options, RenderState& state, std::string& out,
                   std::string& err) {
  if (options.since_unix_ms && record.unix_ms < *options.since_unix_ms) return false;
  if (record.stream == LogStream::marker) {
    // Markers are whole lines of stderr, on a fresh line (of the screen, on a terminal).
    if (state.mid_line[1] || (options.terminal && state.mid_line[0])) err += '\n';
    state.mid_line[1] = false;
    if (options.terminal) state.mid_line[0] = false;
    if (options.timestamps) append_timestamp(record.unix_ms, state, err);
    err += options.terminal && options.color ? "\033[2mgpurun: " : "gpurun: ";
    err.append(record.text);
    err += options.terminal && options.color ? "\033[0m\n" : "\n";
    return true;
  }
  const int index = record.stream == LogStream::out ? 0 : 1;
  std::string& target = index == 0 ? out : err;
  if (!state.mid_line[index]) {
    if (options.terminal && !options.function.empty()) {
      target += options.function;
      target += " | ";
    }
    if (options.timestamps) append_timestamp(record.unix_ms, state, target);
  }
  target.append(record.text);
  if (record.line_end) target += '\n';
  state.mid_line[index] = !record.line_end;
  return true;
}

LogRenderer::LogRenderer(RenderOptions options, int out_fd, int err_fd)
    : options_(std::move(options)), fds_{out_fd, err_fd} {
  buffers_[0].reserve(2 * write_threshold);
  buffers_[1].reserve(write_threshold);
}

util::Result<void> LogRenderer::drain(int which) {
  std::string& buffer = buffers_[which];
  if (buffer.empty()) return {};
  const bool written = write_all(fds_[which], buffer.data(), buffer.size());
  const int error_number = errno;
  buffer.clear();
  if (!written) return io_error(ExitCode::failure, which == 0 ? "cannot write to stdout" : "cannot write to stderr", error_number);
  return {};
}

util::Result<void> LogRenderer::write(std::span<const LogRecord> records) {
  for (const LogRecord& record : records) {
    const int target = record.stream == LogStream::out ? 0 : 1;
    if (target != last_) {
      if (util::Result<void> drained = drain(last_); !drained) return drained;
      last_ = target;
    }
    render_record(record, options_, state_, buffers_[0], buffers_[1]);
    if (buffers_[target].size() >= write_threshold) {
      if (util::Result<void> drained = drain(target); !drained) return drained;
    }
  }
  if (util::Result<void> drained = drain(1 - last_); !drained) return drained;
  return drain(last_);
}

util::Result<void> LogRenderer::finish() {
  if (options_.terminal) {
    for (int i = 0; i < 2; ++i) {
      if (state_.mid_line[i]) buffers_[i] += '\n';
      state_.mid_line[i] = false;
    }
  }
  if (util::Result<void> drained = drain(1 - last_); !drained) return drained;
  return drain(last_);
}

}  // namespace gpurun::cloud
