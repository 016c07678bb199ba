// The tiny init (`init` = 1): the container's PID 1 when the command should not be. Like tini or
// catatonit: it reaps every orphan of the pid namespace, forwards termination signals to the
// command, and exits with the command's status.
#pragma once

#include <string>
#include <vector>

#include "exec.h"

namespace berth {

// Called in the container's PID 1 after harden(). Forks the command (which runs
// exec_command; an execve failure goes to REPORT_FD as one JSON line and exits 127/126/125),
// then serves as init until the command exits. Exit status: the command's exit code, or
// 128+signal when a signal killed it — PID 1 cannot re-raise the signal on itself (the kernel
// drops signals a pid namespace's init sends itself without a handler), so, as with tini, the
// signal is folded into the code.
// main() hands over argv so the init can overwrite it: /proc/<pid>/cmdline is read from that
// memory, and it holds host paths (the shim binary, the bundle) the container need not see.
void remember_command_line(int argc, char** argv);
void hide_command_line(const char* title);

// PLAN is the command's filter (the init itself gets the default deny filter, no listener).
[[noreturn]] void run_init(const std::vector<std::string>& argv, const std::vector<std::string>& env, int report_fd,
                          const FilterPlan& plan);

}  // namespace berth
