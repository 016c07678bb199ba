#include "server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "namespaces.h"
#include "rules.h"
#include "supervisor.h"

namespace berth {
namespace {

// A client that sends a longer line is dropped. `rules` lines carry whole tables.
constexpr size_t kMaxLine = 4 << 20;
constexpr int kMaxFdsPerClient = 4;
constexpr long kEventBatchNs = 100 * 1000000L;  // docs/proxy.md: events at most every 100 ms

void epoll_add(int ep, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno("BERTH_ERR_SYSCALL", "epoll_ctl", std::to_string(fd));
}

// Reads what is available from a log pipe into one record. Returns false on EOF.
bool pump(int fd, int stream, LogWriter& log) {
  char buf[16384];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  if (n == 0) return false;
  log.write(stream, buf, static_cast<size_t>(n));
  return true;
}

// sun_path holds 107 bytes, and DATA/containers/<64-hex id>/shim.sock passes that for any data
// dir longer than ~20 characters. A long path is reached through an O_PATH fd of its directory
// instead: /proc/self/fd/N/shim.sock resolves to the same place (berthd connects the same way).
sockaddr_un unix_address(const std::string& path, UniqueFd* dir_fd) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string addr_path = path;
  if (path.size() >= sizeof addr.sun_path) {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    dir_fd->reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd->valid()) throw_errno("BERTH_ERR_SYSCALL", "open", dir);
    addr_path = "/proc/self/fd/" + std::to_string(dir_fd->get()) + "/" + path.substr(slash + 1);
    if (addr_path.size() >= sizeof addr.sun_path) {
      errno = ENAMETOOLONG;
      throw_errno("BERTH_ERR_SYSCALL", "bind", path);
    }
  }
  std::memcpy(addr.sun_path, addr_path.c_str(), addr_path.size() + 1);
  return addr;
}

}  // namespace

std::string ExitInfo::fields_json() const {
  return "\"exitCode\":" + std::to_string(exit_code) + ",\"signal\":" + std::to_string(signal) +
         ",\"oomKilled\":" + (oom_killed ? "true" : "false") + ",\"finishedAt\":" + std::to_string(finished_at) +
         ",\"reason\":\"" + reason + "\"";
}

UniqueFd connect_unix(const std::string& path) {
  try {
    UniqueFd dir_fd;
    sockaddr_un addr = unix_address(path, &dir_fd);
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s.valid() || ::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return UniqueFd();
    return s;
  } catch (const SysError&) {
    return UniqueFd();
  }
}

ControlServer::ControlServer(std::string path) : path_(std::move(path)) {
  UniqueFd dir_fd;
  sockaddr_un addr = unix_address(path_, &dir_fd);
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_.valid()) throw_errno("BERTH_ERR_SYSCALL", "socket", path_);
  // A socket file left by a previous shim is replaced, unless a shim still answers on it: two
  // shims for one bundle would fight over its files.
  {
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      errno = EADDRINUSE;
      throw_errno("BERTH_ERR_SYSCALL", "bind", path_);
    }
  }
  ::unlink(path_.c_str());
  // umask around bind: the socket file is born 0600, with no window where others may connect.
  mode_t old = ::umask(0177);
  int rc = ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc < 0) throw_errno("BERTH_ERR_SYSCALL", "bind", path_);
  if (::listen(listen_.get(), 16) < 0) throw_errno("BERTH_ERR_SYSCALL", "listen", path_);
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) throw_errno("BERTH_ERR_SYSCALL", "epoll_create1");
  epoll_add(epoll_.get(), listen_.get());
}

ControlServer::~ControlServer() {
  for (auto& [fd, _] : clients_) ::close(fd);
  if (listen_.valid()) ::unlink(path_.c_str());
}

