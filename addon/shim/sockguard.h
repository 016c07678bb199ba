// The socket guard: host-network sockets that the supervisor puts in a workload's hands can be
// connected or bound by the shim alone, enforced by the kernel (docs/proxy.md, "Safety").
//
// Why: a trapped connect or bind that the supervisor lets continue
// (SECCOMP_USER_NOTIF_FLAG_CONTINUE) is re-run by the kernel on whatever the fd number and the
// address memory name by then. A second thread can dup2() a host socket it holds (a declared
// port's, or a routed connect's after connect(AF_UNSPEC)) onto the checked fd, or rewrite the
// address, between the check and the re-run: the host socket then connects to the host's
// loopback or binds a host port nobody declared. seccomp_unotify(2) says as much: CONTINUE is not
// for security decisions. Some calls must continue all the same (an AF_UNIX connect resolves its
// path in the caller's root and with its credentials), so the decision cannot be moved into the
// supervisor for every call; instead every host socket becomes unusable for re-targeting by
// anyone but the shim.
//
// How: the shim moves itself into a cgroup v2 of its own, and attaches cgroup sock_addr programs
// (connect4/6, bind4/6, UDP sendmsg4/6) to it. The kernel runs them for every socket created in
// that cgroup — every socket the shim makes — whichever process calls, and they refuse (EPERM)
// when the socket is in the shim's network namespace and the caller is not the shim itself.
// Sockets in other network namespaces (nothing of the shim's) pass untouched. The programs go
// with the shim: they are held by bpf links that close when it exits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "util.h"

namespace berth {

class SockGuard {
 public:
  // Creates `<cgroup2 mount>/<rel_path>`, moves this process into it and attaches the programs.
  // Throws SysError BERTH_ERR_SOCKGUARD (BPF refused, ...); undoes what it did. Without a cgroup2
  // mount in this namespace it uses a detached one of its own.
  static std::unique_ptr<SockGuard> install(const std::string& rel_path);
  ~SockGuard();
  SockGuard(const SockGuard&) = delete;
  SockGuard& operator=(const SockGuard&) = delete;

  // Moves this process back to the cgroup2 root and removes its cgroup: for the shim's exit.
  // Best effort, never throws.
  void remove();
  const std::string& dir() const { return dir_; }
  uint64_t cgroup_id() const { return cgroup_id_; }  // the cgroup's inode number

 private:
  SockGuard() = default;
  std::string root_;  // the cgroup2 hierarchy's root: its mount, or /proc/self/fd/N of mount_
  UniqueFd mount_;    // a detached cgroup2 mount, where none is mounted in our namespace
  std::string dir_;
  uint64_t cgroup_id_ = 0;
  std::vector<UniqueFd> links_;
};

// The program's instructions for the given host netns cookie and tgid (pure; for tests).
std::vector<unsigned char> sockguard_program(unsigned long long netns_cookie, int tgid);

}  // namespace berth
