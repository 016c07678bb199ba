#include "exec.h"

#include <linux/capability.h>

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "caps.h"
#include "cgroups.h"
#include "devices.h"
#include "config.h"
#include "namespaces.h"
#include "seccomp.h"
#include "server.h"

extern char** environ;

namespace berth {

void reset_signals() {
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // EINVAL for the two glibc-reserved RT signals: fine
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void harden(bool userns) {
  std::vector<int> caps = default_capabilities();
  // Without a user namespace the container's root is host root: CAP_MKNOD would let it make a
  // node for a host disk, and no devices cgroup fences what such a node opens. Docker keeps
  // MKNOD because its devices cgroup does the fencing; here the capability goes instead.
  if (!userns) std::erase(caps, CAP_MKNOD);
  apply_capabilities(caps);
  set_no_new_privs();
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) throw_errno("BERTH_ERR_SYSCALL", "close_range", "3..");
}

namespace {

std::string find_in_path(const std::string& file, const std::vector<std::string>& env, int* err) {
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  *err = ENOENT;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = path.substr(i, j - i);
    if (dir.empty()) dir = ".";
    std::string cand = dir + "/" + file;
    struct stat st{};
    if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(cand.c_str(), X_OK) == 0) return cand;
      *err = EACCES;  // like execvp: remember, keep looking
    }
    i = j + 1;
  }
  return "";
}

std::vector<char*> cstrs(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

[[noreturn]] void throw_exec(const std::string& path, int err) {
  errno = err;
  const char* code = err == ENOENT                                   ? "BERTH_ERR_EXEC_NOT_FOUND"
                     : (err == EACCES || err == ENOEXEC || err == EPERM) ? "BERTH_ERR_EXEC_DENIED"
                                                                         : "BERTH_ERR_SYSCALL";
  throw_errno(code, "execve", path);
}

}  // namespace

FilterPlan filter_plan(const Config& cfg, FilterPlan::Sink sink, int fd) {
  FilterPlan p;
  p.traps.network = cfg.private_net;  // net=host: no namespace of its own to proxy
  p.traps.uname = !cfg.uname_release.empty();
  p.traps.open = cfg.chaos_open;
  p.sink = sink;
  p.fd = fd;
  return p;
}

namespace {

void send_fd(int sock, const char* data, size_t len, int fd) {
  if (send_with_fds(sock, data, len, &fd, 1) < 0) throw_errno("BERTH_ERR_SECCOMP", "sendmsg", "seccomp listener");
}

// Installs the proxy filter and hands its listener to the shim. From here on the trapped calls
// wait for the shim's answer, so the shim has the fd before anything runs that could make one.
void install_proxy_filter(const FilterPlan& plan) {
  const auto program = build_filter(proxy_filter_spec(plan.traps));
  set_no_new_privs();
  if (plan.sink == FilterPlan::NONE) return install_filter(program);
  UniqueFd listener = install_filter_with_listener(program);
  if (plan.sink == FilterPlan::SYNC) return send_fd(plan.fd, "L", 1, listener.get());
  static const char kReq[] = "listener\n";
  send_fd(plan.fd, kReq, sizeof kReq - 1, listener.get());
  listener.reset();
  // Wait for the reply: the shim has registered the listener once it answers. The shim also
  // sends every client its unprompted events (calls, port), which may come first: skip them.
  std::string reply;
  for (int lines = 0; lines < 64; lines++) {
    char c = 0;
    reply.clear();
    while (reply.size() < 4096) {
      ssize_t n = ::read(plan.fd, &c, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || c == '\n') break;
      reply += c;
    }
    if (reply.rfind("{\"event\":", 0) != 0) break;
  }
  if (reply.rfind("{\"ok\":true", 0) != 0) throw_error("BERTH_ERR_SECCOMP", "the shim refused the exec's seccomp listener: " + reply);
}

}  // namespace

[[noreturn]] void exec_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                               const FilterPlan& plan) {
  std::string file = argv.at(0);
  if (file.find('/') == std::string::npos) {
    int err = ENOENT;
    std::string found = find_in_path(file, env, &err);
    if (found.empty()) throw_exec(file, err);
    file = found;
  }
  auto args = cstrs(argv);
  auto envp = cstrs(env);
  // Last: the filter denies calls the steps above may need; nothing but execve follows.
  install_proxy_filter(plan);
  ::execve(file.c_str(), args.data(), envp.data());
  throw_exec(argv.at(0), errno);
}