ExitInfo ControlServer::serve_until_exit(int pidfd, pid_t pid, int out_fd, int err_fd, LogWriter& log) {
  pidfd_ = pidfd;
  pid_ = pid;
  int ep = epoll_.get();
  epoll_add(ep, pidfd);
  epoll_add(ep, out_fd);
  epoll_add(ep, err_fd);
  const int events_fd = sup_ ? sup_->event_fd() : -1;
  if (sup_) {
    epoll_add(ep, events_fd);
    timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer_.valid()) throw_errno("BERTH_ERR_SYSCALL", "timerfd_create");
    epoll_add(ep, timer_.get());
  }
  if (tick_ && tick_ms_ > 0) {
    tick_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!tick_timer_.valid()) throw_errno("BERTH_ERR_SYSCALL", "timerfd_create");
    itimerspec its{};
    its.it_value.tv_sec = its.it_interval.tv_sec = tick_ms_ / 1000;
    its.it_value.tv_nsec = its.it_interval.tv_nsec = (tick_ms_ % 1000) * 1000000L;
    ::timerfd_settime(tick_timer_.get(), 0, &its, nullptr);
    epoll_add(ep, tick_timer_.get());
  }
  for (;;) {
    epoll_event evs[16];
    int n = ::epoll_wait(ep, evs, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("BERTH_ERR_SYSCALL", "epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == listen_.get()) {
        accept_clients();
      } else if (fd == events_fd) {
        // Something happened: send it in the next batch, not now (at most one line per 100 ms
        // per kind, however busy the container is).
        uint64_t v;
        (void)!::read(events_fd, &v, sizeof v);
        if (!timer_armed_) {
          itimerspec its{};
          its.it_value.tv_nsec = kEventBatchNs;
          ::timerfd_settime(timer_.get(), 0, &its, nullptr);
          timer_armed_ = true;
        }
      } else if (tick_timer_.valid() && fd == tick_timer_.get()) {
        uint64_t v;
        (void)!::read(fd, &v, sizeof v);
        tick_();
      } else if (timer_.valid() && fd == timer_.get()) {
        uint64_t v;
        (void)!::read(fd, &v, sizeof v);
        timer_armed_ = false;
        flush_events();
      } else if (fd == out_fd || fd == err_fd) {
        if (!pump(fd, fd == out_fd ? 1 : 2, log)) {
          ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        }
      } else if (fd == pidfd) {
        // The pidfd polls readable once the process has exited; waitid(P_PIDFD) reaps exactly
        // that child, never an unrelated one.
        siginfo_t si{};
        if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED) < 0) {
          if (errno == EINTR) continue;
          throw_errno("BERTH_ERR_SYSCALL", "waitid", std::to_string(pid));
        }
        running_ = false;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, pidfd, nullptr);
        ExitInfo info;
        if (si.si_code == CLD_EXITED) {
          info.exit_code = si.si_status;
        } else {
          info.signal = si.si_status;
          info.exit_code = 128 + si.si_status;
          info.reason = "signaled";
        }
        return info;
      } else {
        on_client(fd);
      }
    }
  }
}

void ControlServer::drain_logs(int out_fd, int err_fd, LogWriter& log, int timeout_ms) {
  // The pipes reach EOF once every process of the container has died: the kernel kills the rest
  // of a pid namespace when its init exits, so this normally takes milliseconds. The bound is for
  // a writer that escaped into another pid namespace (setns is denied by seccomp, but still).
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) return;
  int open = 0;
  for (int fd : {out_fd, err_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) == 0) open++;
  }
  struct timespec start{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  while (open > 0) {
    struct timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (elapsed >= timeout_ms) break;
    epoll_event evs[2];
    int n = ::epoll_wait(ep.get(), evs, 2, static_cast<int>(timeout_ms - elapsed));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (!pump(fd, fd == out_fd ? 1 : 2, log)) {
        ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, fd, nullptr);
        open--;
      }
    }
  }
}

void ControlServer::flush_events() {
  if (!sup_) return;
  for (const auto& line : sup_->take_events())
    for (auto it = clients_.begin(); it != clients_.end();) {
      int fd = (it++)->first;  // send_line may not drop, but stay safe against erasure
      send_line(fd, line);
    }
}

void ControlServer::finish(const std::string& line) {
  flush_events();
  for (auto it = clients_.begin(); it != clients_.end();) {
    send_line(it->first, line);
    ::close(it->first);
    it = clients_.erase(it);
  }
  ::unlink(path_.c_str());
  listen_.reset();
}

