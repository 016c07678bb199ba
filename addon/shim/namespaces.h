// Namespace mechanics: creating the container's namespaces (clone3), its id maps, its loopback
// interface, and joining them from `exec`.
#pragma once

#include <sys/types.h>

#include <string>

#include "config.h"
#include "util.h"

namespace berth {

// The CLONE_NEW* flags of a container: mount, pid, uts, ipc always; net unless net=host; user
// unless --userns host. CLONE_NEWCGROUP is deliberately not here (see container.cc).
unsigned long container_clone_flags(const Config& cfg);

// clone3(flags | CLONE_PIDFD) with SIGCHLD as exit signal. Returns 0 in the child (like fork),
// the child's pid in the parent with *pidfd set. Throws BERTH_ERR_NAMESPACE.
pid_t clone_with_pidfd(unsigned long flags, UniqueFd* pidfd);

// Writes /proc/PID/{uid,gid}_map as "0 BASE COUNT". setgroups stays "allow": the writer holds
// CAP_SETGID in the parent namespace, so the kernel does not require "deny", and a system
// container's root must be able to call setgroups(2) (su, login, sshd).
void write_id_maps(pid_t pid, unsigned long base, unsigned long count);

// Sets IFF_UP on "lo" in the current network namespace.
void loopback_up();

// pidfd_open / pidfd_send_signal through syscall(2): glibc 2.36's <sys/pidfd.h> lacks
// extern "C", so its declarations do not link from C++.
int sys_pidfd_open(pid_t pid);
int sys_pidfd_send_signal(int pidfd, int sig);

// Field 22 of /proc/PID/stat (start time in clock ticks since boot); 0 when unreadable.
unsigned long long proc_start_time(pid_t pid);

}  // namespace berth
