// Small shared pieces of the native code: an owning file descriptor and the error type that
// carries what was being done (syscall, path, errno) up to whoever reports it.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace berth {

// Owns one file descriptor and closes it on destruction (crun's/youki's UniqueFd).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A failed step. `code` is a stable BERTH_ERR_* code (docs/shim.md); `message()` renders
// "<syscall> `<path>`: <strerror>" as the house style asks.
struct SysError {
  std::string code;
  std::string syscall;
  std::string path;
  int err = 0;
  std::string detail;  // free text when there is no syscall (e.g. a bad config value)

  std::string message() const;
  std::string to_json(bool ok_field = true) const;  // {"ok":false,"code":..,"message":..,...}
};

// Throws SysError{code, syscall, path, errno} — call right after the failing syscall.
[[noreturn]] void throw_errno(const std::string& code, const std::string& syscall,
                              const std::string& path = "");
[[noreturn]] void throw_error(const std::string& code, const std::string& detail);

// Passing file descriptors over a Unix socket (SCM_RIGHTS). send_with_fds sends LEN bytes of
// DATA with NFDS descriptors attached; recv_with_fds receives up to LEN bytes and appends the
// descriptors that came with them (close-on-exec) to FDS, setting *TRUNCATED when more came
// than MAX_FDS. Both return what sendmsg/recvmsg returned (-1 with errno set).
ssize_t send_with_fds(int sock, const void* data, size_t len, const int* fds, size_t nfds);
ssize_t recv_with_fds(int sock, void* buf, size_t len, size_t max_fds, std::vector<UniqueFd>* fds,
                      int flags = 0, bool* truncated = nullptr);

// JSON string escaping for the few JSON lines the shim writes.
std::string json_escape(const std::string& s);

// Whole-file helpers; write_file_atomic writes to PATH.tmp then renames.
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);
void write_file_atomic(const std::string& path, const std::string& data);

}  // namespace berth
