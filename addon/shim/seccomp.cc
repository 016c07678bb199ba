#include "seccomp.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <map>

namespace berth {
namespace {

#if defined(__x86_64__)
constexpr uint32_t NATIVE_ARCH = AUDIT_ARCH_X86_64;
constexpr bool HAS_X32 = true;
constexpr uint32_t X32_SYSCALL_BIT = 0x40000000;  // __X32_SYSCALL_BIT
#elif defined(__aarch64__)
constexpr uint32_t NATIVE_ARCH = AUDIT_ARCH_AARCH64;
constexpr bool HAS_X32 = false;
constexpr uint32_t X32_SYSCALL_BIT = 0;
#else
#error "berth's seccomp filter knows x86_64 and aarch64 only"
#endif

// Calls newer than the kernel headers the build may have (Debian 12 ships Linux 6.1's). From 424
// on, x86_64 and the generic table (aarch64) number them alike.
#ifndef __NR_lsm_get_self_attr
#define __NR_lsm_get_self_attr 459
#endif
#ifndef __NR_lsm_set_self_attr
#define __NR_lsm_set_self_attr 460
#endif
#ifndef __NR_lsm_list_modules
#define __NR_lsm_list_modules 461
#endif
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif
#ifndef __NR_file_getattr
#define __NR_file_getattr 468
#endif
#ifndef __NR_file_setattr
#define __NR_file_setattr 469
#endif
#if defined(__x86_64__) && !defined(__NR_uprobe)
#define __NR_uprobe 336
#endif

// The highest syscall number this table was reviewed against: file_setattr, Linux 6.17 (6.18
// adds none). A deny-list allows what it does not name, so every number above this one fails
// with ENOSYS until someone looks at it here — what runc does for calls newer than its profile,
// and the answer that makes a caller fall back to an older call.
constexpr uint32_t LAST_REVIEWED_NR = __NR_file_setattr;

// Address families Docker's default profile refuses to socket(): AF_ALG (38, the kernel's crypto
// API: a steady source of kernel bugs reachable from any process) and AF_VSOCK (40: the
// hypervisor's socket space, the host's own and outside every network namespace, so a vsock
// connect would bypass egress rules). EAFNOSUPPORT is what a kernel without them answers, which
// callers handle (systemd, for one, then assumes no vsock).
constexpr uint64_t DENIED_SOCKET_FAMILIES[] = {38 /* AF_ALG */, 40 /* AF_VSOCK */};

// struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
constexpr uint32_t OFF_NR = offsetof(seccomp_data, nr);
constexpr uint32_t OFF_ARCH = offsetof(seccomp_data, arch);
constexpr uint32_t off_arg_lo(unsigned i) { return offsetof(seccomp_data, args) + 8 * i; }
constexpr uint32_t off_arg_hi(unsigned i) { return off_arg_lo(i) + 4; }  // little-endian only

sock_filter stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}
sock_filter ret(const SeccompAction& a) { return stmt(BPF_RET | BPF_K, a.ret_value()); }

// Clone flags that make a new namespace. CLONE_NEWTIME (0x80) is left out on purpose: in clone()'s
// flags the low byte is the exit signal, and clone() cannot make a time namespace anyway.
constexpr uint64_t CLONE_NS_FLAGS = 0x00020000 /* NEWNS */ | 0x02000000 /* NEWCGROUP */ |
                                    0x04000000 /* NEWUTS */ | 0x08000000 /* NEWIPC */ |
                                    0x10000000 /* NEWUSER */ | 0x20000000 /* NEWPID */ |
                                    0x40000000 /* NEWNET */;

struct DenyEntry {
  int nr;
  const char* name;
  const char* reason;
};
#define SYS(n) __NR_##n, #n

// Denied with EPERM, whatever the arguments. Docker's default profile denies each of these to a
// container with Docker's default capabilities (its allow-list leaves them out, or allows them
// only with a capability berth does not grant: the one named). Keep one line of reason per entry.
// test/escape-seccomp.test.ts compares the whole filter with Docker's list; the one call berth
// lets through although Docker does not is mount, trapped by the proxy filter for the
// supervisor's allow-list. adjtimex stays allowed as in Docker: reading is harmless, and setting needs
// CAP_SYS_TIME in the initial user namespace, which the kernel checks. "fsmerge" is not a Linux
// syscall.
const DenyEntry DENY_EPERM[] = {
    {SYS(io_uring_setup), "io_uring performs calls that this filter never sees"},
    {SYS(io_uring_enter), "io_uring performs calls that this filter never sees"},
    {SYS(io_uring_register), "io_uring performs calls that this filter never sees"},
    {SYS(keyctl), "the kernel keyring is not namespaced"},
    {SYS(add_key), "the kernel keyring is not namespaced"},
    {SYS(request_key), "the kernel keyring is not namespaced"},
    {SYS(bpf), "loads programs into the host kernel (CAP_SYS_ADMIN/CAP_BPF)"},
    {SYS(init_module), "kernel modules change the host (CAP_SYS_MODULE)"},
    {SYS(finit_module), "kernel modules change the host (CAP_SYS_MODULE)"},
    {SYS(delete_module), "kernel modules change the host (CAP_SYS_MODULE)"},
    {SYS(kexec_load), "replaces the host's kernel (CAP_SYS_BOOT)"},
    {SYS(kexec_file_load), "replaces the host's kernel (CAP_SYS_BOOT)"},
    {SYS(open_by_handle_at), "opens host files by handle, past the mount namespace (CVE 'shocker')"},
    {SYS(name_to_handle_at), "makes the file handles open_by_handle_at takes"},
    {SYS(ptrace), "inspects and changes other processes; a later issue may allow it in-container"},
    {SYS(process_vm_readv), "reads another process's memory (CAP_SYS_PTRACE)"},
    {SYS(process_vm_writev), "writes another process's memory (CAP_SYS_PTRACE)"},
    {SYS(kcmp), "compares other processes' kernel objects (CAP_SYS_PTRACE)"},
    {SYS(mount), "mounting is the supervisor's job (CAP_SYS_ADMIN)"},
    {SYS(umount2), "unmounting could reveal what masked paths hide (CAP_SYS_ADMIN)"},
    {SYS(pivot_root), "changes the mount namespace's root (CAP_SYS_ADMIN)"},
    {SYS(unshare), "new namespaces are not the container's to make (CAP_SYS_ADMIN)"},
    {SYS(setns), "joins other namespaces (CAP_SYS_ADMIN)"},
    {SYS(fsopen), "new mount API: same as mount"},
    {SYS(fsconfig), "new mount API: same as mount"},
    {SYS(fsmount), "new mount API: same as mount"},
    {SYS(fspick), "new mount API: same as mount"},
    {SYS(move_mount), "new mount API: same as mount"},
    {SYS(open_tree), "new mount API: same as mount"},
    {SYS(mount_setattr), "new mount API: could clear read-only/nosuid on mounts"},
    {SYS(swapon), "host swap (CAP_SYS_ADMIN)"},
    {SYS(swapoff), "host swap (CAP_SYS_ADMIN)"},
    {SYS(reboot), "reboots the host or ends the pid namespace (CAP_SYS_BOOT)"},
    {SYS(acct), "process accounting is host-wide (CAP_SYS_PACCT)"},
    {SYS(settimeofday), "the clock is not namespaced (CAP_SYS_TIME)"},
    {SYS(clock_settime), "the clock is not namespaced (CAP_SYS_TIME)"},
    {SYS(clock_adjtime), "the clock is not namespaced (CAP_SYS_TIME)"},
    {SYS(perf_event_open), "kernel profiling reveals the host (CAP_PERFMON)"},
    {SYS(userfaultfd), "widens kernel race windows, a favourite of exploits"},
    {SYS(quotactl), "filesystem quotas are host-wide (CAP_SYS_ADMIN)"},
    {SYS(quotactl_fd), "filesystem quotas are host-wide (CAP_SYS_ADMIN)"},
    {SYS(syslog), "the kernel log is host-wide (CAP_SYSLOG)"},
    {SYS(vhangup), "hangs up terminals (CAP_SYS_TTY_CONFIG)"},
    {SYS(mbind), "NUMA placement against the host's policy (CAP_SYS_NICE)"},
    {SYS(set_mempolicy), "NUMA placement against the host's policy (CAP_SYS_NICE)"},
    {SYS(move_pages), "moves pages between NUMA nodes (CAP_SYS_NICE)"},
    {SYS(migrate_pages), "moves pages between NUMA nodes (CAP_SYS_NICE)"},
    {SYS(fanotify_init), "watches whole filesystems (CAP_SYS_ADMIN)"},
    {SYS(get_mempolicy), "NUMA policy, the host's topology (CAP_SYS_NICE)"},
    {SYS(pidfd_getfd), "takes a file from another process (CAP_SYS_PTRACE)"},
    {SYS(process_madvise), "advises on another process's memory (CAP_SYS_PTRACE)"},
    {SYS(lsm_get_self_attr), "LSM attributes: left to the host's policy (CAP_SYS_ADMIN)"},
    {SYS(lsm_set_self_attr), "LSM attributes: left to the host's policy (CAP_SYS_ADMIN)"},
    {SYS(lsm_list_modules), "LSM attributes: left to the host's policy (CAP_SYS_ADMIN)"},
    {SYS(sethostname), "the kernel wants CAP_SYS_ADMIN, which containers lack; denied as in Docker"},
    {SYS(setdomainname), "the kernel wants CAP_SYS_ADMIN, which containers lack; denied as in Docker"},
#ifdef __NR_uprobe
    {SYS(uprobe), "the kernel's uprobe trampoline; not for workloads"},
#endif
#ifdef __NR_getpmsg
    {SYS(getpmsg), "never implemented (STREAMS); denied as in Docker"},
#endif
#ifdef __NR_putpmsg
    {SYS(putpmsg), "never implemented (STREAMS); denied as in Docker"},
#endif
#ifdef __NR_afs_syscall
    {SYS(afs_syscall), "never implemented; denied as in Docker"},
#endif
#ifdef __NR_tuxcall
    {SYS(tuxcall), "never implemented; denied as in Docker"},
#endif
#ifdef __NR_security
    {SYS(security), "never implemented; denied as in Docker"},
#endif
#ifdef __NR_vserver
    {SYS(vserver), "never implemented; denied as in Docker"},
#endif
#ifdef __NR_set_mempolicy_home_node
    {SYS(set_mempolicy_home_node), "NUMA placement against the host's policy (CAP_SYS_NICE)"},
#endif
#ifdef __NR_lookup_dcookie
    {SYS(lookup_dcookie), "kernel profiling helper (CAP_SYS_ADMIN)"},
#endif
#ifdef __NR_umount
    {SYS(umount), "unmounting could reveal what masked paths hide (CAP_SYS_ADMIN)"},
#endif
#ifdef __NR_stime
    {SYS(stime), "the clock is not namespaced (CAP_SYS_TIME)"},
#endif
#ifdef __NR_nfsservctl
    {SYS(nfsservctl), "removed kernel NFS server interface"},
#endif
#ifdef __NR_uselib
    {SYS(uselib), "obsolete a.out library loader"},
#endif
#ifdef __NR_ustat
    {SYS(ustat), "obsolete; reports on host filesystems"},
#endif
#ifdef __NR_sysfs
    {SYS(sysfs), "obsolete; reports on host filesystems"},
#endif
#ifdef __NR__sysctl
    {SYS(_sysctl), "obsolete binary sysctl"},
#endif
#ifdef __NR_create_module
    {SYS(create_module), "obsolete module call (CAP_SYS_MODULE)"},
#endif
#ifdef __NR_get_kernel_syms
    {SYS(get_kernel_syms), "obsolete module call (CAP_SYS_MODULE)"},
#endif
#ifdef __NR_query_module
    {SYS(query_module), "obsolete module call (CAP_SYS_MODULE)"},
#endif
#ifdef __NR_iopl
    {SYS(iopl), "raw I/O port access (CAP_SYS_RAWIO)"},
#endif
#ifdef __NR_ioperm
    {SYS(ioperm), "raw I/O port access (CAP_SYS_RAWIO)"},
#endif
#ifdef __NR_vm86
    {SYS(vm86), "virtual 8086 mode (CAP_SYS_ADMIN)"},
#endif
#ifdef __NR_vm86old
    {SYS(vm86old), "virtual 8086 mode (CAP_SYS_ADMIN)"},
#endif
};

// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and
// 0xffffffff (query). Anything else (e.g. ADDR_NO_RANDOMIZE) is denied.
constexpr uint64_t PERSONALITY_ALLOWED[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

// Symbolic jump targets inside one rule block: [condition...][ret action][next rule...].
constexpr int NEXT = -1, MATCH = -2, NOMATCH = -3;
struct PendingJump {
  sock_filter insn;
  int jt = NEXT, jf = NEXT;
};

void emit_condition(const ArgCondition& c, std::vector<PendingJump>& out) {
  const uint32_t mask_lo = static_cast<uint32_t>(c.mask), mask_hi = static_cast<uint32_t>(c.mask >> 32);
  const uint32_t val_lo = static_cast<uint32_t>(c.value), val_hi = static_cast<uint32_t>(c.value >> 32);
  auto ld = [&](uint32_t off) { out.push_back({stmt(BPF_LD | BPF_W | BPF_ABS, off)}); };
  switch (c.op) {
    case ArgCondition::MASKED_NONZERO:
      if (mask_lo == 0 && mask_hi == 0) {
        out.push_back({stmt(BPF_JMP | BPF_JA, 0), NOMATCH, NOMATCH});  // never holds
        return;
      }
      if (mask_lo != 0) {
        ld(off_arg_lo(c.index));
        out.push_back({jump(BPF_JMP | BPF_JSET | BPF_K, mask_lo, 0, 0), MATCH, mask_hi ? NEXT : NOMATCH});
      }
      if (mask_hi != 0) {
        ld(off_arg_hi(c.index));
        out.push_back({jump(BPF_JMP | BPF_JSET | BPF_K, mask_hi, 0, 0), MATCH, NOMATCH});
      }
      return;
    case ArgCondition::EQ:
    case ArgCondition::MASKED_EQ: {
      const bool masked = c.op == ArgCondition::MASKED_EQ;
      ld(off_arg_lo(c.index));
      if (masked) out.push_back({stmt(BPF_ALU | BPF_AND | BPF_K, mask_lo)});
      out.push_back({jump(BPF_JMP | BPF_JEQ | BPF_K, masked ? val_lo & mask_lo : val_lo, 0, 0), NEXT, NOMATCH});
      ld(off_arg_hi(c.index));
      if (masked) out.push_back({stmt(BPF_ALU | BPF_AND | BPF_K, mask_hi)});
      out.push_back({jump(BPF_JMP | BPF_JEQ | BPF_K, masked ? val_hi & mask_hi : val_hi, 0, 0), MATCH, NOMATCH});
      return;
    }
  }
}

class Builder {
 public:
  explicit Builder(const FilterSpec& spec) : spec_(spec) {
    for (const auto& r : spec.rules) {
      if (r.nr < 0) throw_error("BERTH_ERR_SECCOMP", "seccomp rule `" + r.name + "` has no syscall number");
      if (r.when && r.when->index > 5) {
        throw_error("BERTH_ERR_SECCOMP", "seccomp rule `" + r.name + "`: argument index above 5");
      }
      if (spec.max_nr != 0 && static_cast<uint32_t>(r.nr) > spec.max_nr) {
        throw_error("BERTH_ERR_SECCOMP", "seccomp rule `" + r.name + "`: number above the spec's max_nr");
      }
      by_nr_[static_cast<uint32_t>(r.nr)].push_back(&r);
    }
    for (const auto& [nr, rules] : by_nr_) nrs_.push_back(nr);
  }

  std::vector<sock_filter> build() {
    const uint32_t arch = spec_.arch ? spec_.arch : NATIVE_ARCH;
    // 1. Wrong ABI: the numbers below mean other calls there, so nothing else can be checked.
    out_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH));
    out_.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0));
    out_.push_back(ret(spec_.wrong_arch));
    out_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
    // 2. x32 shares AUDIT_ARCH_X86_64 but numbers its calls from __X32_SYSCALL_BIT up, past every
    //    rule below; fail them all (also catches nr = -1 and other out-of-range numbers).
    if (HAS_X32 && (spec_.arch == 0 || spec_.arch == AUDIT_ARCH_X86_64)) {
      out_.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
      out_.push_back(ret(spec_.x32));
    }
    //    Numbers past the last one the spec was written for: calls it has never judged.
    if (spec_.max_nr != 0) {
      out_.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, spec_.max_nr + 1, 0, 1));
      out_.push_back(ret(spec_.newer));
    }
    // 3. Binary search over the syscall numbers (A = nr), then 4. the conditional blocks.
    emit_tree(0, nrs_.size());
    for (uint32_t nr : nrs_) {
      auto it = body_patches_.find(nr);
      if (it == body_patches_.end()) continue;
      const size_t body = out_.size();
      for (size_t at : it->second) out_[at].k = static_cast<uint32_t>(body - at - 1);
      emit_body(by_nr_[nr]);
    }
    // The kernel wants a RET last; make it the default action even when the last block ended in
    // another (unreachable then, but the program's shape stays "checks ... default").
    const uint32_t default_ret = spec_.default_action.ret_value();
    if (out_.back().code != (BPF_RET | BPF_K) || out_.back().k != default_ret) out_.push_back(ret(spec_.default_action));
    if (out_.size() > BPF_MAXINSNS) {
      throw_error("BERTH_ERR_SECCOMP", "seccomp program has " + std::to_string(out_.size()) +
                                           " instructions, more than BPF_MAXINSNS");
    }
    return std::move(out_);
  }

 private:
  // Leaves of up to LEAF numbers are scanned linearly; jt/jf there are 0/1, and every longer jump
  // is a BPF_JA, whose offset is 32 bits (conditional offsets are only 8).
  static constexpr size_t LEAF = 4;

  void emit_tree(size_t lo, size_t hi) {
    if (hi - lo <= LEAF) {
      for (size_t i = lo; i < hi; i++) {
        const auto& rules = by_nr_[nrs_[i]];
        out_.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, nrs_[i], 0, 1));
        if (!rules.front()->when) {
          out_.push_back(ret(rules.front()->action));
        } else {
          body_patches_[nrs_[i]].push_back(out_.size());
          out_.push_back(stmt(BPF_JMP | BPF_JA, 0));
        }
      }
      out_.push_back(ret(spec_.default_action));
      return;
    }
    const size_t mid = lo + (hi - lo) / 2;
    out_.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, nrs_[mid], 0, 1));
    const size_t ja = out_.size();
    out_.push_back(stmt(BPF_JMP | BPF_JA, 0));
    emit_tree(lo, mid);
    out_[ja].k = static_cast<uint32_t>(out_.size() - ja - 1);
    emit_tree(mid, hi);
  }

  void emit_body(const std::vector<const SeccompRule*>& rules) {
    for (const SeccompRule* r : rules) {
      if (!r->when) {
        out_.push_back(ret(r->action));
        return;  // later rules for this call are unreachable
      }
      std::vector<PendingJump> block;
      emit_condition(*r->when, block);
      const int match = static_cast<int>(block.size()), nomatch = match + 1;
      for (int i = 0; i < static_cast<int>(block.size()); i++) {
        PendingJump& p = block[i];
        auto resolve = [&](int target) {
          const int to = target == MATCH ? match : target == NOMATCH ? nomatch : i + 1;
          return to - (i + 1);
        };
        if (BPF_CLASS(p.insn.code) == BPF_JMP) {
          if (BPF_OP(p.insn.code) == BPF_JA) {
            p.insn.k = static_cast<uint32_t>(resolve(p.jt));
          } else {
            p.insn.jt = static_cast<uint8_t>(resolve(p.jt));
            p.insn.jf = static_cast<uint8_t>(resolve(p.jf));
          }
        }
        out_.push_back(p.insn);
      }
      out_.push_back(ret(r->action));
    }
    out_.push_back(ret(spec_.default_action));
  }

  const FilterSpec& spec_;
  std::map<uint32_t, std::vector<const SeccompRule*>> by_nr_;
  std::vector<uint32_t> nrs_;
  std::map<uint32_t, std::vector<size_t>> body_patches_;
  std::vector<sock_filter> out_;
};

