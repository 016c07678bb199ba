#include "namespaces.h"

#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace berth {

unsigned long container_clone_flags(const Config& cfg) {
  unsigned long f = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  if (cfg.private_net) f |= CLONE_NEWNET;
  if (cfg.userns()) f |= CLONE_NEWUSER;
  return f;
}

pid_t clone_with_pidfd(unsigned long flags, UniqueFd* pidfd) {
  int fd = -1;
  clone_args args{};
  args.flags = flags | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&fd);
  args.exit_signal = SIGCHLD;
  // Raw clone3 without CLONE_VM behaves like fork(): the child gets a copy of the address space
  // and returns here with 0. glibc's atfork handlers do not run, which is fine: the shim is
  // single-threaded and holds no locks. The pidfd comes from the same syscall, so there is no
  // window in which the pid could be reaped and reused before we hold it.
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) throw_errno("BERTH_ERR_NAMESPACE", "clone3");
  if (pid > 0) pidfd->reset(fd);
  return static_cast<pid_t>(pid);
}

void write_id_maps(pid_t pid, unsigned long base, unsigned long count) {
  const std::string line = "0 " + std::to_string(base) + " " + std::to_string(count) + "\n";
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  for (const char* f : {"uid_map", "gid_map"}) {
    try {
      write_file(dir + f, line);
    } catch (SysError& e) {
      e.code = "BERTH_ERR_NAMESPACE";
      throw;
    }
  }
}

void loopback_up() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) throw_errno("BERTH_ERR_NAMESPACE", "socket", "lo");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) throw_errno("BERTH_ERR_NAMESPACE", "ioctl SIOCGIFFLAGS", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) throw_errno("BERTH_ERR_NAMESPACE", "ioctl SIOCSIFFLAGS", "lo");
}

int sys_pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int sys_pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

unsigned long long proc_start_time(pid_t pid) {
  std::string stat;
  try {
    stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  } catch (const SysError&) {
    return 0;
  }
  // comm (field 2) may contain spaces and parentheses: count fields from the last ')'.
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return 0;
  int field = 2;
  size_t i = p + 1;
  while (i < stat.size() && field < 22) {
    while (i < stat.size() && stat[i] == ' ') i++;
    field++;
    if (field == 22) return std::strtoull(stat.c_str() + i, nullptr, 10);
    while (i < stat.size() && stat[i] != ' ') i++;
  }
  return 0;
}

}  // namespace berth
