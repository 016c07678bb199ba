// container.log: framed records, rotated past log_max_bytes (docs/shim.md, "Log framing").
#pragma once

#include <cstdint>
#include <string>

#include "util.h"

namespace berth {

// One record: stream (1 stdout, 2 stderr), u64 LE milliseconds, u32 LE length, bytes.
std::string frame_record(int stream, uint64_t ms, const char* data, size_t len);

class LogWriter {
 public:
  // max_bytes < 0: never rotate.
  LogWriter(std::string path, long long max_bytes);
  // Appends whole records (a chunk too big for one file is split), rotating first when the
  // next record would take the file past max_bytes.
  // Errors (disk full) are swallowed after the first report: losing log lines must not take
  // the container's supervisor down.
  void write(int stream, const char* data, size_t len);

 private:
  void write_record(int stream, const char* data, size_t len);
  void open_file();
  void rotate();

  std::string path_;
  long long max_bytes_;
  long long size_ = 0;
  UniqueFd fd_;
};

uint64_t now_ms();

}  // namespace berth
