#include "sockguard.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "cgroups.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace berth {
namespace {

constexpr const char* CODE = "BERTH_ERR_SOCKGUARD";

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

// allow = (socket's netns != HOST) || (current tgid == TGID); 1 lets the call proceed, 0 fails
// it with EPERM. Both helpers are available to cgroup sock_addr programs (bpf_get_netns_cookie
// with the context reports the socket's namespace, not the caller's).
std::vector<bpf_insn> program(unsigned long long cookie, int tgid) {
  return {
      insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_netns_cookie),                 // 0: r0 = cookie(ctx->sk)
      insn(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, 0, 0, static_cast<int32_t>(cookie & 0xffffffffULL)),  // 1-2: r1 = HOST
      insn(0, 0, 0, 0, static_cast<int32_t>(cookie >> 32)),
      insn(BPF_JMP | BPF_JNE | BPF_X, BPF_REG_0, BPF_REG_1, 5, 0),                  // 3: not the host's -> 9
      insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_current_pid_tgid),             // 4: r0 = tgid << 32 | tid
      insn(BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_0, 0, 0, 32),                       // 5: r0 = tgid
      insn(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 2, tgid),                       // 6: the shim -> 9
      insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),                        // 7: refuse
      insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),                                         // 8
      insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1),                        // 9: allow
      insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),                                         // 10
  };
}

long sys_bpf(int cmd, bpf_attr* attr) { return ::syscall(SYS_bpf, cmd, attr, sizeof *attr); }

UniqueFd load(const std::vector<bpf_insn>& insns, bpf_attach_type type) {
  static const char license[] = "Apache-2.0";
  char log[2048] = {0};
  bpf_attr a{};
  a.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
  a.expected_attach_type = type;
  a.insns = reinterpret_cast<uint64_t>(insns.data());
  a.insn_cnt = static_cast<uint32_t>(insns.size());
  a.license = reinterpret_cast<uint64_t>(license);
  std::memcpy(a.prog_name, "berth_sockguard", 15);  // 15 chars and the NUL the zeroed attr has
  int fd = static_cast<int>(sys_bpf(BPF_PROG_LOAD, &a));
  if (fd < 0) {
    // Once more with the verifier's log, for the error message.
    int e = errno;
    a.log_buf = reinterpret_cast<uint64_t>(log);
    a.log_size = sizeof log;
    a.log_level = 1;
    int again = static_cast<int>(sys_bpf(BPF_PROG_LOAD, &a));
    if (again >= 0) return UniqueFd(again);
    errno = e;
    SysError err{CODE, "bpf(BPF_PROG_LOAD)", "cgroup sock_addr program", e, ""};
    std::string l(log);
    while (!l.empty() && (l.back() == '\n' || l.back() == ' ')) l.pop_back();
    if (!l.empty()) err.detail = "verifier: " + l.substr(l.size() > 300 ? l.size() - 300 : 0);
    throw err;
  }
  return UniqueFd(fd);
}

UniqueFd attach(int prog, int cgroup_fd, bpf_attach_type type, const std::string& dir) {
  bpf_attr a{};
  a.link_create.prog_fd = static_cast<uint32_t>(prog);
  a.link_create.target_fd = static_cast<uint32_t>(cgroup_fd);
  a.link_create.attach_type = type;
  int fd = static_cast<int>(sys_bpf(BPF_LINK_CREATE, &a));
  if (fd < 0) throw_errno(CODE, "bpf(BPF_LINK_CREATE)", dir);
  return UniqueFd(fd);
}

}  // namespace

std::vector<unsigned char> sockguard_program(unsigned long long netns_cookie, int tgid) {
  auto p = program(netns_cookie, tgid);
  std::vector<unsigned char> out(p.size() * sizeof(bpf_insn));
  std::memcpy(out.data(), p.data(), out.size());
  return out;
}

std::unique_ptr<SockGuard> SockGuard::install(const std::string& rel_path) {
  if (rel_path.empty() || rel_path[0] == '/' || rel_path.find("..") != std::string::npos)
    throw_error(CODE, "bad cgroup path `" + rel_path + "`");
  std::unique_ptr<SockGuard> g(new SockGuard());
  std::string unified = describe_cgroups().unified;
  if (unified.empty()) {
    // No cgroup2 in this mount namespace (e.g. under `ip netns exec`, which mounts a fresh /sys):
    // the hierarchy is there all the same; reach it through a detached mount of our own.
    UniqueFd fs(static_cast<int>(::syscall(SYS_fsopen, "cgroup2", FSOPEN_CLOEXEC)));
    if (!fs.valid()) throw_errno(CODE, "fsopen", "cgroup2");
    if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) throw_errno(CODE, "fsconfig", "cgroup2");
    g->mount_.reset(static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, 0)));
    if (!g->mount_.valid()) throw_errno(CODE, "fsmount", "cgroup2");
    unified = "/proc/self/fd/" + std::to_string(g->mount_.get());
  }
  g->root_ = unified;
  // The netns cookie of a socket made here: the namespace the shim's host sockets live in.
  UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) throw_errno(CODE, "socket", "AF_INET");
  unsigned long long cookie = 0;
  socklen_t len = sizeof cookie;
  if (::getsockopt(probe.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0) throw_errno(CODE, "getsockopt SO_NETNS_COOKIE", "");
  probe.reset();

  g->dir_ = unified + "/" + rel_path;
  // The parents ("berth") may not exist yet on a host where no container was made.
  for (size_t p = g->dir_.find('/', unified.size() + 1); p != std::string::npos; p = g->dir_.find('/', p + 1)) {
    std::string parent = g->dir_.substr(0, p);
    if (::mkdir(parent.c_str(), 0755) < 0 && errno != EEXIST) throw_errno(CODE, "mkdir", parent);
  }
  if (::mkdir(g->dir_.c_str(), 0755) < 0 && errno != EEXIST) throw_errno(CODE, "mkdir", g->dir_);
  try {
    UniqueFd cg(::open(g->dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg.valid()) throw_errno(CODE, "open", g->dir_);
    struct stat st{};
    if (::fstat(cg.get(), &st) < 0) throw_errno(CODE, "fstat", g->dir_);
    g->cgroup_id_ = st.st_ino;  // a cgroup v2's id is its directory's inode number
    const auto insns = program(cookie, ::getpid());
    for (bpf_attach_type t : {BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT, BPF_CGROUP_INET4_BIND,
                              BPF_CGROUP_INET6_BIND, BPF_CGROUP_UDP4_SENDMSG, BPF_CGROUP_UDP6_SENDMSG}) {
      UniqueFd prog = load(insns, t);
      g->links_.push_back(attach(prog.get(), cg.get(), t, g->dir_));
    }
    // Last, once the programs are in force: from here on every socket this process makes is
    // guarded. (Sockets made before, in the old cgroup, are not: the shim hands none of those out.)
    write_file(g->dir_ + "/cgroup.procs", std::to_string(::getpid()));
  } catch (...) {
    g->links_.clear();
    ::rmdir(g->dir_.c_str());
    throw;
  }
  return g;
}

void SockGuard::remove() {
  if (dir_.empty()) return;
  try {
    // The root of the hierarchy is the one cgroup always allowed to hold processes.
    write_file(root_ + "/cgroup.procs", std::to_string(::getpid()));
  } catch (const SysError&) {
  }
  links_.clear();
  ::rmdir(dir_.c_str());
  dir_.clear();
}

SockGuard::~SockGuard() = default;

}  // namespace berth
