// Implementation of util.h: shared by the shim and the Node addon, so nothing here may assume
// it runs in the shim (no globals, no exit()).
#include "util.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace berth {

void UniqueFd::reset(int fd) {
  // close() is not retried on EINTR: on Linux the descriptor is gone either way.
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

ssize_t send_with_fds(int sock, const void* data, size_t len, const int* fds, size_t nfds) {
  iovec iov{const_cast<void*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * nfds));
  if (nfds > 0) {
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

ssize_t recv_with_fds(int sock, void* buf, size_t len, size_t max_fds, std::vector<UniqueFd>* fds, int flags,
                      bool* truncated) {
  iovec iov{buf, len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * (max_fds > 0 ? max_fds : 1)));
  msg.msg_control = ctrl.data();
  msg.msg_controllen = ctrl.size();
  ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds->emplace_back(fd);
    }
  }
  if (truncated) *truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  return n;
}

std::string SysError::message() const {
  if (syscall.empty()) return detail;
  std::string m = syscall;
  if (!path.empty()) m += " `" + path + "`";
  m += ": ";
  m += err ? std::strerror(err) : detail;
  if (err && !detail.empty()) m += " (" + detail + ")";
  return m;
}

std::string SysError::to_json(bool ok_field) const {
  std::string j = "{";
  if (ok_field) j += "\"ok\":false,";
  j += "\"code\":\"" + json_escape(code.empty() ? "BERTH_ERR_SYSCALL" : code) + "\"";
  j += ",\"message\":\"" + json_escape(message()) + "\"";
  if (!syscall.empty()) j += ",\"syscall\":\"" + json_escape(syscall) + "\"";
  if (!path.empty()) j += ",\"path\":\"" + json_escape(path) + "\"";
  if (err) j += ",\"errno\":" + std::to_string(err);
  j += "}";
  return j;
}

void throw_errno(const std::string& code, const std::string& syscall, const std::string& path) {
  throw SysError{code, syscall, path, errno, ""};
}

void throw_error(const std::string& code, const std::string& detail) {
  throw SysError{code, "", "", 0, detail};
}

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw_errno("BERTH_ERR_SYSCALL", "open", path);
  std::string data;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("BERTH_ERR_SYSCALL", "read", path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

static void write_all(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("BERTH_ERR_SYSCALL", "write", path);
    }
    off += static_cast<size_t>(n);
  }
}

void write_file(const std::string& path, const std::string& data) {
  // No O_CREAT|O_TRUNC surprises for the kernel files this is used on (uid_map, cgroup knobs):
  // O_TRUNC is ignored there, and a regular file is created 0644.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) throw_errno("BERTH_ERR_SYSCALL", "open", path);
  write_all(fd.get(), data, path);
}

void write_file_atomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) throw_errno("BERTH_ERR_SYSCALL", "open", tmp);
    write_all(fd.get(), data, tmp);
    // fsync so a crash never leaves a renamed but empty file behind.
    if (::fsync(fd.get()) < 0) throw_errno("BERTH_ERR_SYSCALL", "fsync", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) throw_errno("BERTH_ERR_SYSCALL", "rename", path);
}

}  // namespace berth