int seccomp_syscall(unsigned op, unsigned flags, void* arg) {
  return static_cast<int>(syscall(SYS_seccomp, op, flags, arg));
}

}  // namespace

uint32_t SeccompAction::ret_value() const {
  switch (kind) {
    case ALLOW: return SECCOMP_RET_ALLOW;
    case ERRNO: return SECCOMP_RET_ERRNO | (static_cast<uint32_t>(err) & SECCOMP_RET_DATA);
    case USER_NOTIF: return SECCOMP_RET_USER_NOTIF;
    case KILL_PROCESS: return SECCOMP_RET_KILL_PROCESS;
  }
  return SECCOMP_RET_KILL_PROCESS;
}

std::vector<sock_filter> build_filter(const FilterSpec& spec) { return Builder(spec).build(); }

std::vector<SeccompRule> default_deny_rules() {
  std::vector<SeccompRule> rules;
  for (const auto& d : DENY_EPERM) {
    rules.push_back({d.nr, d.name, SeccompAction::errno_(EPERM), std::nullopt, d.reason});
  }
  // Newer than Docker's profile, which runc then answers with ENOSYS; so does berth, and callers
  // fall back (to open_tree and mount_setattr, themselves denied; to the FS_IOC_FS[GS]ETXATTR
  // ioctls).
  rules.push_back({SYS(open_tree_attr), SeccompAction::errno_(ENOSYS), std::nullopt,
                   "new mount API (newer than Docker's profile: ENOSYS)"});
  for (auto [nr, name] : {std::pair{__NR_file_getattr, "file_getattr"}, std::pair{__NR_file_setattr, "file_setattr"}}) {
    rules.push_back({nr, name, SeccompAction::errno_(ENOSYS), std::nullopt, "newer than Docker's profile: ENOSYS, callers fall back to the ioctls"});
  }
  // socket() takes an int family: only the low 32 bits count, so compare only those (a caller
  // could otherwise set high bits the kernel ignores).
  for (uint64_t family : DENIED_SOCKET_FAMILIES) {
    rules.push_back({SYS(socket), SeccompAction::errno_(EAFNOSUPPORT),
                     ArgCondition{0, ArgCondition::MASKED_EQ, 0xffffffffULL, family},
                     family == 40 ? "AF_VSOCK reaches the hypervisor's sockets, outside every network namespace"
                                  : "AF_ALG exposes the kernel's crypto API, a steady source of kernel bugs"});
  }
  rules.push_back({SYS(clone), SeccompAction::errno_(EPERM),
                   ArgCondition{0, ArgCondition::MASKED_NONZERO, CLONE_NS_FLAGS, 0},
                   "clone with a CLONE_NEW* flag makes namespaces (CAP_SYS_ADMIN)"});
  // clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes glibc fall back to
  // clone, whose flags the rule above sees (Docker does the same).
  rules.push_back({SYS(clone3), SeccompAction::errno_(ENOSYS), std::nullopt,
                   "flags in memory, unseen by BPF; ENOSYS makes libc fall back to clone"});
  for (uint64_t v : PERSONALITY_ALLOWED) {
    rules.push_back({SYS(personality), SeccompAction::allow(), ArgCondition{0, ArgCondition::EQ, ~uint64_t{0}, v},
                     "personality values Docker allows"});
  }
  rules.push_back({SYS(personality), SeccompAction::errno_(EPERM), std::nullopt,
                   "other personalities (e.g. ADDR_NO_RANDOMIZE) weaken hardening"});
  return rules;
}