int exec_failure_status(const SysError& e) {
  if (e.code == "BERTH_ERR_EXEC_NOT_FOUND") return 127;
  if (e.code == "BERTH_ERR_EXEC_DENIED") return 126;
  return 125;
}

std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) {
    std::string key = o.substr(0, o.find('='));
    bool replaced = false;
    for (auto& b : base)
      if (b.compare(0, key.size() + 1, key + "=") == 0) {
        b = o;
        replaced = true;
      }
    if (!replaced) base.push_back(o);
  }
  return base;
}

void report_error(int fd, const SysError& e) {
  std::string line = e.to_json() + "\n";
  // send() on the sync socket (no SIGPIPE), write() on a pipe or fd 3.
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) < 0 && errno == ENOTSOCK) {
    ssize_t n = ::write(fd, line.data(), line.size());
    (void)n;
  }
}

namespace {

// A tiny JSON number lookup for the shim's own `state` file (flat, numbers only).
long long json_number(const std::string& json, const std::string& key) {
  size_t p = json.find("\"" + key + "\":");
  if (p == std::string::npos) throw_error("BERTH_ERR_SYSCALL", "state: no `" + key + "`");
  return std::strtoll(json.c_str() + p + key.size() + 3, nullptr, 10);
}

pid_t exec_child_pid = 0;
void forward_signal(int sig) {
  if (exec_child_pid > 0) ::kill(exec_child_pid, sig);
}

struct ExecArgs {
  std::string bundle;
  std::vector<std::string> env;
  std::string cwd;
  std::vector<std::string> argv;
};

ExecArgs parse_exec_args(int argc, char** argv) {
  ExecArgs a;
  int i = 2;
  if (i >= argc) throw_error("BERTH_ERR_CONFIG", "usage: berth-shim exec BUNDLE [-e K=V]... [--cwd DIR] -- CMD [ARG...]");
  a.bundle = argv[i++];
  for (; i < argc; i++) {
    std::string s = argv[i];
    if (s == "--") {
      i++;
      break;
    }
    if ((s == "-e" || s == "--cwd") && i + 1 < argc) {
      std::string v = argv[++i];
      if (s == "-e") {
        if (v.find('=') == std::string::npos || v[0] == '=') throw_error("BERTH_ERR_CONFIG", "-e wants KEY=VALUE: " + v);
        a.env.push_back(v);
      } else {
        if (v.empty() || v[0] != '/') throw_error("BERTH_ERR_CONFIG", "--cwd wants an absolute path: " + v);
        a.cwd = v;
      }
      continue;
    }
    throw_error("BERTH_ERR_CONFIG", "exec: unexpected argument `" + s + "` (missing `--`?)");
  }
  for (; i < argc; i++) a.argv.push_back(argv[i]);
  if (a.argv.empty()) throw_error("BERTH_ERR_CONFIG", "exec: no command after `--`");
  return a;
}

}  // namespace

