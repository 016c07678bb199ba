#include "supervisor.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <climits>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "hostaddrs.h"
#include "mounts.h"
#include "namespaces.h"
#include "pacer.h"
#include "sockcount.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
// Linux 6.6 (the headers here may be older).
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

namespace berth {
namespace {

// Threads per listener, taking turns in SECCOMP_IOCTL_NOTIF_RECV (SupervisorImpl::serve). A
// routed connect spends much of its time waiting (for the trapped task to install the fd, for
// the loopback handshake), so several threads keep several connects in flight.
constexpr int kThreadsPerListener = 4;
constexpr size_t kPidCacheMax = 512;
constexpr size_t kFdinfoCacheMax = 128;

// Set on a supervisor thread whose CPU its container's cgroup cannot be charged for (v2): it
// paces itself to the container's quota between notifications (SupervisorImpl::thread_started).
thread_local CpuPacer* t_pacer = nullptr;

long long wall_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

long long mono_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

// ---- the kernel's notification interface -------------------------------------------------

struct Listener {
  UniqueFd fd;
  std::mutex recv_mu;  // the one thread in RECV holds it (serve)
  bool gone = false;   // under recv_mu: every process using the filter has exited
};
using ListenerRef = std::shared_ptr<Listener>;

// One notification, with the arguments as the kernel captured them (registers, not memory).
struct Notif {
  ListenerRef l;
  uint64_t id = 0;
  pid_t pid = 0;
  int nr = -1;
  uint64_t args[6]{};
};

bool id_valid(const Notif& n) {
  uint64_t id = n.id;
  return ::ioctl(n.l->fd.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

void respond(const Notif& n, long long val, int err, uint32_t flags = 0) {
  seccomp_notif_resp r{};
  r.id = n.id;
  r.val = val;
  r.error = err ? -err : 0;
  r.flags = flags;
  // ENOENT: the call was interrupted (signal) or the task died; nothing to answer any more.
  ::ioctl(n.l->fd.get(), SECCOMP_IOCTL_NOTIF_SEND, &r);
}
void answer_continue(const Notif& n) { respond(n, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE); }
void answer_errno(const Notif& n, int err) { respond(n, -1, err); }
void answer_ok(const Notif& n) { respond(n, 0, 0); }

// Copies LEN bytes of the workload's memory at ADDR. Returns false on any short read.
bool read_mem(pid_t pid, uint64_t addr, void* buf, size_t len) {
  if (len == 0) return true;
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  return ::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

bool write_mem(pid_t pid, uint64_t addr, const void* buf, size_t len) {
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  return ::process_vm_writev(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

// A NUL-terminated string of at most MAX bytes, read page by page (a string near the end of a
// mapping must not fail because the next page is unmapped). Returns false when it is longer or
// unreadable; *err is then ENAMETOOLONG or EFAULT.
bool read_string(pid_t pid, uint64_t addr, size_t max, std::string* out, int* err) {
  out->clear();
  char buf[4096];
  while (out->size() <= max) {
    size_t room = 4096 - (addr & 4095);
    if (!read_mem(pid, addr, buf, room)) {
      *err = EFAULT;
      return false;
    }
    size_t len = ::strnlen(buf, room);
    out->append(buf, len);
    if (len < room) {
      if (out->size() > max) break;
      return true;
    }
    addr += room;
  }
  *err = ENAMETOOLONG;
  return false;
}

// ---- sockets ----------------------------------------------------------------------------

int sockopt_int(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, level, name, &v, &len) < 0) return -1;
  return v;
}

uint64_t netns_cookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len) < 0) return 0;
  return c;
}

// The options replayed from the workload's socket onto the host socket (docs/proxy.md). SO_MARK
// and SO_BINDTODEVICE are not: they name the host's routing and interfaces.
struct OptSpec {
  int level, name;
  int family;   // 0 = any; AF_INET/AF_INET6 = only between sockets of that family
  bool halve;   // SO_SNDBUF/SO_RCVBUF: the kernel reports twice what was set
  bool tcp;
};
constexpr OptSpec kOpts[] = {
    {SOL_SOCKET, SO_REUSEADDR, 0, false, false},  {SOL_SOCKET, SO_REUSEPORT, 0, false, false},
    {SOL_SOCKET, SO_KEEPALIVE, 0, false, false},  {SOL_SOCKET, SO_SNDBUF, 0, true, false},
    {SOL_SOCKET, SO_RCVBUF, 0, true, false},      {SOL_SOCKET, SO_LINGER, 0, false, false},
    {SOL_SOCKET, SO_RCVTIMEO_NEW, 0, false, false}, {SOL_SOCKET, SO_SNDTIMEO_NEW, 0, false, false},
    {SOL_SOCKET, SO_PRIORITY, 0, false, false},   {SOL_SOCKET, SO_BROADCAST, 0, false, false},
    {SOL_SOCKET, SO_OOBINLINE, 0, false, false},  {IPPROTO_TCP, TCP_NODELAY, 0, false, true},
    {IPPROTO_TCP, TCP_KEEPIDLE, 0, false, true},  {IPPROTO_TCP, TCP_KEEPINTVL, 0, false, true},
    {IPPROTO_TCP, TCP_KEEPCNT, 0, false, true},   {IPPROTO_TCP, TCP_USER_TIMEOUT, 0, false, true},
    {IPPROTO_TCP, TCP_CONGESTION, 0, false, true}, {IPPROTO_TCP, TCP_NOTSENT_LOWAT, 0, false, true},
    {IPPROTO_IP, IP_TOS, AF_INET, false, false},  {IPPROTO_IP, IP_TTL, AF_INET, false, false},
    {IPPROTO_IPV6, IPV6_V6ONLY, AF_INET6, false, false}, {IPPROTO_IPV6, IPV6_TCLASS, AF_INET6, false, false},
};
constexpr size_t kNumOpts = sizeof kOpts / sizeof kOpts[0];
constexpr size_t kSndTimeoIdx = 7;
static_assert(kOpts[kSndTimeoIdx].level == SOL_SOCKET && kOpts[kSndTimeoIdx].name == SO_SNDTIMEO_NEW);

struct OptValue {
  unsigned char v[24];
  socklen_t len = 0;
  bool ok = false;
};
struct OptSnapshot {
  OptValue o[kNumOpts];
};

void snapshot(int fd, int family, int type, OptSnapshot* s) {
  for (size_t i = 0; i < kNumOpts; i++) {
    const OptSpec& spec = kOpts[i];
    OptValue& v = s->o[i];
    v.ok = false;
    if ((spec.tcp && type != SOCK_STREAM) || (spec.family && spec.family != family)) continue;
    v.len = sizeof v.v;
    v.ok = ::getsockopt(fd, spec.level, spec.name, v.v, &v.len) == 0;
  }
}

// Sets on HOST every option where the workload's socket differs from a fresh one's defaults.
void replay(const OptSnapshot& workload, const OptSnapshot& defaults, int host, int host_family) {
  for (size_t i = 0; i < kNumOpts; i++) {
    const OptSpec& spec = kOpts[i];
    const OptValue& w = workload.o[i];
    const OptValue& d = defaults.o[i];
    if (!w.ok || (spec.family && spec.family != host_family)) continue;
    if (d.ok && d.len == w.len && std::memcmp(d.v, w.v, w.len) == 0) continue;
    if (spec.halve) {
      int n;
      std::memcpy(&n, w.v, sizeof n);
      n /= 2;
      ::setsockopt(host, spec.level, spec.name, &n, sizeof n);
    } else {
      ::setsockopt(host, spec.level, spec.name, w.v, w.len);
    }
  }
}

socklen_t to_sockaddr(const Endpoint& e, int family, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof *ss);
  IpAddr ip = unmap_ip(e.ip);
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(e.port);
    std::memcpy(&in->sin_addr, ip.b, 4);
    return sizeof *in;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(e.port);
  if (ip.family == AF_INET) {
    in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;  // ::ffff:a.b.c.d
    std::memcpy(in6->sin6_addr.s6_addr + 12, ip.b, 4);
  } else {
    std::memcpy(&in6->sin6_addr, ip.b, 16);
  }
  return sizeof *in6;
}

// ---- deferred work: chaos delays and blocking connects, off the worker threads ------------

class Waiter {
 public:
  // ON_START runs first on the waiter's thread (the supervisor's charge, SupervisorImpl).
  explicit Waiter(std::function<void()> on_start) {
    ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
    wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!ep_.valid() || !wake_.valid()) throw_errno("BERTH_ERR_SYSCALL", "epoll_create1/eventfd", "supervisor");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    ::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
    thread_ = std::thread([this, on_start = std::move(on_start)] {
      on_start();
      run();
    });
    thread_.detach();  // lives as long as the shim
  }