FilterSpec default_deny_spec() {
  FilterSpec spec;
  spec.rules = default_deny_rules();
  spec.max_nr = LAST_REVIEWED_NR;
  return spec;
}

std::vector<std::string> denied_syscall_names() {
  std::vector<std::string> names;
  for (const auto& r : default_deny_rules()) {
    if (r.action.kind != SeccompAction::ALLOW) names.push_back(r.name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

FilterSpec proxy_filter_spec(const ProxyTraps& traps) {
  FilterSpec spec;
  spec.max_nr = LAST_REVIEWED_NR;
  const auto notif = SeccompAction::user_notif();
  constexpr uint64_t kMsgFastOpen = 0x20000000;  // MSG_FASTOPEN
  for (auto& r : default_deny_rules()) {
    if (r.nr == __NR_mount) continue;  // the supervisor's allow-list decides
    spec.rules.push_back(std::move(r));
  }
  spec.rules.push_back({SYS(mount), notif, std::nullopt, "tmpfs and proc done by the supervisor, the rest refused"});
  spec.rules.push_back({SYS(seccomp), SeccompAction::errno_(EPERM),
                        ArgCondition{1, ArgCondition::MASKED_NONZERO, SECCOMP_FILTER_FLAG_NEW_LISTENER, 0},
                        "a nested listener would take notifications away from the supervisor"});
  spec.rules.push_back({SYS(sysinfo), notif, std::nullopt, "emulated: the container's limits"});
  spec.rules.push_back({SYS(mknod), notif, std::nullopt, "safe character devices emulated, the rest refused"});
  spec.rules.push_back({SYS(mknodat), notif, std::nullopt, "safe character devices emulated, the rest refused"});
  if (traps.network) {
    spec.rules.push_back({SYS(bind), notif, std::nullopt, "declared ports are bound on the host"});
    spec.rules.push_back({SYS(connect), notif, std::nullopt, "services, egress policy, chaos"});
    spec.rules.push_back({SYS(listen), notif, std::nullopt, "done by the supervisor: a host socket may listen only on its declared port"});
    spec.rules.push_back({SYS(sendto), SeccompAction::errno_(EOPNOTSUPP),
                          ArgCondition{3, ArgCondition::MASKED_NONZERO, kMsgFastOpen, 0},
                          "fast open connects without a trapped connect"});
    spec.rules.push_back({SYS(sendto), notif, ArgCondition{4, ArgCondition::MASKED_NONZERO, ~uint64_t{0}, 0},
                          "a datagram with a destination: chaos"});
    spec.rules.push_back({SYS(sendmsg), SeccompAction::errno_(EOPNOTSUPP),
                          ArgCondition{2, ArgCondition::MASKED_NONZERO, kMsgFastOpen, 0},
                          "fast open connects without a trapped connect"});
    spec.rules.push_back({SYS(sendmmsg), SeccompAction::errno_(EOPNOTSUPP),
                          ArgCondition{3, ArgCondition::MASKED_NONZERO, kMsgFastOpen, 0},
                          "fast open connects without a trapped connect"});
  }
  if (traps.uname) spec.rules.push_back({SYS(uname), notif, std::nullopt, "uname_release"});
  if (traps.open) {
#ifdef __NR_open
    spec.rules.push_back({SYS(open), notif, std::nullopt, "chaos on file paths"});
#endif
    spec.rules.push_back({SYS(openat), notif, std::nullopt, "chaos on file paths"});
    spec.rules.push_back({SYS(openat2), notif, std::nullopt, "chaos on file paths"});
  }
  return spec;
}

void set_no_new_privs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) throw_errno("BERTH_ERR_SECCOMP", "prctl(PR_SET_NO_NEW_PRIVS)");
}

void install_filter(const std::vector<sock_filter>& program) {
  sock_fprog prog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  if (seccomp_syscall(SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
    throw_errno("BERTH_ERR_SECCOMP", "seccomp(SECCOMP_SET_MODE_FILTER)");
  }
}

UniqueFd install_filter_with_listener(const std::vector<sock_filter>& program) {
  sock_fprog prog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  int fd = seccomp_syscall(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (fd < 0) throw_errno("BERTH_ERR_SECCOMP", "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)");
  return UniqueFd(fd);
}

void install_default_filter() {
  const auto program = build_filter(default_deny_spec());
  set_no_new_privs();
  install_filter(program);
}

}  // namespace berth
