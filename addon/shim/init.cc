#include "init.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "exec.h"
#include "seccomp.h"
#include "util.h"

namespace berth {
namespace {

constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT};

void ignore_handler(int) {}

char* g_args_start = nullptr;
size_t g_args_len = 0;

}  // namespace

void remember_command_line(int argc, char** argv) {
  if (argc < 1) return;
  // argv strings are contiguous in the initial stack; measure up to the end of the last one.
  g_args_start = argv[0];
  g_args_len = static_cast<size_t>(argv[argc - 1] + std::strlen(argv[argc - 1]) - argv[0]);
}

void hide_command_line(const char* title) {
  if (g_args_start && g_args_len > 0) {
    std::memset(g_args_start, 0, g_args_len);
    std::strncpy(g_args_start, title, g_args_len);
  }
  ::prctl(PR_SET_NAME, title, 0, 0, 0);  // comm, otherwise "memfd:berth-shi"
}

[[noreturn]] void run_init(const std::vector<std::string>& argv, const std::vector<std::string>& env, int report_fd,
                          const FilterPlan& plan) {
  // Block what we wait for *before* forking, so a SIGCHLD or SIGTERM that arrives between the
  // fork and sigwaitinfo stays pending instead of being lost. A real (empty) handler as well:
  // the kernel discards a signal to a pid namespace's init that has SIG_DFL for it, and we do not
  // want to depend on the "blocked signals are never ignored" rule alone.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  struct sigaction sa{};
  sa.sa_handler = ignore_handler;
  for (int sig : kForwarded) {
    sigaddset(&set, sig);
    ::sigaction(sig, &sa, nullptr);
  }
  ::sigprocmask(SIG_BLOCK, &set, &old);

  pid_t child = ::fork();
  if (child < 0) {
    SysError e{"BERTH_ERR_SYSCALL", "fork", "init", errno, ""};
    report_error(report_fd, e);
    ::_exit(125);
  }
  if (child == 0) {
    try {
      struct sigaction dfl{};
      dfl.sa_handler = SIG_DFL;
      for (int sig : kForwarded) ::sigaction(sig, &dfl, nullptr);
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      exec_command(argv, env, plan);
    } catch (const SysError& e) {
      report_error(report_fd, e);
      ::_exit(exec_failure_status(e));
    } catch (...) {
      ::_exit(125);
    }
  }
  // Only the command reports; closing our copy lets the shim see EOF once it has execve'd.
  ::close_range(3, ~0U, 0);
  try {
    install_default_filter();
  } catch (const SysError&) {
    // The command itself is filtered; an unfiltered init is less hardened, not broken.
  }

  for (;;) {
    siginfo_t info{};
    int sig = ::sigwaitinfo(&set, &info);
    if (sig < 0) continue;  // EINTR
    if (sig != SIGCHLD) {
      ::kill(child, sig);
      continue;
    }
    // Reap everything: SIGCHLD is not queued, one signal may stand for many exits.
    for (;;) {
      int status = 0;
      pid_t p = ::waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (p == child) {
        // Leaving kills every other process of the namespace (SIGKILL from the kernel).
        if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
        ::_exit(128 + WTERMSIG(status));
      }
    }
  }
}

}  // namespace berth
