// probeFeatures(): what this kernel and machine can do, asked of the kernel itself.
//
// Node is multithreaded, so anything that needs a fresh user namespace or a seccomp filter runs
// in a child made by a raw clone() (no atfork handlers, no CLONE_VM: the child has its own copy of
// memory and uses raw syscalls only, all async-signal-safe) that exits at once. The whole probe
// takes a few milliseconds (two clones of the Node process).
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "cgroups.h"

namespace berth {
namespace {

// fork() without glibc's atfork handlers, optionally into new namespaces. Exit signal 0: no
// SIGCHLD reaches libuv's handler for a child it does not know; reaped with __WALL below.
pid_t raw_clone(unsigned long flags) {
  return static_cast<pid_t>(syscall(SYS_clone, flags, nullptr, nullptr, nullptr, 0));
}

int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, __WALL) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

[[noreturn]] void child_exit(int code) {
  syscall(SYS_exit_group, code);
  __builtin_unreachable();
}

struct UsernsProbe {
  bool userns = false;
  bool idmapped = false;
};

// A child in a new user namespace waits on a pipe while the parent tries an idmapped clone of "/"
// with that namespace (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)): exactly what the shim does to
// the image's rootfs. The detached clone is never attached anywhere and goes with its fd.
UsernsProbe probe_userns() {
  UsernsProbe r;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return r;
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = raw_clone(CLONE_NEWUSER);
  if (pid == 0) {
    char c;
    syscall(SYS_close, wr.get());
    while (syscall(SYS_read, rd.get(), &c, 1) < 0 && errno == EINTR) {
    }
    child_exit(0);
  }
  if (pid < 0) return r;
  r.userns = true;
  {
    // A user namespace with a mapping, as the shim will have: map the child's 0 to nobody.
    const std::string base = "/proc/" + std::to_string(pid);
    for (const char* map : {"/uid_map", "/gid_map"}) {
      UniqueFd m(open((base + map).c_str(), O_WRONLY | O_CLOEXEC));
      if (m.valid()) (void)!write(m.get(), "0 65534 1\n", 10);
    }
    UniqueFd ns(open((base + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd tree(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
    if (ns.valid() && tree.valid()) {
      mount_attr attr{};
      attr.attr_set = MOUNT_ATTR_IDMAP;
      attr.userns_fd = static_cast<__u64>(ns.get());
      r.idmapped = syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) == 0;
    }
  }
  wr.reset();  // EOF: the child exits
  wait_child(pid);
  return r;
}

// USER_NOTIF: does the kernel know the action? ADDFD (5.9+) has no such query, so a child installs
// a filter with a listener and asks to add an fd to notification 0, which does not exist: ENOENT
// means the ioctl is understood (EINVAL/ENOTTY: not).
bool probe_user_notif() {
  __u32 action = SECCOMP_RET_USER_NOTIF;
  return syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
}

bool probe_addfd() {
  sock_filter insns[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  sock_fprog prog{1, insns};
  pid_t pid = raw_clone(0);
  if (pid == 0) {
    syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0) child_exit(2);
    seccomp_notif_addfd addfd{};
    addfd.id = 0;
    addfd.srcfd = static_cast<__u32>(fd);
    long rc = syscall(SYS_ioctl, fd, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
    child_exit(rc < 0 && errno == ENOENT ? 0 : 1);
  }
  if (pid < 0) return false;
  return wait_child(pid) == 0;
}

bool probe_pidfd() {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  if (fd < 0) return false;
  close(fd);
  return true;
}

std::string kernel_release() {
  struct utsname uts{};
  if (uname(&uts) < 0) return "";
  return uts.release;
}

bool probe_overlay() {
  try {
    const std::string fs = read_file("/proc/filesystems");
    if (fs.find("\toverlay\n") != std::string::npos) return true;
  } catch (const SysError&) {
  }
  // Built as a module and not loaded yet: the first overlay mount loads it.
  return access("/sys/module/overlay", F_OK) == 0 ||
         access(("/lib/modules/" + kernel_release() + "/kernel/fs/overlayfs").c_str(), F_OK) == 0;
}

}  // namespace

Napi::Value probe_features(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  const UsernsProbe u = probe_userns();
  out.Set("userns", u.userns);
  out.Set("idmappedMounts", u.idmapped);
  out.Set("seccompUserNotif", probe_user_notif());
  out.Set("seccompAddfd", probe_addfd());
  out.Set("pidfd", probe_pidfd());
  out.Set("overlay", probe_overlay());

  Napi::Object cg = Napi::Object::New(env);
  CgroupLayout layout;
  try {
    layout = describe_cgroups();
  } catch (const SysError&) {
    // no /proc/self/mountinfo: report no controllers rather than fail the whole probe
  }
  auto version = [&](const ControllerPlace& p) -> Napi::Value {
    const char* v = cgroup_version_name(p.version);
    return v ? Napi::String::New(env, v) : env.Null();
  };
  cg.Set("cpu", version(layout.cpu));
  cg.Set("memory", version(layout.memory));
  cg.Set("pids", version(layout.pids));
  out.Set("cgroups", cg);

  out.Set("kernel", kernel_release());
  return out;
}

}  // namespace berth