int cmd_exec(int argc, char** argv) {
  bool have_fd3 = ::fcntl(3, F_GETFD) >= 0;
  try {
    ExecArgs a = parse_exec_args(argc, argv);
    Config cfg = load_config(a.bundle + "/config");
    std::string state = read_file(a.bundle + "/state");
    pid_t pid = static_cast<pid_t>(json_number(state, "pid"));
    unsigned long long start = static_cast<unsigned long long>(json_number(state, "pidStartTime"));

    // No core dumps, no ptrace from inside: once we join the container's user namespace its
    // root would otherwise be able to attach to us while we still hold host resources.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) throw_errno("BERTH_ERR_SYSCALL", "prctl", "PR_SET_DUMPABLE");

    UniqueFd pidfd(static_cast<int>(sys_pidfd_open(pid)));
    if (!pidfd.valid()) throw_errno("BERTH_ERR_NAMESPACE", "pidfd_open", std::to_string(pid));
    // Checked after taking the pidfd: from here on the pid cannot be recycled under us, so the
    // start time proves the pidfd refers to the container's PID 1 and not a newcomer.
    if (proc_start_time(pid) != start) {
      errno = ESRCH;
      throw_errno("BERTH_ERR_NAMESPACE", "pidfd_open", "container PID 1 " + std::to_string(pid) + " has exited");
    }

    // The cgroup first, while the host's /sys/fs/cgroup is still our mount namespace's.
    auto cg = open_cgroup(cfg.cgroup);
    std::vector<std::string> procs_files = cg->procs_files();
    // The device allow-list's v1 cgroup too: an exec'd process is fenced like PID 1.
    for (const auto& f : open_device_cgroup(cfg.cgroup)->procs_files()) procs_files.push_back(f);
    for (const auto& procs : procs_files) {
      try {
        write_file(procs, std::to_string(::getpid()));
      } catch (SysError& e) {
        e.code = "BERTH_ERR_CGROUP";
        throw;
      }
    }

    // The shim's control socket, while its path is still ours to reach: the command's seccomp
    // listener goes to the shim through it (docs/proxy.md), so exec'd processes are supervised
    // like the container's own. No shim: the listener is dropped and trapped calls fail ENOSYS.
    UniqueFd control = connect_unix(a.bundle + "/shim.sock");
    FilterPlan plan = filter_plan(cfg, control.valid() ? FilterPlan::CONTROL : FilterPlan::NONE, control.get());

    // One setns with a pidfd and several flags: the kernel switches all namespaces at once, in
    // the right order (user namespace first), or none.
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
    if (cfg.userns()) flags |= CLONE_NEWUSER;
    if (cfg.private_net) flags |= CLONE_NEWNET;
    if (::setns(pidfd.get(), flags) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setns", "pidfd " + std::to_string(pid));
    pidfd.reset();

    if (cfg.userns()) {
      // Become the container's root (we joined as an unmapped uid, i.e. nobody).
      if (::setresgid(0, 0, 0) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setresgid", "0");
      if (::setgroups(0, nullptr) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setgroups", "0");
      if (::setresuid(0, 0, 0) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setresuid", "0");
    }

    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) < 0) throw_errno("BERTH_ERR_SYSCALL", "pipe2");
    UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
    std::vector<std::string> env = merge_env(cfg.env, a.env);
    std::string cwd = a.cwd.empty() ? cfg.cwd : a.cwd;

    // The joined pid namespace applies to children only: fork.
    pid_t child = ::fork();
    if (child < 0) throw_errno("BERTH_ERR_SYSCALL", "fork");
    if (child == 0) {
      err_r.reset();
      reset_signals();
      try {
        if (::chdir(cwd.c_str()) < 0) throw_errno("BERTH_ERR_SYSCALL", "chdir", cwd);
        harden(cfg.userns());
        exec_command(a.argv, env, plan);
      } catch (const SysError& e) {
        report_error(err_w.get(), e);
        ::_exit(exec_failure_status(e));
      } catch (const std::exception& e) {
        SysError se;
        se.code = "BERTH_ERR_SYSCALL";
        se.detail = std::string("exec: ") + e.what();
        report_error(err_w.get(), se);
        ::_exit(125);
      } catch (...) {
        ::_exit(125);
      }
    }
    err_w.reset();
    exec_child_pid = child;
    struct sigaction sa{};
    sa.sa_handler = forward_signal;
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) ::sigaction(sig, &sa, nullptr);

    // EOF: execve succeeded (the pipe is close-on-exec); a line: it failed.
    std::string report;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(err_r.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      report.append(buf, static_cast<size_t>(n));
    }
    if (!report.empty()) {
      // To the caller's fd 3 when it gave one (berthd does), else to stderr: never dropped.
      ssize_t n = ::write(have_fd3 ? 3 : 2, report.data(), report.size());
      (void)n;
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0) {
      if (errno != EINTR) return 125;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 125;
  } catch (const SysError& e) {
    if (have_fd3) report_error(3, e);
    else {
      std::string line = e.message() + "\n";
      ssize_t n = ::write(2, line.data(), line.size());
      (void)n;
    }
    return exec_failure_status(e);
  }
}

}  // namespace berth