  // FN(false) after MS milliseconds.
  void after(long long ms, std::function<void(bool)> fn) { add(-1, mono_ms() + ms, std::move(fn)); }
  // FN(false) once FD is writable (or in error), FN(true) at DEADLINE_MS (monotonic; -1 never).
  void when_writable(int fd, long long deadline_ms, std::function<void(bool)> fn) { add(fd, deadline_ms, std::move(fn)); }

 private:
  struct Item {
    int fd;
    long long deadline;
    std::function<void(bool)> fn;
  };

  void add(int fd, long long deadline, std::function<void(bool)> fn) {
    uint64_t key;
    {
      std::lock_guard<std::mutex> g(mu_);
      key = ++next_;
      items_[key] = Item{fd, deadline, std::move(fn)};
    }
    if (fd >= 0) {
      epoll_event ev{};
      ev.events = EPOLLOUT | EPOLLONESHOT;
      ev.data.u64 = key;
      if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
        fire(key, false);
        return;
      }
    }
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }

  void fire(uint64_t key, bool timed_out) {
    Item it;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto f = items_.find(key);
      if (f == items_.end()) return;
      it = std::move(f->second);
      items_.erase(f);
    }
    if (it.fd >= 0) ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, it.fd, nullptr);
    try {
      it.fn(timed_out);
    } catch (...) {
    }
  }

  void run() {
    for (;;) {
      long long next = -1;
      std::vector<uint64_t> due;
      {
        std::lock_guard<std::mutex> g(mu_);
        long long now = mono_ms();
        for (auto& [k, it] : items_) {
          if (it.deadline < 0) continue;
          if (it.deadline <= now) due.push_back(k);
          else if (next < 0 || it.deadline < next) next = it.deadline;
        }
      }
      for (uint64_t k : due) fire(k, true);
      if (!due.empty()) continue;
      int timeout = next < 0 ? -1 : static_cast<int>(std::max(0LL, next - mono_ms()));
      epoll_event evs[16];
      int n = ::epoll_wait(ep_.get(), evs, 16, timeout);
      for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == 0) {
          uint64_t v;
          (void)!::read(wake_.get(), &v, sizeof v);
        } else {
          fire(evs[i].data.u64, false);
        }
      }
    }
  }

  UniqueFd ep_, wake_;
  std::thread thread_;
  std::mutex mu_;
  uint64_t next_ = 0;
  std::map<uint64_t, Item> items_;
};

// ---- counters ----------------------------------------------------------------------------

enum class Action { ROUTED, BOUND, DENIED, FAULTED, EMULATED };
const char* action_name(Action a) {
  switch (a) {
    case Action::ROUTED: return "routed";
    case Action::BOUND: return "bound";
    case Action::DENIED: return "denied";
    case Action::FAULTED: return "faulted";
    case Action::EMULATED: return "emulated";
  }
  return "?";
}

// One row of a `calls` event. `other` is the row every target past kMaxEventTargets is folded
// into (reported as target "other"), so that a workload spraying calls at many distinct
// addresses cannot make an event line (and this map) grow without bound.
struct CountKey {
  const char* call;
  Action action;
  int family;
  uint8_t ip[16];
  uint16_t port;
  bool other;
  bool operator<(const CountKey& o) const {
    if (int c = std::strcmp(call, o.call)) return c < 0;
    if (action != o.action) return action < o.action;
    if (other != o.other) return other < o.other;
    if (family != o.family) return family < o.family;
    if (port != o.port) return port < o.port;
    return std::memcmp(ip, o.ip, 16) < 0;
  }
};

// Distinct targets one `calls` event names (about 80 bytes each, so a line stays near 20 KiB,
// well inside a Unix socket's buffer); berthd bounds what it keeps on its side too.
constexpr size_t kMaxEventTargets = 256;

// ---- mknod and mount on the workload's behalf ------------------------------------------------

// Runs FN in a forked child that has joined the container's user and mount namespaces (through
// PIDFD, the container's PID 1) as the container's root; FN returns 0 or an errno, which is the
// result. The child is single-threaded (setns into a user namespace requires it) and calls only
// system calls: the parent is multithreaded, so after fork nothing may take a lock (no malloc).
int in_container(int pidfd, bool userns, bool pid_ns, const std::function<int()>& fn) {
  pid_t child = ::fork();
  if (child < 0) return errno;
  if (child == 0) {
    int flags = CLONE_NEWNS | (userns ? CLONE_NEWUSER : 0) | (pid_ns ? CLONE_NEWPID : 0);
    if (::setns(pidfd, flags) < 0) ::_exit(errno & 0xff);
    if (userns && (::setresgid(0, 0, 0) < 0 || ::setresuid(0, 0, 0) < 0)) ::_exit(errno & 0xff);
    if (pid_ns) {
      // A pid namespace applies to children only; proc's fs_context takes the caller's.
      pid_t g = ::fork();
      if (g < 0) ::_exit(errno & 0xff);
      if (g == 0) ::_exit(fn() & 0xff);
      int st = 0;
      while (::waitpid(g, &st, 0) < 0 && errno == EINTR) {
      }
      ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : EIO);
    }
    ::_exit(fn() & 0xff);
  }
  int st = 0;
  while (::waitpid(child, &st, 0) < 0) {
    if (errno != EINTR) return ECHILD;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : EIO;
}

// Splits PATH into the directory to open and the last component. "" for "/" or a trailing "..".
void split_path(const std::string& path, std::string* dir, std::string* base) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) {
    *dir = ".";
    *base = p;
  } else {
    *dir = slash == 0 ? "/" : p.substr(0, slash);
    *base = p.substr(slash + 1);
  }
}

struct ProcStatus {
  uint64_t cap_eff = 0;
  long euid = -1;
  long egid = -1;
};
ProcStatus proc_status(pid_t pid) {
  ProcStatus s;
  try {
    std::string st = read_file("/proc/" + std::to_string(pid) + "/status");
    size_t p = st.find("\nUid:");
    if (p != std::string::npos) {
      char* end;
      std::strtol(st.c_str() + p + 5, &end, 10);  // real
      s.euid = std::strtol(end, nullptr, 10);      // effective
    }
    p = st.find("\nGid:");
    if (p != std::string::npos) {
      char* end;
      std::strtol(st.c_str() + p + 5, &end, 10);  // real
      s.egid = std::strtol(end, nullptr, 10);      // effective
    }
    p = st.find("\nCapEff:");
    if (p != std::string::npos) s.cap_eff = std::strtoull(st.c_str() + p + 8, nullptr, 16);
  } catch (const SysError&) {
  }
  return s;
}

}  // namespace

// ---- the supervisor ----------------------------------------------------------------------