void ControlServer::accept_clients() {
  for (;;) {
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;  // EAGAIN, or a client that went away
    try {
      epoll_add(epoll_.get(), c);
    } catch (const SysError&) {
      ::close(c);
      continue;
    }
    clients_[c] = Client{};
  }
}

void ControlServer::drop(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  clients_.erase(fd);
}

void ControlServer::send_line(int fd, const std::string& line) {
  // Replies are small; a client that does not read them (full socket buffer) is dropped rather
  // than allowed to stall the loop that also carries the container's output.
  std::string data = line + "\n";
  ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(data.size())) ::shutdown(fd, SHUT_RDWR);
}

void ControlServer::on_client(int fd) {
  char buf[65536];
  Client& cl = clients_[fd];
  ssize_t n = recv_with_fds(fd, buf, sizeof buf, kMaxFdsPerClient, &cl.fds, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0 || cl.fds.size() > kMaxFdsPerClient) return drop(fd);
  std::string& in = cl.in;
  in.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = in.find('\n')) != std::string::npos) {
    std::string req = in.substr(0, nl);
    in.erase(0, nl + 1);
    send_line(fd, handle(fd, req));
    if (!clients_.count(fd)) return;
  }
  if (in.size() > kMaxLine) drop(fd);
}

std::string ControlServer::handle(int fd, const std::string& request) {
  try {
    if (request == "state") {
      std::string proxy;
      if (sup_) proxy = ",\"rulesVersion\":" + std::to_string(sup_->rules_version()) + ",\"chaosHits\":" + sup_->chaos_hits_json();
      return "{\"event\":\"state\",\"pid\":" + std::to_string(pid_) + ",\"running\":" + (running_ ? "true" : "false") + proxy + "}";
    }
    if (request.rfind("rules ", 0) == 0) {
      if (!sup_) throw_error("BERTH_ERR_CONFIG", "rules: this shim has no supervisor");
      auto rules = std::make_shared<const Rules>(parse_rules_text(request.substr(6)));
      return "{\"ok\":true,\"version\":" + std::to_string(sup_->set_rules(rules)) + "}";
    }
    if (request == "listener") {
      // `berth-shim exec` hands over its command's seccomp listener (docs/proxy.md).
      Client& cl = clients_[fd];
      if (!sup_ || cl.fds.empty()) throw_error("BERTH_ERR_CONFIG", "listener: no file descriptor came with the request");
      UniqueFd l = std::move(cl.fds.front());
      cl.fds.erase(cl.fds.begin());
      char link[64] = "";
      std::string self = "/proc/self/fd/" + std::to_string(l.get());
      ssize_t len = ::readlink(self.c_str(), link, sizeof link - 1);
      if (len <= 0 || std::string(link, static_cast<size_t>(len)) != "anon_inode:seccomp notify")
        throw_error("BERTH_ERR_CONFIG", "listener: not a seccomp notification fd");
      sup_->add_listener(std::move(l));
      return "{\"ok\":true}";
    }
    if (request.rfind("kill ", 0) == 0) {
      std::string num = request.substr(5);
      if (num.empty() || num.size() > 2 || num.find_first_not_of("0123456789") != std::string::npos)
        throw_error("BERTH_ERR_CONFIG", "kill: not a signal number: " + num);
      int sig = std::stoi(num);
      if (sig < 1 || sig > 64) throw_error("BERTH_ERR_CONFIG", "kill: not a signal number: " + num);
      if (!running_) {
        errno = ESRCH;
        throw_errno("BERTH_ERR_SYSCALL", "pidfd_send_signal", std::to_string(pid_));
      }
      // Through the pidfd: the container's PID 1 may have exited and its pid been reused by
      // the time we get here; the pidfd still names the dead process, so ESRCH, never a stranger.
      if (sys_pidfd_send_signal(pidfd_, sig) < 0)
        throw_errno("BERTH_ERR_SYSCALL", "pidfd_send_signal", std::to_string(pid_));
      return "{\"ok\":true}";
    }
    throw_error("BERTH_ERR_CONFIG", "unknown request `" + request.substr(0, 64) + "`");
  } catch (const SysError& e) {
    return e.to_json();
  }
}

}  // namespace berth
