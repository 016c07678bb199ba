#include "container.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "cgroups.h"
#include "config.h"
#include "devices.h"
#include "exec.h"
#include "init.h"
#include "logs.h"
#include "mounts.h"
#include "namespaces.h"
#include "rules.h"
#include "meminfo.h"
#include "server.h"
#include "sockguard.h"
#include "supervisor.h"
#include "util.h"

namespace berth {
namespace {

constexpr int kLogDrainMs = 2000;

// The child's start failed: it already reported a SysError as JSON (passed through verbatim).
struct ChildFailed {
  std::string json;
};

// ---- the sync socket: parent -> child "go" with the mount trees, child -> parent errors ----

void send_go(int sock, const std::vector<int>& fds) {
  if (send_with_fds(sock, "g", 1, fds.data(), fds.size()) < 0) throw_errno("BERTH_ERR_SYSCALL", "sendmsg", "sync socket");
}

std::vector<UniqueFd> recv_go(int sock, size_t nfds) {
  char byte = 0;
  std::vector<UniqueFd> out;
  bool truncated = false;
  ssize_t n;
  do n = recv_with_fds(sock, &byte, 1, nfds, &out, 0, &truncated);
  while (n < 0 && errno == EINTR);
  if (n < 0) throw_errno("BERTH_ERR_SYSCALL", "recvmsg", "sync socket");
  if (n == 0) throw_error("BERTH_ERR_SYSCALL", "the shim went away during container set-up");
  if (out.size() != nfds || truncated) throw_error("BERTH_ERR_SYSCALL", "sync socket: wrong number of mount fds");
  return out;
}

// ---- the container's first process: everything from its own namespaces to execve ----

[[noreturn]] void container_child(const std::string& bundle, const Config& cfg, int sync, int out_w, int err_w) {
  reset_signals();
  try {
    // stdio: nothing to read, output to the shim's log pipes.
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!null.valid()) throw_errno("BERTH_ERR_SYSCALL", "open", "/dev/null");
    if (::dup2(null.get(), 0) < 0 || ::dup2(out_w, 1) < 0 || ::dup2(err_w, 2) < 0)
      throw_errno("BERTH_ERR_SYSCALL", "dup2", "stdio");
    ::close(out_w);
    ::close(err_w);

    // Wait for the parent: id maps written, cgroup joined, mount trees prepared.
    const bool meminfo = !cfg.meminfo_file.empty();
    std::vector<UniqueFd> trees = recv_go(sync, 1 + cfg.binds.size() + (meminfo ? 1 : 0));
    UniqueFd lower = std::move(trees[0]);
    trees.erase(trees.begin());
    UniqueFd meminfo_tree;
    if (meminfo) {
      meminfo_tree = std::move(trees.back());
      trees.pop_back();
    }

    // The bundle's directories, opened here and not in the shim: an fd opened before
    // CLONE_NEWNS names the *host* namespace's mount, and move_mount onto it fails (EINVAL).
    // Opened while our kernel uid is still host root (setresuid comes next), so a 0700
    // root-owned bundle directory is traversable by plain owner permission.
    BundleDirs dirs = open_bundle_dirs(bundle);

    // Our own cgroup namespace only now: its root is the cgroup we are in at unshare time, and
    // the parent has just moved us into the container's cgroup. Unsharing in clone() would
    // have rooted the namespace at the shim's cgroup instead.
    if (::unshare(CLONE_NEWCGROUP) < 0) throw_errno("BERTH_ERR_NAMESPACE", "unshare", "CLONE_NEWCGROUP");
    if (cfg.userns()) {
      // We were created as host root, which is unmapped in the new namespace (we run as the
      // overflow uid): become the namespace's root, i.e. uid_base on the host, so that files we
      // create in upper/ belong to the container.
      if (::setresgid(0, 0, 0) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setresgid", "0");
      if (::setgroups(0, nullptr) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setgroups", "0");
      if (::setresuid(0, 0, 0) < 0) throw_errno("BERTH_ERR_NAMESPACE", "setresuid", "0");
    }

    make_mounts_private();
    UniqueFd root = mount_overlay(cfg, dirs, std::move(lower));
    mount_binds(root.get(), cfg, trees);
    mount_proc(root.get());
    mount_sys(root.get(), cfg);
    mount_dev(root.get(), cfg);
    mask_paths(root.get());
    mount_meminfo(root.get(), meminfo_tree);
    readonly_paths(root.get());

    if (::sethostname(cfg.name.c_str(), cfg.name.size()) < 0) throw_errno("BERTH_ERR_NAMESPACE", "sethostname", cfg.name);
    if (cfg.private_net) loopback_up();

    pivot_into(root.get());
    root.reset();
    dirs = BundleDirs{};
    if (::chdir(cfg.cwd.c_str()) < 0) throw_errno("BERTH_ERR_SYSCALL", "chdir", cfg.cwd);
    // getcwd reports "(unreachable)/..." for a directory outside our root: a symlinked cwd
    // cannot lead out of the rootfs any more after pivot_root, but we check rather than trust.
    char buf[PATH_MAX];
    if (!::getcwd(buf, sizeof buf)) throw_errno("BERTH_ERR_SYSCALL", "getcwd", cfg.cwd);
    if (buf[0] != '/') {
      errno = EXDEV;
      throw_errno("BERTH_ERR_SYSCALL", "chdir", cfg.cwd + " (outside the container's root)");
    }

    harden(cfg.userns());
    if (cfg.init) {
      // What the container sees of PID 1 in ps: not the host's paths on our command line.
      hide_command_line("berth-init");
      run_init(cfg.args, cfg.env, sync, filter_plan(cfg, FilterPlan::SYNC, sync));
    }
    exec_command(cfg.args, cfg.env, filter_plan(cfg, FilterPlan::SYNC, sync));
  } catch (const SysError& e) {
    report_error(sync, e);
  } catch (const std::exception& e) {
    report_error(sync, SysError{"BERTH_ERR_SYSCALL", "", "", 0, e.what()});
  } catch (...) {
    report_error(sync, SysError{"BERTH_ERR_SYSCALL", "", "", 0, "unknown failure in the container's set-up"});
  }
  ::_exit(1);
}

// ---- the shim: steps 4-9 of docs/shim.md's create, in order ----

struct Container {
  std::unique_ptr<Cgroup> cgroup;
  std::unique_ptr<SupervisorCgroup> sup_cgroup;  // the supervisor's threads, charged to the container
  std::unique_ptr<DeviceCgroup> devices;
  std::unique_ptr<SockGuard> guard;  // removed (cgroup left) on the way out
  // Never destroyed: its threads run until the shim _exit()s (as every path out of run_shim does).
  std::unique_ptr<Supervisor> sup;
  std::unique_ptr<ControlServer> server;
  std::unique_ptr<LogWriter> log;
  UniqueFd out_r, err_r;
  UniqueFd pidfd;
  pid_t pid = 0;
};

// Undoes a half-made container when a step throws.
struct StartGuard {
  Container& c;
  bool armed = true;
  ~StartGuard() {
    if (!armed) return;
    if (c.pidfd.valid()) {
      sys_pidfd_send_signal(c.pidfd.get(), SIGKILL);
      siginfo_t si{};
      while (::waitid(P_PIDFD, static_cast<id_t>(c.pidfd.get()), &si, WEXITED) < 0 && errno == EINTR) {
      }
    }
    c.server.reset();  // removes shim.sock
    if (c.sup_cgroup) {
      try {
        c.sup_cgroup->destroy();
      } catch (const SysError&) {
      }
    }
    if (c.guard) c.guard->remove();
    if (c.cgroup) {
      try {
        c.cgroup->destroy();
      } catch (const SysError&) {
      }
    }
    if (c.devices) {
      try {
        c.devices->destroy();
      } catch (const SysError&) {
      }
    }
  }
};

TreeAttrs bind_attrs(const BindMount& b, int userns_fd) {
  return TreeAttrs{.recursive = b.recursive, .readonly = b.readonly, .nosuid = b.nosuid, .nofollow = b.nofollow,
                   .userns_fd = userns_fd};
}

void start_container(const std::string& bundle, const Config& cfg, Container& c) {
  StartGuard guard{c};

  // The control socket first: it exists before the container does (when `create` reports
  // success, berthd can connect at once), and binding it is what refuses a second shim for the
  // same bundle before that shim touches the first one's cgroup.
  c.server = std::make_unique<ControlServer>(bundle + "/shim.sock");

  // 4. The cgroup, with its limits, before anything runs in it.
  CgroupLimits limits;
  limits.cpu_quota_us = cfg.cpu_quota_us;
  limits.cpu_period_us = cfg.cpu_period_us;
  limits.memory_bytes = cfg.memory_bytes;
  limits.pids_max = cfg.pids_max;
  c.cgroup = open_cgroup(cfg.cgroup);
  c.cgroup->create(limits);
  // The supervisor works for the container and is charged to it (cgroups.h, SupervisorCgroup).
  c.sup_cgroup = open_supervisor_cgroup(cfg.cgroup, limits.memory_bytes);

  // The socket guard, before the supervisor makes its first host socket (sockguard.h): with a
  // network namespace of its own the workload is handed sockets of the host's, and only the shim
  // may connect or bind those. With net=host nothing is handed over, so nothing is guarded.
  if (cfg.private_net) c.guard = SockGuard::install(cfg.cgroup + ".shim");
  // The device allow-list (devices.h), in place before the container's first instruction too.
  c.devices = open_device_cgroup(cfg.cgroup);
  c.devices->create();

  // The supervisor's first table, before anything runs: the workload's very first bind or
  // connect already sees it (docs/proxy.md). Without one: no ports, no services, egress none.
  auto rules = std::make_shared<const Rules>();
  if (!cfg.rules_file.empty()) {
    try {
      rules = std::make_shared<const Rules>(parse_rules_text(read_file(cfg.rules_file)));
    } catch (SysError& e) {
      e.code = "BERTH_ERR_CONFIG";
      if (e.path.empty() && e.syscall.empty()) e.detail = "rules_file `" + cfg.rules_file + "`: " + e.detail;
      throw;
    }
  }
  c.sup = std::make_unique<Supervisor>(cfg, c.cgroup.get(), c.sup_cgroup.get(), rules);
  if (c.guard) c.sup->set_host_cgroup(c.guard->cgroup_id());
  c.server->set_supervisor(c.sup.get());
  if (!cfg.meminfo_file.empty()) {
    // Fill it before the container can read it, then keep it current (meminfo.h).
    refresh_meminfo(cfg.meminfo_file, *c.cgroup);
    Cgroup* cg = c.cgroup.get();
    std::string path = cfg.meminfo_file;
    c.server->set_tick(1000, [cg, path] { refresh_meminfo(path, *cg); });
  }

  // 5. Log pipes (the shim keeps the read ends) and the log file.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) throw_errno("BERTH_ERR_SYSCALL", "pipe2", "stdout");
  c.out_r.reset(p[0]);
  UniqueFd out_w(p[1]);
  if (::pipe2(p, O_CLOEXEC) < 0) throw_errno("BERTH_ERR_SYSCALL", "pipe2", "stderr");
  c.err_r.reset(p[0]);
  UniqueFd err_w(p[1]);
  for (int fd : {c.out_r.get(), c.err_r.get()})
    if (::fcntl(fd, F_SETFL, O_NONBLOCK) < 0) throw_errno("BERTH_ERR_SYSCALL", "fcntl O_NONBLOCK", "log pipe");
  c.log = std::make_unique<LogWriter>(bundle + "/container.log", cfg.log_max_bytes);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw_errno("BERTH_ERR_SYSCALL", "socketpair", "sync");
  UniqueFd sync_parent(sv[0]), sync_child(sv[1]);

  // 6. The namespaces. The child blocks on the sync socket until we have set it up from outside.
  pid_t pid = clone_with_pidfd(container_clone_flags(cfg), &c.pidfd);
  if (pid == 0) {
    sync_parent.reset();
    container_child(bundle, cfg, sync_child.get(), out_w.get(), err_w.get());
  }
  c.pid = pid;
  sync_child.reset();

  // Some of the supervisor's threads sit in the container's memory cgroup. Its OOM killer looks
  // at thread-group leaders only (mem_cgroup_scan_tasks walks CSS_TASK_ITER_PROCS), and the
  // shim's leader, its main thread, never joins: the shim, which holds the seccomp listener and
  // records how the container ended, is not a candidate. Out of the host's OOM killer's reach as
  // well, as containerd does for its shims, where the shim may (CAP_SYS_RESOURCE): a hint, not a
  // requirement. Set only now: the container was cloned with the shim's old value; cloned with
  // this one, it would be a workload the OOM killer never picks.
  try {
    write_file("/proc/self/oom_score_adj", "-1000");
  } catch (const SysError&) {
  }
  out_w.reset();
  err_w.reset();

  // Into the cgroup before the child runs a single instruction of the workload (and before it
  // unshares its cgroup namespace, whose root is where it is at that moment).
  c.cgroup->add_process(pid);
  c.devices->add_process(pid);

  std::vector<UniqueFd> trees;
  if (cfg.userns()) {
    write_id_maps(pid, *cfg.uid_base, *cfg.uid_count);
    // The idmapped lower layer: host root's files appear as the container's root, and nothing
    // is chowned. Only the host can do it (see clone_tree); the child then attaches it.
    std::string ns = "/proc/" + std::to_string(pid) + "/ns/user";
    UniqueFd userns(::open(ns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!userns.valid()) throw_errno("BERTH_ERR_NAMESPACE", "open", ns);
    trees.push_back(clone_tree(cfg.image, TreeAttrs{.recursive = true, .readonly = true, .userns_fd = userns.get()}));
    for (const auto& b : cfg.binds) trees.push_back(clone_tree(b.src, bind_attrs(b, b.idmap ? userns.get() : -1)));
  } else {
    trees.push_back(clone_tree(cfg.image, TreeAttrs{.recursive = true, .readonly = true}));
    for (const auto& b : cfg.binds) trees.push_back(clone_tree(b.src, bind_attrs(b, -1)));
  }
  // The virtual /proc/meminfo, read-only, cloned by the host like the binds: the container's
  // root may not be able to reach the bundle by path (a 0700 data dir).
  if (!cfg.meminfo_file.empty()) {
    trees.push_back(clone_tree(cfg.meminfo_file, TreeAttrs{.readonly = true}));
  }
  std::vector<int> raw;
  for (auto& t : trees) raw.push_back(t.get());
  send_go(sync_parent.get(), raw);
  trees.clear();

  // 7. The child mounts, pivots, hardens and execve()s. The sync socket is close-on-exec, so
  // EOF means the command is running; a message is the JSON of the step that failed, or 'L' with
  // the command's seccomp listener, sent just before its execve: the supervisor starts at once,
  // and the workload's first trapped call waits in the kernel until a worker receives it.
  for (;;) {
    char buf[4096];
    std::vector<UniqueFd> passed;
    ssize_t n = recv_with_fds(sync_parent.get(), buf, sizeof buf - 1, 1, &passed);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("BERTH_ERR_SYSCALL", "recv", "sync socket");
    if (n == 0) break;
    if (n == 1 && buf[0] == 'L' && passed.size() == 1) {
      c.sup->start(pid, c.pidfd.get(), now_ms());
      c.sup->add_listener(std::move(passed.front()));
      continue;
    }
    std::string json(buf, static_cast<size_t>(n));
    while (!json.empty() && json.back() == '\n') json.pop_back();
    throw ChildFailed{json};
  }

  // 9. The state file, once the command runs.
  std::string state = "{\"pid\":" + std::to_string(pid) + ",\"shimPid\":" + std::to_string(::getpid()) +
                      ",\"startedAt\":" + std::to_string(now_ms()) +
                      ",\"pidStartTime\":" + std::to_string(proc_start_time(pid)) + "}\n";
  write_file_atomic(bundle + "/state", state);
  guard.armed = false;
}

void write_line(int fd, const std::string& line) {
  std::string data = line + "\n";
  ssize_t n = ::write(fd, data.data(), data.size());
  (void)n;
}

// The detached shim: start the container, report, supervise until it exits, record, clean up.
[[noreturn]] void run_shim(const std::string& bundle, const Config& cfg, int result_fd) {
  // Detached: no terminal, nothing inherited but the result pipe. stdio on /dev/null, so the
  // caller's pipes see EOF when the foreground process exits, not when the container does.
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
  if (result_fd > 3) ::close_range(3, static_cast<unsigned>(result_fd) - 1, 0);
  ::close_range(static_cast<unsigned>(result_fd) + 1, ~0U, 0);
  ::signal(SIGPIPE, SIG_IGN);
  ::umask(022);
  (void)!::chdir("/");  // only so we pin no directory; the bundle path is absolute

  Container c;
  try {
    start_container(bundle, cfg, c);
  } catch (const SysError& e) {
    write_line(result_fd, e.to_json());
    ::_exit(1);
  } catch (const ChildFailed& f) {
    write_line(result_fd, f.json);
    ::_exit(1);
  } catch (const std::exception& e) {
    write_line(result_fd, SysError{"BERTH_ERR_SYSCALL", "", "", 0, e.what()}.to_json());
    ::_exit(1);
  }
  write_line(result_fd, "{\"ok\":true,\"pid\":" + std::to_string(c.pid) + ",\"shimPid\":" + std::to_string(::getpid()) + "}");
  ::close(result_fd);

  ExitInfo info;
  try {
    info = c.server->serve_until_exit(c.pidfd.get(), c.pid, c.out_r.get(), c.err_r.get(), *c.log);
  } catch (const SysError&) {
    // The loop itself broke (epoll failure): we cannot supervise any more. Kill the container
    // rather than leave it unsupervised, and record that.
    sys_pidfd_send_signal(c.pidfd.get(), SIGKILL);
    siginfo_t si{};
    ::waitid(P_PIDFD, static_cast<id_t>(c.pidfd.get()), &si, WEXITED);
    info.signal = SIGKILL;
    info.exit_code = 128 + SIGKILL;
    info.reason = "signaled";
  }
  // Output first, so that a client that sees the exit event finds the whole log.
  c.server->drain_logs(c.out_r.get(), c.err_r.get(), *c.log, kLogDrainMs);
  info.finished_at = now_ms();
  try {
    info.oom_killed = c.cgroup->oom_killed();
  } catch (const SysError&) {
  }
  // The OOM killer's SIGKILL kills PID 1 itself (init=0), or the command under our init,
  // which then exits 128+9.
  if (info.oom_killed && (info.signal == SIGKILL || (cfg.init && info.exit_code == 128 + SIGKILL))) info.reason = "oom";
  try {
    write_file_atomic(bundle + "/exit", "{" + info.fields_json() + "}\n");
  } catch (const SysError&) {
  }
  c.server->finish("{\"event\":\"exit\"," + info.fields_json() + "}");
  try {
    c.sup_cgroup->destroy();
  } catch (const SysError&) {
  }
  try {
    c.cgroup->destroy();
  } catch (const SysError&) {
  }
  if (c.guard) c.guard->remove();
  try {
    c.devices->destroy();
  } catch (const SysError&) {
  }
  ::_exit(0);
}

}  // namespace

int cmd_create(const std::string& bundle_arg) {
  std::string bundle;
  Config cfg;
  int rp[2];
  try {
    char real[PATH_MAX];
    if (!::realpath(bundle_arg.c_str(), real)) throw_errno("BERTH_ERR_CONFIG", "realpath", bundle_arg);
    bundle = real;
    cfg = load_config(bundle + "/config");
    if (::pipe2(rp, O_CLOEXEC) < 0) throw_errno("BERTH_ERR_SYSCALL", "pipe2", "result");
  } catch (const SysError& e) {
    std::printf("%s\n", e.to_json().c_str());
    return 1;
  }
  std::fflush(stdout);

  // 3. Double fork + setsid: the shim is neither our child nor in our session, so it survives
  // berthd and never gets a controlling terminal back.
  pid_t mid = ::fork();
  if (mid < 0) {
    std::printf("%s\n", SysError{"BERTH_ERR_SYSCALL", "fork", "shim", errno, ""}.to_json().c_str());
    return 1;
  }
  if (mid == 0) {
    ::close(rp[0]);
    if (::setsid() < 0) {
      write_line(rp[1], SysError{"BERTH_ERR_SYSCALL", "setsid", "shim", errno, ""}.to_json());
      ::_exit(1);
    }
    pid_t shim = ::fork();
    if (shim < 0) {
      write_line(rp[1], SysError{"BERTH_ERR_SYSCALL", "fork", "shim", errno, ""}.to_json());
      ::_exit(1);
    }
    if (shim > 0) ::_exit(0);
    run_shim(bundle, cfg, rp[1]);
  }
  ::close(rp[1]);
  int status;
  while (::waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }

  // The shim writes exactly one line; EOF without one means it died before reporting.
  std::string line;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(rp[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
    if (line.find('\n') != std::string::npos) break;
  }
  ::close(rp[0]);
  line = line.substr(0, line.find('\n'));
  if (line.empty())
    line = SysError{"BERTH_ERR_SYSCALL", "", "", 0, "the shim exited before reporting the container's start"}.to_json();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  return line.rfind("{\"ok\":true", 0) == 0 ? 0 : 1;
}

}  // namespace berth
