// The container's seccomp filter, as classic BPF built by hand (no libseccomp). As in youki, the
// builder is pure — a FilterSpec in, instructions out — so it is unit-tested without root; only
// set_no_new_privs() and install_filter() make syscalls.
#pragma once

#include <linux/filter.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util.h"

namespace berth {

// What the filter returns for a call.
struct SeccompAction {
  enum Kind { ALLOW, ERRNO, USER_NOTIF, KILL_PROCESS };
  Kind kind = ALLOW;
  int err = 0;  // for ERRNO

  static SeccompAction allow() { return {ALLOW, 0}; }
  static SeccompAction errno_(int e) { return {ERRNO, e}; }
  static SeccompAction user_notif() { return {USER_NOTIF, 0}; }
  static SeccompAction kill_process() { return {KILL_PROCESS, 0}; }
  uint32_t ret_value() const;  // SECCOMP_RET_*
  bool operator==(const SeccompAction&) const = default;
};

// A test on one 64-bit syscall argument.
struct ArgCondition {
  enum Op {
    MASKED_NONZERO,  // (arg & mask) != 0
    EQ,              // arg == value
    MASKED_EQ,       // (arg & mask) == value
  };
  unsigned index = 0;  // 0..5
  Op op = EQ;
  uint64_t mask = ~uint64_t{0};
  uint64_t value = 0;
};

// One rule. Rules for the same syscall are tried in the order given; the first whose condition
// holds (or that has none) decides. A syscall no rule decides gets the spec's default action.
struct SeccompRule {
  int nr = -1;
  std::string name;
  SeccompAction action;
  std::optional<ArgCondition> when;
  std::string reason;  // one line: why (kept next to the rule, shown by `berth` tooling)
};

struct FilterSpec {
  uint32_t arch = 0;                                        // AUDIT_ARCH_*; 0 = the build's own
  SeccompAction wrong_arch = SeccompAction::kill_process(); // another ABI (e.g. i386 via int 0x80)
  SeccompAction x32 = SeccompAction::errno_(ENOSYS);        // x86_64 only: nr with __X32_SYSCALL_BIT
  SeccompAction default_action = SeccompAction::allow();
  // Numbers above max_nr (when not 0) get `newer`: a deny-list must not allow calls added to the
  // kernel after it was written.
  uint32_t max_nr = 0;
  SeccompAction newer = SeccompAction::errno_(ENOSYS);
  std::vector<SeccompRule> rules;
};

// Compiles the spec: arch check, x32 check, the max_nr check, a binary search over the syscall
// numbers, then one block per syscall with conditions. Deterministic. Throws SysError (BERTH_ERR_SECCOMP) for a bad
// spec (argument index > 5, program longer than BPF_MAXINSNS).
std::vector<sock_filter> build_filter(const FilterSpec& spec);

// Docker's default profile for a container with Docker's default capabilities, as a deny list on
// a default of ALLOW, plus ENOSYS for every number newer than the table: see seccomp.cc, one
// reason per entry. Also denies socket(AF_ALG) and socket(AF_VSOCK) with EAFNOSUPPORT.
// test/escape-seccomp.test.ts checks it against Docker's list; the deliberate differences are
// listed there.
FilterSpec default_deny_spec();

// Names of the syscalls default_deny_spec() denies in any form (always, or with some arguments
// as for clone, personality and socket), sorted.
std::vector<std::string> denied_syscall_names();

// The default filter's rules with their reasons, for display.
std::vector<SeccompRule> default_deny_rules();

// prctl(PR_SET_NO_NEW_PRIVS, 1). Throws SysError (BERTH_ERR_SECCOMP).
void set_no_new_privs();

// seccomp(SECCOMP_SET_MODE_FILTER). Without CAP_SYS_ADMIN, no_new_privs must be set first.
// Throws SysError (BERTH_ERR_SECCOMP).
void install_filter(const std::vector<sock_filter>& program);

// Same, with SECCOMP_FILTER_FLAG_NEW_LISTENER: returns the notification fd a program with
// USER_NOTIF rules needs (without a listener those calls fail with ENOSYS).
UniqueFd install_filter_with_listener(const std::vector<sock_filter>& program);

// What the proxy namespace traps (docs/proxy.md, "What the filter traps").
struct ProxyTraps {
  bool network = true;  // bind, connect, sendto with a destination (off with net=host)
  bool uname = false;   // only with uname_release
  bool open = false;    // open, openat, openat2: only with chaos_calls containing `open`
};

// default_deny_spec() with `mount` handed to the supervisor instead of denied, and USER_NOTIF for
// the trapped calls. Also denies a nested listener (seccomp with SECCOMP_FILTER_FLAG_NEW_LISTENER)
// and MSG_FASTOPEN on sendmsg/sendmmsg/sendto: a socket the supervisor injected lives in the host's
// network namespace, and a fast-open send would connect it to an address no trapped call saw.
FilterSpec proxy_filter_spec(const ProxyTraps& traps);

// set_no_new_privs() then install_filter(build_filter(default_deny_spec())). Call it last before
// execve: the filter denies mount, unshare, setns and friends.
void install_default_filter();

}  // namespace berth
