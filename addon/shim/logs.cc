#include "logs.h"

#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace berth {

uint64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

std::string frame_record(int stream, uint64_t ms, const char* data, size_t len) {
  std::string r;
  r.reserve(13 + len);
  r.push_back(static_cast<char>(stream));
  for (int i = 0; i < 8; i++) r.push_back(static_cast<char>((ms >> (8 * i)) & 0xff));
  uint32_t n = static_cast<uint32_t>(len);
  for (int i = 0; i < 4; i++) r.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  r.append(data, len);
  return r;
}

LogWriter::LogWriter(std::string path, long long max_bytes) : path_(std::move(path)), max_bytes_(max_bytes) {
  open_file();
}

void LogWriter::open_file() {
  fd_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fd_.valid()) throw_errno("BERTH_ERR_SYSCALL", "open", path_);
  struct stat st{};
  if (::fstat(fd_.get(), &st) < 0) throw_errno("BERTH_ERR_SYSCALL", "fstat", path_);
  size_ = st.st_size;
}

void LogWriter::rotate() {
  const std::string old = path_ + ".1";
  if (::rename(path_.c_str(), old.c_str()) < 0) throw_errno("BERTH_ERR_SYSCALL", "rename", path_);
  open_file();
}

void LogWriter::write(int stream, const char* data, size_t len) {
  // A chunk larger than what one file may hold is split, so that no file passes max_bytes
  // however much the pipe had buffered (each piece is a whole record of its own).
  const size_t kHeader = 13;
  if (max_bytes_ > 0 && len + kHeader > static_cast<size_t>(max_bytes_) && static_cast<size_t>(max_bytes_) > 2 * kHeader) {
    const size_t piece = static_cast<size_t>(max_bytes_) - kHeader;
    for (size_t off = 0; off < len; off += piece) write_record(stream, data + off, std::min(piece, len - off));
    return;
  }
  write_record(stream, data, len);
}

void LogWriter::write_record(int stream, const char* data, size_t len) {
  std::string rec = frame_record(stream, now_ms(), data, len);
  try {
    if (!fd_.valid()) open_file();
    if (max_bytes_ > 0 && size_ > 0 && size_ + static_cast<long long>(rec.size()) > max_bytes_) rotate();
    size_t off = 0;
    while (off < rec.size()) {
      ssize_t n = ::write(fd_.get(), rec.data() + off, rec.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("BERTH_ERR_SYSCALL", "write", path_);
      }
      off += static_cast<size_t>(n);
    }
    size_ += static_cast<long long>(rec.size());
  } catch (const SysError&) {
    // Dropped: see the header. A half-written record would corrupt the framing of everything
    // after it, so the file is truncated back to the last whole record when we can.
    if (fd_.valid() && ::ftruncate(fd_.get(), size_) < 0) fd_.reset();
  }
}

}  // namespace berth