class SupervisorImpl {
 public:
  SupervisorImpl(const Config& cfg, Cgroup* cgroup, SupervisorCgroup* charge, std::shared_ptr<const Rules> initial)
      : cfg_(cfg), cgroup_(cgroup), charge_(charge), rules_(std::move(initial)) {
    if (cfg.cpu_quota_us > 0) pacer_ = std::make_unique<CpuPacer>(cfg.cpu_quota_us, cfg.cpu_period_us);
    uint64_t seed = 0;
    (void)!::getrandom(&seed, sizeof seed, 0);
    rng_ = std::make_unique<Rng>(seed ^ static_cast<uint64_t>(::getpid()));
    events_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!events_.valid()) throw_errno("BERTH_ERR_SYSCALL", "eventfd", "supervisor");
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    host_netns_ = s.valid() ? netns_cookie(s.get()) : 0;
    // The container's own loopback source address for routed connections to loopback targets:
    // 127.A.B.C from a hash of its cgroup path (unique per container), never in 127.0.0.0/16
    // where the host's own loopback clients are. Its (source, destination) port space is then
    // the container's alone: filling it fails its own connects, nobody else's.
    uint32_t h = 2166136261u;  // FNV-1a
    for (unsigned char ch : cfg_.cgroup) h = (h ^ ch) * 16777619u;
    const uint8_t src[4] = {127, static_cast<uint8_t>(1 + h % 254), static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(1 + (h >> 16) % 254)};
    std::memcpy(&loopback_src_, src, 4);
    ephemeral_low_ = ephemeral_port_low();
    // Egress must not reach the host's own addresses (decide_connect): read them before the
    // workload can connect anywhere. Only the socket and the first list here; the thread that
    // keeps the list current starts with the supervisor (start), after the container's first
    // process has been cloned from this still single-threaded process.
    if (cfg_.private_net) open_host_addresses();
  }

  void set_host_cgroup(uint64_t id) { host_cgroup_id_ = id; }

  void start(pid_t pid, int pidfd, unsigned long long started_at_ms) {
    std::vector<ListenerRef> early;
    {
      std::lock_guard<std::mutex> g(listeners_mu_);
      if (started_) return;
      pid1_ = pid;
      pid1_fd_ = pidfd;
      started_at_ms_ = started_at_ms;
      waiter_ = std::make_unique<Waiter>([this] { thread_started(); });
      watch_host_addresses();
      started_ = true;
      early.swap(early_);
    }
    for (auto& l : early) serve_listener(std::move(l));
  }

  void add_listener(UniqueFd fd) {
    auto l = std::make_shared<Listener>();
    l->fd = std::move(fd);
    // Synchronous wake-ups (Linux 6.6+): a trapped call wakes the receiving thread, and an answer
    // the trapped task, on the waker's CPU, which the waker is about to leave, instead of wherever
    // the scheduler finds room. Best effort: an older kernel says EINVAL/ENOTTY and wake-ups stay
    // as they were.
    ::ioctl(l->fd.get(), SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
    {
      std::lock_guard<std::mutex> g(listeners_mu_);
      if (!started_) {
        early_.push_back(std::move(l));  // served from start()
        return;
      }
    }
    serve_listener(std::move(l));
  }

  unsigned long long set_rules(std::shared_ptr<const Rules> r) {
    std::lock_guard<std::mutex> g(rules_mu_);
    auto cur = rules_.load();
    if (r->version <= cur->version) return cur->version;
    rules_.store(std::shared_ptr<const Rules>(std::move(r)));
    return rules_.load()->version;
  }
  unsigned long long rules_version() const { return rules_.load()->version; }

  std::string chaos_hits_json(bool delta) {
    std::lock_guard<std::mutex> g(count_mu_);
    return hits_json(delta ? hits_delta_ : hits_total_);
  }

  int event_fd() const { return events_.get(); }

  std::vector<std::string> take_events() {
    uint64_t v;
    (void)!::read(events_.get(), &v, sizeof v);
    pending_.store(false);
    std::vector<std::string> out;
    std::lock_guard<std::mutex> g(count_mu_);
    out.swap(port_events_);
    if (!counts_.empty() || !hits_delta_.empty()) {
      std::string line = "{\"event\":\"calls\",\"counts\":[";
      bool first = true;
      for (const auto& [k, n] : counts_) {
        Endpoint e;
        e.ip.family = k.family;
        std::memcpy(e.ip.b, k.ip, 16);
        e.port = k.port;
        const std::string target = k.other ? "other" : k.family ? format_endpoint(e) : "";
        line += std::string(first ? "" : ",") + "{\"call\":\"" + k.call + "\",\"action\":\"" + action_name(k.action) +
                "\",\"target\":\"" + json_escape(target) + "\",\"n\":" + std::to_string(n) + "}";
        first = false;
      }
      line += "],\"chaosHits\":" + hits_json(hits_delta_) + "}";
      out.push_back(std::move(line));
      counts_.clear();
      targets_ = 0;
      hits_delta_.clear();
    }
    return out;
  }

 private:
  static std::string hits_json(const std::map<std::string, uint64_t>& m) {
    std::string s = "{";
    for (const auto& [id, n] : m) s += (s.size() > 1 ? ",\"" : "\"") + json_escape(id) + "\":" + std::to_string(n);
    return s + "}";
  }

  void signal_events() {
    if (!pending_.exchange(true)) {
      uint64_t one = 1;
      (void)!::write(events_.get(), &one, sizeof one);
    }
  }

  void count(Call call, Action a, const Endpoint* e) {
    CountKey k{};
    k.call = call_name(call);
    k.action = a;
    if (e) {
      k.family = e->ip.family;
      std::memcpy(k.ip, e->ip.b, 16);
      k.port = e->port;
    }
    {
      std::lock_guard<std::mutex> g(count_mu_);
      auto it = counts_.find(k);
      if (it == counts_.end() && k.family != 0 && targets_ >= kMaxEventTargets) {
        // Past the cap: fold into this call and action's "other" row.
        k.family = 0;
        k.port = 0;
        std::memset(k.ip, 0, sizeof k.ip);
        k.other = true;
        it = counts_.find(k);
      }
      if (it == counts_.end()) {
        it = counts_.emplace(k, 0).first;
        if (k.family != 0) targets_++;
      }
      it->second++;
    }
    signal_events();
  }
  void count_name(const char* call, Action a) {
    CountKey k{};
    k.call = call;
    k.action = a;
    {
      std::lock_guard<std::mutex> g(count_mu_);
      counts_[k]++;
    }
    signal_events();
  }

  void hit(const std::string& id) {
    std::lock_guard<std::mutex> g(count_mu_);
    hits_total_[id]++;
    hits_delta_[id]++;
  }

  // ---- receiving ----

  void serve_listener(ListenerRef l) {
    for (int i = 0; i < kThreadsPerListener; i++) {
      std::thread([this, l] {
        thread_started();
        serve(l);
      }).detach();
    }
  }

  // First thing on every thread the supervisor starts: its work is the container's (cgroups.h,
  // SupervisorCgroup). Where the thread cannot join the container's cpu cgroup and the container
  // has a CPU limit, it is paced to that limit instead.
  void thread_started() {
    const bool charged = charge_ && charge_->join_thread();
    t_pacer = charged ? nullptr : pacer_.get();
  }

  // A listener's threads take turns waiting in SECCOMP_IOCTL_NOTIF_RECV: the one holding recv_mu
  // waits, and lets go as soon as it has a notification, so the next one waits while it answers.
  // Blocking in RECV itself (not in epoll) keeps the trapped task's synchronous wake-up: epoll's
  // own wake-up of its waiter is an ordinary one. Only one thread at a time, because the kernel
  // wakes every thread waiting in RECV on a notification, and all of them on the trapped task's
  // CPU. The threads end when every process using the filter has exited (RECV then fails with
  // ENOENT at once, and the fd polls POLLHUP); the listener is closed with the last reference.
  void serve(ListenerRef l) {
    // Sized by the kernel (SECCOMP_GET_NOTIF_SIZES): the structs may grow in later kernels.
    seccomp_notif_sizes sizes{};
    if (::syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0) sizes.seccomp_notif = sizeof(seccomp_notif);
    std::vector<unsigned char> buf(std::max<size_t>(sizes.seccomp_notif, sizeof(seccomp_notif)));
    auto* req = reinterpret_cast<seccomp_notif*>(buf.data());
    for (;;) {
      if (t_pacer) t_pacer->pace();
      {
        std::lock_guard<std::mutex> g(l->recv_mu);
        if (l->gone) return;
        std::memset(buf.data(), 0, buf.size());
        if (::ioctl(l->fd.get(), SECCOMP_IOCTL_NOTIF_RECV, req) < 0) {
          if (errno == EINTR) continue;
          // ENOENT: the task went away between its wake-up and our receive, or nobody uses the
          // filter any more (then POLLHUP). Anything else (EBADF...) would repeat: give up.
          pollfd p{l->fd.get(), POLLIN, 0};
          if (errno != ENOENT || (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)))) l->gone = true;
          continue;
        }
      }
      Notif nt;
      nt.l = l;
      nt.id = req->id;
      nt.pid = static_cast<pid_t>(req->pid);
      nt.nr = req->data.nr;
      std::memcpy(nt.args, req->data.args, sizeof nt.args);
      try {
        dispatch(nt);
      } catch (...) {
        answer_errno(nt, EIO);
      }
    }
  }

  void dispatch(const Notif& n) {
    switch (n.nr) {
      case __NR_bind: return on_bind(n);
      case __NR_connect: return on_connect(n);
      case __NR_listen: return on_listen(n);
      case __NR_sendto: return on_sendto(n);
      case __NR_sysinfo: return on_sysinfo(n);
      case __NR_mknod: return on_mknod(n, AT_FDCWD, n.args[0], n.args[1], n.args[2]);
      case __NR_mknodat: return on_mknod(n, static_cast<int>(n.args[0]), n.args[1], n.args[2], n.args[3]);
      case __NR_mount: return on_mount(n);
      case __NR_uname: return on_uname(n);
#ifdef __NR_open
      case __NR_open: return on_open(n, AT_FDCWD, n.args[0]);
#endif
      case __NR_openat: return on_open(n, static_cast<int>(n.args[0]), n.args[1]);
      case __NR_openat2: return on_open(n, static_cast<int>(n.args[0]), n.args[1]);
      default: return answer_continue(n);
    }
  }

  // ---- per-pid handles ----

  // A pidfd for the notifying thread, cached: one pidfd_open per thread, not per call. A cached
  // pidfd of a dead thread whose tid was reused fails with ESRCH and is replaced once.
  int pidfd_for(pid_t tid, bool fresh) {
    std::lock_guard<std::mutex> g(pid_mu_);
    auto it = pidfds_.find(tid);
    if (it != pidfds_.end() && !fresh) return it->second.get();
    if (pidfds_.size() >= kPidCacheMax) pidfds_.clear();
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
    if (fd < 0) fd = static_cast<int>(::syscall(SYS_pidfd_open, tid, 0));
    if (fd < 0) return -1;
    pidfds_[tid] = UniqueFd(fd);
    return fd;
  }

  // The workload's fd FD, duplicated into the shim (pidfd_getfd), or an invalid fd.
  UniqueFd get_fd(const Notif& n, int fd) {
    for (int attempt = 0; attempt < 2; attempt++) {
      int pfd = pidfd_for(n.pid, attempt > 0);
      if (pfd < 0) return UniqueFd();
      int got = static_cast<int>(::syscall(SYS_pidfd_getfd, pfd, fd, 0));
      if (got >= 0) return UniqueFd(got);
      if (errno != ESRCH) return UniqueFd();
    }
    return UniqueFd();
  }

  // O_CLOEXEC of the workload's fd FD (its fd flags are not shared with our duplicate), from
  // /proc/TID/fdinfo/FD. The open file is kept per thread and fd number: a proc fdinfo file shows
  // whatever that task has at that number at the time of each read (ENOENT once it is closed, an
  // error once the task is gone), so a connect costs one pread instead of open + read + close.
  // A stale entry (a closed fd, a dead task whose tid now names another) fails and is reopened.
  unsigned cloexec_of(pid_t tid, int fd) {
    char buf[256];
    ssize_t len = -1;
    {
      std::lock_guard<std::mutex> g(pid_mu_);
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(tid)) << 32) | static_cast<uint32_t>(fd);
      auto it = fdinfo_.find(key);
      if (it != fdinfo_.end()) {
        len = ::pread(it->second.get(), buf, sizeof buf - 1, 0);
        if (len <= 0) fdinfo_.erase(it);
      }
      if (len <= 0) {
        char path[64];
        std::snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", tid, fd);
        UniqueFd f(::open(path, O_RDONLY | O_CLOEXEC));
        if (!f.valid()) return O_CLOEXEC;
        len = ::pread(f.get(), buf, sizeof buf - 1, 0);
        if (len > 0) {
          if (fdinfo_.size() >= kFdinfoCacheMax) fdinfo_.clear();
          fdinfo_[key] = std::move(f);
        }
      }
    }
    if (len <= 0) return O_CLOEXEC;
    buf[len] = 0;
    const char* p = std::strstr(buf, "flags:");
    if (!p) return O_CLOEXEC;
    unsigned long flags = std::strtoul(p + 6, nullptr, 8);
    return (flags & O_CLOEXEC) ? O_CLOEXEC : 0;
  }

  // Puts HOST in place of the workload's fd FD (same number). Returns 0 or an errno: ENOENT when
  // the notification is no longer pending (the kernel checks the id itself, atomically with the
  // install, so this is the "before acting" check of docs/proxy.md).
  int inject(const Notif& n, int host, int fd) {
    seccomp_notif_addfd a{};
    a.id = n.id;
    a.flags = SECCOMP_ADDFD_FLAG_SETFD;
    a.srcfd = static_cast<uint32_t>(host);
    a.newfd = static_cast<uint32_t>(fd);
    a.newfd_flags = cloexec_of(n.pid, fd);
    if (::ioctl(n.l->fd.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &a) < 0) return errno;
    return 0;
  }

  const OptSnapshot& defaults_for(int family, int type, int proto) {
    std::lock_guard<std::mutex> g(defaults_mu_);
    int key = (family << 16) ^ (type << 8) ^ proto;
    auto it = defaults_.find(key);
    if (it != defaults_.end()) return *it->second;
    auto snap = std::make_unique<OptSnapshot>();
    UniqueFd s(::socket(family, type | SOCK_CLOEXEC, proto));
    if (s.valid()) snapshot(s.get(), family, type, snap.get());
    return *(defaults_[key] = std::move(snap));
  }

  // Copies and decodes the sockaddr argument. Returns its family, or -1 (bad length/unreadable).
  static int read_sockaddr(const Notif& n, uint64_t addr, uint64_t len, Endpoint* ep) {
    sockaddr_storage ss;
    if (len < sizeof(sa_family_t) || len > sizeof ss) return -1;
    if (!read_mem(n.pid, addr, &ss, len)) return -1;
    return decode_sockaddr(&ss, len, ep);
  }

  // Chaos for CALL on DST/PATH: returns true when it took over the notification (an errno, or a
  // delay after which THEN runs).
  bool chaos(const Notif& n, const Rules& r, Call call, const Endpoint* dst, const std::string* path,
             std::function<void()> then) {
    if (r.chaos.empty()) return false;
    int idx = select_chaos(r, call, dst, path, wall_ms(), *rng_);
    if (idx < 0) return false;
    const ChaosRule& c = r.chaos[static_cast<size_t>(idx)];
    hit(c.id);
    count(call, Action::FAULTED, dst);
    int err = c.err;
    if (c.delay_ms == 0) {
      if (err) answer_errno(n, err);
      else then();
      return true;
    }
    Notif held = n;
    waiter_->after(c.delay_ms, [this, held, err, then](bool) {
      if (err) answer_errno(held, err);
      else then();
    });
    return true;
  }

  // ---- bind ----

  void on_bind(const Notif& n) {
    const int fd = static_cast<int>(n.args[0]);
    Endpoint ep;
    int fam = read_sockaddr(n, n.args[1], n.args[2], &ep);
    if (!id_valid(n)) return;
    if (fam != AF_INET && fam != AF_INET6) return answer_continue(n);
    auto rules = rules_.load();
    Notif held = n;
    if (chaos(n, *rules, Call::BIND, &ep, nullptr, [this, held, fd, ep, rules] { bind_decided(held, *rules, fd, ep); }))
      return;
    bind_decided(n, *rules, fd, ep);
  }

  void bind_decided(const Notif& n, const Rules& rules, int fd, const Endpoint& ep) {
    UniqueFd ws = get_fd(n, fd);
    if (!ws.valid()) return answer_continue(n);  // EBADF/ENOTSOCK: the kernel says so itself
    const bool host_socket = netns_cookie(ws.get()) == host_netns_;
    const int type = sockopt_int(ws.get(), SOL_SOCKET, SO_TYPE);
    // TCP only: a host UDP socket would accept sendmsg to any destination (sendmsg is not
    // trapped), so a declared udp port is not bound on the host yet (docs/proxy.md).
    const PortRule* pr = type == SOCK_STREAM ? match_port(rules, ep.port, type) : nullptr;
    if (!pr) {
      // A socket we injected lives in the host's namespace: binding it elsewhere would take a
      // host port nobody declared.
      if (host_socket) return answer_errno(n, EACCES);
      return answer_continue(n);
    }
    // What the workload could not do itself, it does not get: below its network namespace's
    // ip_unprivileged_port_start a bind needs CAP_NET_BIND_SERVICE, as the kernel's own would
    // ask (the shim, host root, would pass any such check).
    constexpr int kCapNetBindService = 10;
    if (ep.port < unprivileged_port_start() && !(proc_status(n.pid).cap_eff & (1ULL << kCapNetBindService))) {
      count(Call::BIND, Action::DENIED, &ep);
      return answer_errno(n, EACCES);
    }
    bind_host(n, *pr, std::move(ws), fd);
  }

  void bind_host(const Notif& n, const PortRule& pr, UniqueFd ws, int fd) {
    const int family = sockopt_int(ws.get(), SOL_SOCKET, SO_DOMAIN);
    const int type = sockopt_int(ws.get(), SOL_SOCKET, SO_TYPE);
    const int proto = sockopt_int(ws.get(), SOL_SOCKET, SO_PROTOCOL);
    const int fl = ::fcntl(ws.get(), F_GETFL);
    UniqueFd hs(::socket(family, type | SOCK_CLOEXEC, proto));
    if (!hs.valid()) return answer_errno(n, errno);
    OptSnapshot w;
    snapshot(ws.get(), family, type, &w);
    replay(w, defaults_for(family, type, proto), hs.get(), family);
    if (fl >= 0 && (fl & O_NONBLOCK)) ::fcntl(hs.get(), F_SETFL, O_NONBLOCK);
    Endpoint host{pr.host_address, pr.host_port};
    if (family == AF_INET6 && ip_is_unspecified(pr.host_address)) host.ip = IpAddr{AF_INET6, {}};
    if (family == AF_INET && unmap_ip(pr.host_address).family != AF_INET) return answer_errno(n, EADDRNOTAVAIL);
    sockaddr_storage ss;
    socklen_t len = to_sockaddr(host, family, &ss);
    if (::bind(hs.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      int err = errno;
      count(Call::BIND, Action::DENIED, &host);
      return answer_errno(n, err);
    }
    if (!id_valid(n)) return;
    if (int err = inject(n, hs.get(), fd)) return answer_errno(n, err == ENOENT ? EINTR : err);
    answer_ok(n);
    count(Call::BIND, Action::BOUND, &host);
    std::string ev = "{\"event\":\"port\",\"name\":\"" + json_escape(pr.name) + "\",\"port\":" + std::to_string(pr.port) +
                     ",\"proto\":\"" + (pr.proto == PROTO_UDP ? "udp" : pr.proto == PROTO_ANY ? "any" : "tcp") +
                     "\",\"hostAddress\":\"" + json_escape(pr.host_address_text) +
                     "\",\"hostPort\":" + std::to_string(pr.host_port) + "}";
    {
      std::lock_guard<std::mutex> g(count_mu_);
      port_events_.push_back(std::move(ev));
    }
    signal_events();
  }

  // ---- connect ----

  void on_connect(const Notif& n) {
    const int fd = static_cast<int>(n.args[0]);
    Endpoint ep;
    int fam = read_sockaddr(n, n.args[1], n.args[2], &ep);
    if (!id_valid(n)) return;
    if (fam != AF_INET && fam != AF_INET6) {
      // AF_UNIX, AF_UNSPEC (dissolve a UDP association), or a bad address the kernel reports.
      return answer_continue(n);
    }
    auto rules = rules_.load();
    Notif held = n;
    if (chaos(n, *rules, Call::CONNECT, &ep, nullptr, [this, held, fd, ep, rules] { connect_decided(held, *rules, fd, ep); }))
      return;
    connect_decided(n, *rules, fd, ep);
  }

  void connect_decided(const Notif& n, const Rules& rules, int fd, const Endpoint& ep) {
    ConnectDecision d = decide_connect(rules, ep);
    if (d.kind == ConnectDecision::REFUSE) {
      count(Call::CONNECT, Action::DENIED, &ep);
      return answer_errno(n, ECONNREFUSED);
    }
    if (d.kind == ConnectDecision::UNREACH) {
      count(Call::CONNECT, Action::DENIED, &ep);
      return answer_errno(n, ENETUNREACH);
    }
    UniqueFd ws = get_fd(n, fd);
    if (!ws.valid()) return answer_continue(n);
    const int type = sockopt_int(ws.get(), SOL_SOCKET, SO_TYPE);
    if (d.kind == ConnectDecision::CONTINUE || type != SOCK_STREAM) {
      // The container's own loopback, or UDP (not routed: a host UDP socket would accept
      // sendmsg to any destination, and sendmsg is not trapped). A socket we injected earlier
      // lives in the host's namespace, where neither may continue. (A routed connect replaces
      // the socket whichever namespace it is in, so only these cases ask.)
      if (netns_cookie(ws.get()) == host_netns_) {
        count(Call::CONNECT, Action::DENIED, &ep);
        return answer_errno(n, d.kind == ConnectDecision::CONTINUE ? ECONNREFUSED : ENETUNREACH);
      }
      return answer_continue(n);
    }
    std::vector<Endpoint> targets;
    if (d.service) {
      const auto& t = d.service->targets;
      size_t start = rr_.fetch_add(1, std::memory_order_relaxed) % t.size();
      for (size_t i = 0; i < t.size(); i++) targets.push_back(t[(start + i) % t.size()]);
    } else {
      targets.push_back(ep);
    }
    route(n, std::move(ws), fd, ep, std::move(targets));
  }

  void route(const Notif& n, UniqueFd ws, int fd, const Endpoint& dst, std::vector<Endpoint> targets) {
    if (!routed_room()) {
      // The container's cap: its own connects fail as they would on a full port space.
      count(Call::CONNECT, Action::DENIED, &dst);
      return answer_errno(n, EADDRNOTAVAIL);
    }
    const int family = sockopt_int(ws.get(), SOL_SOCKET, SO_DOMAIN);
    const int proto = sockopt_int(ws.get(), SOL_SOCKET, SO_PROTOCOL);
    const int fl = ::fcntl(ws.get(), F_GETFL);
    const bool nonblocking = fl >= 0 && (fl & O_NONBLOCK);
    OptSnapshot w;
    snapshot(ws.get(), family, SOCK_STREAM, &w);
    ws.reset();
    // SO_SNDTIMEO bounds a blocking connect's wait: the snapshot has it (SO_SNDTIMEO_NEW).
    struct {
      int64_t tv_sec = 0, tv_usec = 0;
    } sndtimeo;
    if (const OptValue& v = w.o[kSndTimeoIdx]; v.ok && v.len == sizeof sndtimeo) std::memcpy(&sndtimeo, v.v, sizeof sndtimeo);

    int err = ECONNREFUSED;
    for (size_t i = 0; i < targets.size(); i++) {
      const Endpoint& t = targets[i];
      // An AF_INET6 workload socket going to an IPv4 target gets an AF_INET host socket: the fd
      // is replaced anyway, and an IPv4 target may not be reachable through a mapped address.
      const int hfam = unmap_ip(t.ip).family;
      UniqueFd hs = host_socket(hfam, proto);
      if (!hs.valid()) {
        err = errno;
        break;
      }
      replay(w, defaults_for(hfam, SOCK_STREAM, proto), hs.get(), hfam);
      if (hfam == AF_INET && ip_is_loopback(t.ip)) bind_loopback_source(hs.get());
      sockaddr_storage ss;
      socklen_t len = to_sockaddr(t, hfam, &ss);
      int rc = ::connect(hs.get(), reinterpret_cast<sockaddr*>(&ss), len);
      err = rc == 0 ? 0 : errno;
      if (err == EINPROGRESS && !nonblocking) {
        // Loopback targets have finished by now (the handshake ran in this call's softirq): ask
        // again, one call instead of poll + SO_ERROR. A second connect returns 0 once the socket
        // is established, EALREADY while the handshake is still under way, or its error.
        err = ::connect(hs.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
        if (err == EALREADY) err = EINPROGRESS;
        else if (err == EISCONN) err = 0;
      }
      if (err == ECONNREFUSED && i + 1 < targets.size()) continue;  // skip a target that refuses
      if (err == EINPROGRESS && !nonblocking) {
        long long deadline = -1;
        if (sndtimeo.tv_sec || sndtimeo.tv_usec) deadline = mono_ms() + sndtimeo.tv_sec * 1000LL + sndtimeo.tv_usec / 1000;
        int raw = hs.get();
        auto hsp = std::make_shared<UniqueFd>(std::move(hs));
        Notif held = n;
        waiter_->when_writable(raw, deadline, [this, held, hsp, fd, dst](bool timed_out) {
          // A timed-out blocking connect reports EINPROGRESS, as the kernel's own does.
          int e = timed_out ? EINPROGRESS : sockopt_int(hsp->get(), SOL_SOCKET, SO_ERROR);
          finish_connect(held, *hsp, fd, dst, e, false);
        });
        refill_spare(hfam, proto);
        return;
      }
      finish_connect(n, hs, fd, dst, err, nonblocking);
      hs.reset();
      refill_spare(hfam, proto);  // after the answer: off the workload's path
      return;
    }
    count(Call::CONNECT, Action::DENIED, &dst);
    answer_errno(n, err ? err : ECONNREFUSED);
  }

  // The container's loopback source address, port chosen at connect (IP_BIND_ADDRESS_NO_PORT:
  // a bind with port 0 would reserve a port for every destination). Best effort: on failure
  // the kernel picks the source as before.
  void bind_loopback_source(int hs) {
    int one = 1;
    ::setsockopt(hs, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = loopback_src_;
    ::bind(hs, reinterpret_cast<sockaddr*>(&src), sizeof src);
  }

  // The per-container cap on live routed connections (config routed_max). An estimate that only
  // grows (the last count plus the connects routed since) is checked first; only when it reaches
  // the cap does the kernel count again (count_cgroup_sockets: the shim's cgroup, ephemeral
  // source ports), at most every 20 ms, so a container below its cap pays one atomic add. If
  // the kernel cannot count (no cgroup filter in sock_diag), the cap is not enforced.
  bool routed_room() {
    const long long max = cfg_.routed_max;
    if (max <= 0 || host_cgroup_id_ == 0) return true;
    if (routed_estimate_.fetch_add(1, std::memory_order_relaxed) + 1 <= max) return true;
    std::lock_guard<std::mutex> g(routed_mu_);
    const long long now = mono_ms();
    if (now - routed_counted_ms_ < 20) return routed_estimate_.load(std::memory_order_relaxed) <= max;
    routed_counted_ms_ = now;
    long live = count_cgroup_sockets(host_cgroup_id_, ephemeral_low_);
    if (live < 0) live = 0;
    routed_estimate_.store(live + 1, std::memory_order_relaxed);
    return live + 1 <= max;
  }

  // A fresh non-blocking host TCP socket. One of each family is made ahead, after an answer
  // (refill_spare), so a connect does not wait for socket(2): a spare is a socket nobody has
  // touched, the same as one made on the spot.
  UniqueFd host_socket(int family, int proto) {
    const int k = spare_index(family, proto);
    if (k >= 0) {
      int fd = spare_[k].exchange(-1, std::memory_order_acq_rel);
      if (fd >= 0) return UniqueFd(fd);
    }
    return UniqueFd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, proto));
  }
  void refill_spare(int family, int proto) {
    const int k = spare_index(family, proto);
    if (k < 0 || spare_[k].load(std::memory_order_relaxed) >= 0) return;
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
    if (fd < 0) return;
    int none = -1;
    if (!spare_[k].compare_exchange_strong(none, fd, std::memory_order_acq_rel)) ::close(fd);
  }
  static int spare_index(int family, int proto) {
    if (proto != IPPROTO_TCP && proto != 0) return -1;
    return family == AF_INET ? 0 : family == AF_INET6 ? 1 : -1;
  }

  void finish_connect(const Notif& n, UniqueFd& hs, int fd, const Endpoint& dst, int err, bool nonblocking) {
    if (err != 0 && err != EINPROGRESS) {
      // Nothing injected: the workload keeps its own (unconnected) socket.
      count(Call::CONNECT, Action::DENIED, &dst);
      return answer_errno(n, err);
    }
    if (!nonblocking && err == 0) ::fcntl(hs.get(), F_SETFL, 0);
    // No ID_VALID here: nothing of the workload's memory was read since on_connect's check, and
    // ADDFD itself fails with ENOENT unless the notification is still pending (docs/proxy.md).
    if (int e = inject(n, hs.get(), fd)) return answer_errno(n, e == ENOENT ? EINTR : e);
    if (err) answer_errno(n, err);
    else answer_ok(n);
    count(Call::CONNECT, Action::ROUTED, &dst);
  }

  // The container network namespace's net.ipv4.ip_unprivileged_port_start. A sysctl file shows
  // the namespace of whoever opened it, so it is opened once from a thread that joined the
  // container's (a network namespace, unlike a user or mount one, can be joined by one thread of
  // many) and read again on each use: root in the container may lower it.
  int unprivileged_port_start() {
    std::lock_guard<std::mutex> g(port_start_mu_);
    if (!port_start_.valid()) {
      int fd = -1;
      std::thread([this, &fd] {
        if (::setns(pid1_fd_, CLONE_NEWNET) == 0) fd = ::open("/proc/sys/net/ipv4/ip_unprivileged_port_start", O_RDONLY | O_CLOEXEC);
      }).join();
      port_start_.reset(fd);
    }
    char buf[16];
    ssize_t len = port_start_.valid() ? ::pread(port_start_.get(), buf, sizeof buf - 1, 0) : -1;
    if (len <= 0) return 1024;  // the kernel's default for a new namespace
    buf[len] = 0;
    return std::atoi(buf);
  }

  // ---- listen: done here, on the socket checked ----

  // A host socket that is not a declared port's (a routed connect's after connect(AF_UNSPEC), an
  // accepted connection's) would autobind an ephemeral host port on listen(2), and no sock_addr
  // hook sees that: it is refused. Every listen is done by the supervisor on the duplicate it
  // checked, never continued: the fd number could name another socket by the time the kernel
  // re-ran the call. listen has no caller-dependent checks (the backlog is capped by the
  // socket's own namespace), so doing it here is the same call.
  void on_listen(const Notif& n) {
    const int backlog = static_cast<int>(n.args[1]);
    UniqueFd ws = get_fd(n, static_cast<int>(n.args[0]));
    if (!ws.valid()) return answer_errno(n, EBADF);
    if (netns_cookie(ws.get()) == host_netns_ && !declared_host_port(ws.get())) {
      count_name("listen", Action::DENIED);
      return answer_errno(n, EACCES);
    }
    if (::listen(ws.get(), backlog) < 0) return answer_errno(n, errno);
    answer_ok(n);
  }

  // Whether host socket FD is bound to the host port of one of the table's declared ports.
  bool declared_host_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return false;
    Endpoint local;
    if (decode_sockaddr(&ss, len, &local) < 0 || local.port == 0) return false;
    auto rules = rules_.load();
    for (const auto& p : rules->ports)
      if (p.host_port == local.port) return true;
    return false;
  }

  // ---- sendto with a destination: chaos only ----

  void on_sendto(const Notif& n) {
    auto rules = rules_.load();
    if (rules->chaos.empty()) return answer_continue(n);
    Endpoint ep;
    int fam = read_sockaddr(n, n.args[4], n.args[5], &ep);
    if (!id_valid(n)) return;
    if (fam != AF_INET && fam != AF_INET6) return answer_continue(n);
    Notif held = n;
    if (chaos(n, *rules, Call::SENDTO, &ep, nullptr, [held] { answer_continue(held); })) return;
    answer_continue(n);
  }

  // ---- sysinfo ----

  void on_sysinfo(const Notif& n) {
    struct sysinfo si{};
    if (::sysinfo(&si) < 0) return answer_continue(n);
    CgroupUsage u = cgroup_->usage();
    const unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
    unsigned long long total = si.totalram * unit, free = si.freeram * unit;
    if (u.memory_limit > 0 && static_cast<unsigned long long>(u.memory_limit) < total) {
      total = static_cast<unsigned long long>(u.memory_limit);
      long long used = u.memory_usage > 0 ? u.memory_usage : 0;
      free = used >= u.memory_limit ? 0 : static_cast<unsigned long long>(u.memory_limit - used);
      si.sharedram = si.bufferram = 0;
      si.totalswap = si.freeswap = 0;  // the shim disables swap for a limited container
    } else {
      si.sharedram *= unit;
      si.bufferram *= unit;
      si.totalswap *= unit;
      si.freeswap *= unit;
    }
    si.totalram = total;
    si.freeram = free;
    si.totalhigh = si.freehigh = 0;
    si.mem_unit = 1;
    long long up = (wall_ms() - static_cast<long long>(started_at_ms_)) / 1000;
    si.uptime = up > 0 ? up : 0;
    if (u.pids >= 0) si.procs = static_cast<unsigned short>(std::min<long long>(u.pids, 65535));
    if (!id_valid(n)) return;
    if (!write_mem(n.pid, n.args[0], &si, sizeof si)) return answer_errno(n, EFAULT);
    count_name("sysinfo", Action::EMULATED);
    answer_ok(n);
  }

  // ---- uname ----

  void on_uname(const Notif& n) {
    struct utsname u{};
    if (::uname(&u) < 0) return answer_continue(n);
    std::memset(u.release, 0, sizeof u.release);
    std::memcpy(u.release, cfg_.uname_release.data(), std::min(cfg_.uname_release.size(), sizeof u.release - 1));
    std::memset(u.nodename, 0, sizeof u.nodename);
    std::memcpy(u.nodename, cfg_.name.data(), std::min(cfg_.name.size(), sizeof u.nodename - 1));
    if (!id_valid(n)) return;
    if (!write_mem(n.pid, n.args[0], &u, sizeof u)) return answer_errno(n, EFAULT);
    answer_ok(n);
  }

  // ---- mknod: safe character devices as binds of the host's nodes ----

  // Opens the directory a relative path starts from: the workload's cwd or its DIRFD, as an
  // O_PATH fd in the container's mount tree. Opened from the host's /proc, used after setns.
  UniqueFd base_dir(pid_t pid, int dirfd) {
    char path[64];
    if (dirfd == AT_FDCWD) std::snprintf(path, sizeof path, "/proc/%d/cwd", pid);
    else std::snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, dirfd);
    return UniqueFd(::open(path, O_PATH | O_DIRECTORY | O_CLOEXEC));
  }

  // A fresh node of the same device as the host's `host_node`, owned by the caller (host view of
  // its euid/egid), as a detached bind ready for move_mount. Binding the host's own /dev/null
  // would leave a node owned by host root (nobody inside), which the kernel refuses to open
  // with O_CREAT in a sticky directory such as /tmp. The nodes live on a tmpfs the shim made
  // and never attached anywhere (fsopen/fsmount): its superblock belongs to the host's user
  // namespace, so the devices on it can be opened, and nothing of it shows on the host.
  UniqueFd device_node(const char* host_node, mode_t perm, long uid, long gid) {
    struct stat st{};
    if (::stat(host_node, &st) < 0) return UniqueFd();
    std::lock_guard<std::mutex> g(devfs_mu_);
    if (!devfs_.valid()) {
      UniqueFd fs(static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC)));
      if (!fs.valid()) return UniqueFd();
      if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "mode", "0700", 0) < 0 ||
          ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "size", "64k", 0) < 0 ||
          ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "nr_inodes", "4096", 0) < 0 ||
          ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
        return UniqueFd();
      devfs_.reset(static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)));
      if (!devfs_.valid()) return UniqueFd();
    }
    const std::string name = "n" + std::to_string(devfs_seq_++);
    if (::mknodat(devfs_.get(), name.c_str(), S_IFCHR | perm, st.st_rdev) < 0) return UniqueFd();
    // mknod applies the umask; the workload asked for `perm`.
    if (::fchmodat(devfs_.get(), name.c_str(), perm, 0) < 0 ||
        (uid >= 0 && ::fchownat(devfs_.get(), name.c_str(), static_cast<uid_t>(uid), static_cast<gid_t>(gid >= 0 ? gid : uid), 0) < 0)) {
      int e = errno;
      ::unlinkat(devfs_.get(), name.c_str(), 0);
      errno = e;
      return UniqueFd();
    }
    // The name stays: a bind of an unlinked file cannot be attached. nr_inodes bounds how many
    // a workload can make (ENOSPC past it).
    return UniqueFd(static_cast<int>(::syscall(SYS_open_tree, devfs_.get(), name.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
  }

  void on_mknod(const Notif& n, int dirfd, uint64_t path_addr, uint64_t mode64, uint64_t dev64) {
    const mode_t mode = static_cast<mode_t>(mode64);
    const mode_t type = mode & S_IFMT;
    // FIFOs, sockets and regular files need no privilege: mkfifo(3) goes through mknodat.
    if (type == 0 || type == S_IFREG || type == S_IFIFO || type == S_IFSOCK) return answer_continue(n);
    const dev_t dev = static_cast<dev_t>(dev64);
    const char* node = nullptr;
    if (type == S_IFCHR) {
      static const struct {
        unsigned maj, min;
        const char* name;
      } kSafe[] = {{1, 3, "/dev/null"}, {1, 5, "/dev/zero"}, {1, 7, "/dev/full"}, {1, 8, "/dev/random"}, {1, 9, "/dev/urandom"}, {5, 0, "/dev/tty"}};
      for (const auto& s : kSafe)
        if (major(dev) == s.maj && minor(dev) == s.min) node = s.name;
    }
    if (!node) {
      count_name("mknod", Action::DENIED);
      return answer_errno(n, EPERM);
    }
    std::string path;
    int err = 0;
    if (!read_string(n.pid, path_addr, PATH_MAX, &path, &err)) return answer_errno(n, err);
    if (!id_valid(n)) return;
    if (path.empty()) return answer_errno(n, ENOENT);
    // What the workload could not do itself, it does not get: CAP_MKNOD in its own namespace.
    const ProcStatus caller = proc_status(n.pid);
    if (!(caller.cap_eff & (1ULL << 27))) return answer_errno(n, EPERM);
    UniqueFd base = base_dir(n.pid, path[0] == '/' ? AT_FDCWD : dirfd);
    if (!base.valid()) return answer_errno(n, errno == ENOENT ? ENOENT : EBADF);
    UniqueFd tree = device_node(node, static_cast<mode_t>(mode & 0777), caller.euid, caller.egid);
    if (!tree.valid()) return answer_errno(n, errno);
    std::string dir, name;
    split_path(path, &dir, &name);
    if (name.empty() || name == "." || name == "..") return answer_errno(n, EEXIST);
    const int bfd = base.get(), tfd = tree.get();
    const mode_t perm = mode & 07777 & ~S_ISUID & ~S_ISGID;
    const char* dirp = dir.c_str();
    const char* namep = name.c_str();
    if (!id_valid(n)) return;
    // In the child: the root is the container's (setns CLONE_NEWNS sets it), so an absolute path
    // or `..` resolves inside the container and cannot leave it.
    int rc = in_container(pid1_fd_, cfg_.userns(), false, [=]() -> int {
      int d = dirp[0] == '/' ? ::open(dirp, O_PATH | O_DIRECTORY | O_CLOEXEC) : ::openat(bfd, dirp, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (d < 0) return errno;
      int f = ::openat(d, namep, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, perm);
      if (f < 0) return errno;
      if (::syscall(SYS_move_mount, tfd, "", f, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
        int e = errno;
        ::unlinkat(d, namep, 0);
        return e;
      }
      return 0;
    });
    count_name("mknod", rc ? Action::DENIED : Action::EMULATED);
    if (rc) answer_errno(n, rc);
    else answer_ok(n);
  }

  // ---- mount: tmpfs and proc ----

  void on_mount(const Notif& n) {
    auto deny = [&](int e) {
      count_name("mount", Action::DENIED);
      answer_errno(n, e);
    };
    // Without a user namespace the helper would be the host's root: a new proc would show
    // everything the masked paths hide, writable.
    if (!cfg_.userns()) return deny(EPERM);
    std::string target, fstype, data;
    int err = 0;
    if (!n.args[2] || !read_string(n.pid, n.args[2], 64, &fstype, &err)) return deny(EPERM);
    if (!read_string(n.pid, n.args[1], PATH_MAX, &target, &err)) return deny(err);
    if (n.args[4] && !read_string(n.pid, n.args[4], 1024, &data, &err)) return deny(EINVAL);
    if (!id_valid(n)) return;
    unsigned long flags = n.args[3];
    if ((flags & 0xffff0000UL) == 0xC0ED0000UL) flags &= 0xffff;  // MS_MGC_VAL, the old magic
    const unsigned long allowed = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME |
                                  MS_RELATIME | MS_STRICTATIME | MS_SILENT;
    if (flags & ~allowed) return deny(EPERM);  // remount, bind, move, propagation, ...
    const bool is_proc = fstype == "proc";
    if (fstype != "tmpfs" && !is_proc) return deny(EPERM);
    // The options: tmpfs size= and mode=; proc hidepid= and subset=pid. Nothing else.
    std::vector<std::pair<std::string, std::string>> opts;
    size_t i = 0;
    while (i < data.size()) {
      size_t j = data.find(',', i);
      if (j == std::string::npos) j = data.size();
      std::string o = data.substr(i, j - i);
      i = j + 1;
      if (o.empty()) continue;
      size_t eq = o.find('=');
      std::string k = o.substr(0, eq), v = eq == std::string::npos ? "" : o.substr(eq + 1);
      bool ok = is_proc ? (k == "hidepid" || (k == "subset" && v == "pid")) : (k == "size" || k == "mode");
      bool plain = !v.empty();
      for (char c : v) plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '%');
      if (!ok || !plain) return deny(EINVAL);
      opts.emplace_back(k, v);
    }
    if (proc_status(n.pid).euid != static_cast<long>(*cfg_.uid_base)) return deny(EPERM);  // the container's root only
    if (target.empty()) return deny(ENOENT);
    UniqueFd base = base_dir(n.pid, AT_FDCWD);
    if (!base.valid()) return deny(ENOENT);
    unsigned attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (flags & MS_RDONLY) attr |= MOUNT_ATTR_RDONLY;
    if (flags & MS_NOEXEC) attr |= MOUNT_ATTR_NOEXEC;
    if (flags & MS_NOATIME) attr |= MOUNT_ATTR_NOATIME;
    if (flags & MS_NODIRATIME) attr |= MOUNT_ATTR_NODIRATIME;
    if (flags & MS_STRICTATIME) attr |= MOUNT_ATTR_STRICTATIME;
    // Everything the child needs, as plain pointers prepared before fork.
    std::vector<const char*> keys, vals;
    for (auto& [k, v] : opts) {
      keys.push_back(k.c_str());
      vals.push_back(v.c_str());
    }
    const char* fs = is_proc ? "proc" : "tmpfs";
    const char* tgt = target.c_str();
    const int bfd = base.get();
    const size_t nopts = keys.size();
    const char* const* kp = keys.data();
    const char* const* vp = vals.data();
    if (!id_valid(n)) return;
    int rc = in_container(pid1_fd_, true, is_proc, [=]() -> int {
      int t = tgt[0] == '/' ? ::open(tgt, O_PATH | O_DIRECTORY | O_CLOEXEC) : ::openat(bfd, tgt, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (t < 0) return errno;
      int fsfd = static_cast<int>(::syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC));
      if (fsfd < 0) return errno;
      for (size_t k = 0; k < nopts; k++)
        if (::syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, kp[k], vp[k], 0) < 0) return errno;
      if (::syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) return errno;
      int m = static_cast<int>(::syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, attr));
      if (m < 0) return errno;
      // A new procfs shows everything the container's /proc masks: the same masks and read-only
      // binds go on it while it is still detached (mounts on a detached tree: Linux 6.15), so it
      // is never visible without them. A kernel that cannot do that, or anything else that fails
      // here, refuses the mount: the tree is dropped unattached with the child's fds.
      if (is_proc && mask_proc_tree(m) != 0) return EPERM;
      if (::syscall(SYS_move_mount, m, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return errno;
      return 0;
    });
    count_name("mount", rc ? Action::DENIED : Action::EMULATED);
    if (rc) answer_errno(n, rc);
    else answer_ok(n);
  }

  // ---- open/openat/openat2: chaos on paths ----

  void on_open(const Notif& n, int dirfd, uint64_t path_addr) {
    auto rules = rules_.load();
    bool any = false;
    for (const auto& c : rules->chaos) any = any || c.call == Call::OPEN;
    if (!any) return answer_continue(n);
    std::string path;
    int err = 0;
    if (!read_string(n.pid, path_addr, PATH_MAX, &path, &err)) return answer_continue(n);
    if (!id_valid(n)) return;
    if (path.empty() || path[0] != '/') {
      char link[64], buf[PATH_MAX];
      if (dirfd == AT_FDCWD) std::snprintf(link, sizeof link, "/proc/%d/cwd", n.pid);
      else std::snprintf(link, sizeof link, "/proc/%d/fd/%d", n.pid, dirfd);
      ssize_t len = ::readlink(link, buf, sizeof buf - 1);
      if (len <= 0) return answer_continue(n);
      std::string base(buf, static_cast<size_t>(len));
      path = base == "/" ? "/" + path : base + "/" + path;
    }
    Notif held = n;
    if (chaos(n, *rules, Call::OPEN, nullptr, &path, [held] { answer_continue(held); })) return;
    answer_continue(n);
  }

  const Config& cfg_;
  Cgroup* cgroup_;
  SupervisorCgroup* charge_;
  std::unique_ptr<CpuPacer> pacer_;  // with a CPU quota: for threads that could not be charged
  // A notification keeps the table it started with (its own reference); set_rules swaps.
  std::atomic<std::shared_ptr<const Rules>> rules_;
  std::mutex rules_mu_;                 // serialises set_rules' check-and-swap
  std::unique_ptr<Rng> rng_;
  UniqueFd events_;
  uint64_t host_netns_ = 0;
  bool started_ = false;
  pid_t pid1_ = 0;
  int pid1_fd_ = -1;
  unsigned long long started_at_ms_ = 0;
  std::unique_ptr<Waiter> waiter_;
  std::atomic<size_t> rr_{0};
  std::atomic<int> spare_[2] = {-1, -1};  // host_socket: AF_INET, AF_INET6
  std::atomic<bool> pending_{false};
  in_addr_t loopback_src_ = 0;       // network order (bind_loopback_source)
  int ephemeral_low_ = 32768;
  uint64_t host_cgroup_id_ = 0;      // the shim's cgroup v2 (routed_room); 0 = no cap
  std::atomic<long long> routed_estimate_{0};
  std::mutex routed_mu_;
  long long routed_counted_ms_ = -1000;

  std::mutex listeners_mu_;
  std::vector<ListenerRef> early_;  // added before start()
  std::mutex pid_mu_;
  std::unordered_map<pid_t, UniqueFd> pidfds_;
  std::unordered_map<uint64_t, UniqueFd> fdinfo_;  // (tid << 32 | fd) -> /proc/TID/fdinfo/FD (cloexec_of)
  std::mutex defaults_mu_;
  std::unordered_map<int, std::unique_ptr<OptSnapshot>> defaults_;
  std::mutex count_mu_;
  std::mutex devfs_mu_;
  std::mutex port_start_mu_;
  UniqueFd port_start_;      // the container netns's ip_unprivileged_port_start (unprivileged_port_start)
  UniqueFd devfs_;           // the private tmpfs of emulated device nodes (device_node)
  unsigned long devfs_seq_ = 0;
  std::map<CountKey, uint64_t> counts_;
  size_t targets_ = 0;  // keys of counts_ with a target (family != 0), at most kMaxEventTargets
  std::map<std::string, uint64_t> hits_total_, hits_delta_;
  std::vector<std::string> port_events_;
};

Supervisor::Supervisor(const Config& cfg, Cgroup* cgroup, SupervisorCgroup* charge, std::shared_ptr<const Rules> initial)
    : impl_(std::make_unique<SupervisorImpl>(cfg, cgroup, charge, std::move(initial))) {}
Supervisor::~Supervisor() = default;
void Supervisor::start(pid_t pid, int pidfd, unsigned long long started_at_ms) { impl_->start(pid, pidfd, started_at_ms); }
void Supervisor::set_host_cgroup(uint64_t cgroup_id) { impl_->set_host_cgroup(cgroup_id); }
void Supervisor::add_listener(UniqueFd listener) { impl_->add_listener(std::move(listener)); }
unsigned long long Supervisor::set_rules(std::shared_ptr<const Rules> r) { return impl_->set_rules(std::move(r)); }
unsigned long long Supervisor::rules_version() const { return impl_->rules_version(); }
std::string Supervisor::chaos_hits_json() const { return impl_->chaos_hits_json(false); }
int Supervisor::event_fd() const { return impl_->event_fd(); }
std::vector<std::string> Supervisor::take_events() { return impl_->take_events(); }

}  // namespace berth
