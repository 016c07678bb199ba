// The last steps before a container process runs its command (shared by the container's PID 1
// and by `berth-shim exec`), and the `exec` mode itself.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "seccomp.h"
#include "util.h"

namespace berth {

// Which filter exec_command installs, and where its listener goes (docs/proxy.md).
struct FilterPlan {
  ProxyTraps traps;
  enum Sink {
    SYNC,     // the container's first command: one 'L' message with the fd on the sync socket
    CONTROL,  // `berth-shim exec`: a `listener` request with the fd on the shim's control socket
    NONE,     // no shim to hand it to: trapped calls fail with ENOSYS
  } sink = NONE;
  int fd = -1;
};
FilterPlan filter_plan(const Config& cfg, FilterPlan::Sink sink, int fd);

// Every signal back to SIG_DFL and unblocked: dispositions set to SIG_IGN and the blocked
// mask survive execve, and the shim ignores SIGPIPE for itself.
void reset_signals();

// Capabilities down to Docker's default set, no_new_privs, and every fd above 2 marked
// close-on-exec (not closed: the fd that reports an execve failure must live until execve).
void harden(bool userns);

// Resolves argv[0] through PATH (from ENV, or the usual default), installs the seccomp filter
// (the proxy filter with a new listener, handed over as PLAN says) and execve()s. Only returns by throwing: BERTH_ERR_EXEC_NOT_FOUND (ENOENT),
// BERTH_ERR_EXEC_DENIED (EACCES/ENOEXEC/EPERM), or whatever failed before.
[[noreturn]] void exec_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                               const FilterPlan& plan);

// The `exec` exit status for an error: 127 not found, 126 not executable, 125 anything else.
int exec_failure_status(const SysError& e);

// Merges KEY=VALUE overrides into a base environment (a later KEY replaces an earlier one).
std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& overrides);

// Sends one error line (SysError::to_json) on FD; best effort.
void report_error(int fd, const SysError& e);

// `berth-shim exec BUNDLE [-e K=V]... [--cwd DIR] -- CMD [ARG...]`; returns the exit status.
int cmd_exec(int argc, char** argv);

}  // namespace berth
