#include "mounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>

namespace berth {
namespace {

constexpr const char* kErr = "BERTH_ERR_MOUNT";

// Docker's masked paths: files get /dev/null bound over them, directories an empty read-only
// tmpfs. The /proc ones are also applied to every proc the supervisor mounts for the workload
// (mask_proc_tree), so both lists live here once.
constexpr const char* const kMasked[] = {
    "/proc/acpi",        "/proc/asound",    "/proc/interrupts", "/proc/kcore",
    "/proc/keys",        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi",      "/sys/firmware",    "/sys/devices/virtual/powercap"};
// Docker's read-only paths: each is bound onto itself, read-only.
constexpr const char* const kReadonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

// The name of P relative to /proc ("kcore" for "/proc/kcore"), or nullptr when P is elsewhere.
const char* under_proc(const char* p) { return std::strncmp(p, "/proc/", 6) == 0 ? p + 6 : nullptr; }

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// openat2(ROOT, PATH, RESOLVE_IN_ROOT): `..` and absolute symlinks stay inside ROOT, as if ROOT
// were "/" (the image is untrusted; it may plant /dev -> /etc or /proc -> /).
int open_beneath(int root, const std::string& path, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string rel = path;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) rel = ".";
  for (;;) {
    long fd = ::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
    // EAGAIN: a concurrent rename raced the lookup; RESOLVE_IN_ROOT asks us to retry.
  }
}

enum class Make { kNothing, kDir, kFile };

// Opens PATH inside ROOT (O_PATH), creating missing directories (and the last component as a
// file or directory) one component at a time, each mkdirat relative to an already-resolved
// parent, so the creation can never follow a symlink out of the rootfs.
UniqueFd open_in_root(int root, const std::string& path, Make make) {
  int fd = open_beneath(root, path, O_PATH);
  if (fd >= 0 || errno != ENOENT || make == Make::kNothing) {
    if (fd < 0) throw_errno(kErr, "openat2", path);
    return UniqueFd(fd);
  }
  std::vector<std::string> parts;
  for (size_t i = 0; i < path.size();) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  UniqueFd parent(::fcntl(root, F_DUPFD_CLOEXEC, 3));
  std::string prefix;
  for (size_t k = 0; k < parts.size(); k++) {
    prefix += "/" + parts[k];
    bool last = k + 1 == parts.size();
    int next = open_beneath(root, prefix, O_PATH);
    if (next < 0 && errno == ENOENT) {
      UniqueFd dir(::openat(parent.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir.valid()) throw_errno(kErr, "open", prefix);
      if (last && make == Make::kFile) {
        int f = ::openat(dir.get(), parts[k].c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (f < 0 && errno != EEXIST) throw_errno(kErr, "creat", prefix);
        if (f >= 0) ::close(f);
      } else if (::mkdirat(dir.get(), parts[k].c_str(), 0755) < 0 && errno != EEXIST) {
        throw_errno(kErr, "mkdir", prefix);
      }
      next = open_beneath(root, prefix, O_PATH);
    }
    if (next < 0) throw_errno(kErr, "openat2", prefix);
    parent.reset(next);
  }
  return parent;
}

void do_mount(const char* src, const std::string& target, const char* type, unsigned long flags,
              const char* data, const std::string& what) {
  if (::mount(src, target.c_str(), type, flags, data) < 0) throw_errno(kErr, "mount", what);
}

void set_readonly(int tree, bool recursive, const std::string& what) {
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
  if (::mount_setattr(tree, "", flags, &attr, sizeof attr) < 0) throw_errno(kErr, "mount_setattr", what);
}

// Attaches the detached tree TREE on TARGET (an O_PATH fd).
void attach(int tree, int target, const std::string& what) {
  if (::move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    throw_errno(kErr, "move_mount", what);
}

// Bind SRC (an fd, or a path when src_fd is AT_FDCWD) onto TARGET, optionally read-only.
// open_tree + mount_setattr + move_mount rather than MS_BIND then MS_REMOUNT|MS_RDONLY: in a
// user namespace a remount must repeat every locked flag (nosuid, nodev, noexec...) or fails
// with EPERM, while mount_setattr changes only the flag asked for.
void bind_onto(int src_fd, const std::string& src_path, int target, bool readonly, bool recursive,
               const std::string& what) {
  unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
  if (src_fd != AT_FDCWD) flags |= AT_EMPTY_PATH;
  UniqueFd tree(::open_tree(src_fd, src_path.c_str(), flags));
  if (!tree.valid()) throw_errno(kErr, "open_tree", what);
  if (readonly) set_readonly(tree.get(), recursive, what);
  attach(tree.get(), target, what);
}

bool is_dir(int fd) {
  struct stat st{};
  return ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

UniqueFd clone_tree(const std::string& path, const TreeAttrs& a) {
  unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (a.recursive ? AT_RECURSIVE : 0);
  UniqueFd tree;
  if (a.nofollow) {
    // The daemon checked this exact path (a user's --mount source, resolved to its real path):
    // a symlink on it now means something was swapped in after the check. Refuse rather than
    // follow it to what the check never saw.
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS;
    long fd;
    do fd = ::syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how);
    while (fd < 0 && errno == EAGAIN);
    if (fd < 0) throw_errno(kErr, "openat2", path + " (without following symlinks)");
    UniqueFd at(static_cast<int>(fd));
    tree.reset(::open_tree(at.get(), "", flags | AT_EMPTY_PATH));
  } else {
    tree.reset(::open_tree(AT_FDCWD, path.c_str(), flags));
  }
  if (!tree.valid()) throw_errno(kErr, "open_tree", path);
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_NODEV;
  if (a.readonly) attr.attr_set |= MOUNT_ATTR_RDONLY;
  if (a.nosuid) attr.attr_set |= MOUNT_ATTR_NOSUID;
  if (a.userns_fd >= 0) {
    attr.attr_set |= MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<uint64_t>(a.userns_fd);
  }
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | (a.recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0)
    throw_errno(kErr, "mount_setattr", path);
  return tree;
}

BundleDirs open_bundle_dirs(const std::string& bundle) {
  auto open_dir = [&](const char* name) {
    std::string p = bundle + "/" + name;
    UniqueFd fd(::open(p.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) throw_errno(kErr, "open", p);
    return fd;
  };
  return BundleDirs{open_dir("lower"), open_dir("upper"), open_dir("work"), open_dir("rootfs")};
}

void make_mounts_private() {
  // The mount namespace is a copy of the host's; rprivate so that nothing we mount (or unmount,
  // like the old root after pivot_root) propagates back to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) throw_errno(kErr, "mount", "/ (rprivate)");
}

UniqueFd mount_overlay(const Config& cfg, BundleDirs& dirs, UniqueFd lower_tree) {
  attach(lower_tree.get(), dirs.lower.get(), "lower");
  // Layers are named through /proc/self/fd magic links of fds the shim opened: no path walk
  // through the (possibly untraversable) bundle directory. The lower layer is named by the tree
  // fd itself, now attached: a link to the *mountpoint* fd would resolve to the empty directory
  // underneath the mount, not to the mount.
  UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs.valid()) throw_errno(kErr, "fsopen", "overlay");
  auto set = [&](const char* key, const std::string& value) {
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0)
      throw_errno(kErr, "fsconfig", std::string("overlay ") + key + "=" + value);
  };
  set("lowerdir", fd_path(lower_tree.get()));
  set("upperdir", fd_path(dirs.upper.get()));
  set("workdir", fd_path(dirs.work.get()));
  // In a user namespace overlayfs may not use trusted.* xattrs; userxattr switches it to
  // user.overlay.* (and turns off the features that need trusted xattrs).
  if (cfg.userns() && ::fsconfig(fs.get(), FSCONFIG_SET_FLAG, "userxattr", nullptr, 0) < 0)
    throw_errno(kErr, "fsconfig", "overlay userxattr");
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
    throw_errno(kErr, "fsconfig", "overlay create (lower " + cfg.image + ")");
  // nodev: a device node in the image (one imported by an older berth, which kept them) or
  // made in the upper layer opens nothing. In a user namespace the kernel already ignores
  // nodes on this superblock; with --userns host only this flag does. The container's /dev is
  // a separate tmpfs with binds of the host's safe nodes.
  UniqueFd mnt(::fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV));
  if (!mnt.valid()) throw_errno(kErr, "fsmount", "overlay");
  attach(mnt.get(), dirs.rootfs.get(), "rootfs");
  return mnt;  // the overlay's root, attached on BUNDLE/rootfs
}

void mount_binds(int root, const Config& cfg, std::vector<UniqueFd>& trees) {
  for (size_t i = 0; i < cfg.binds.size() && i < trees.size(); i++) {
    const BindMount& b = cfg.binds[i];
    UniqueFd target = open_in_root(root, b.dst, is_dir(trees[i].get()) ? Make::kDir : Make::kFile);
    attach(trees[i].get(), target.get(), b.dst);
  }
}

void mount_proc(int root) {
  UniqueFd target = open_in_root(root, "/proc", Make::kDir);
  // A new procfs: it belongs to the container's pid namespace (the caller's active one).
  do_mount("proc", fd_path(target.get()), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, "/proc");
}

void mount_sys(int root, const Config& cfg) {
  UniqueFd target = open_in_root(root, "/sys", Make::kDir);
  if (cfg.private_net) {
    // sysfs shows the network devices of the mounter's net namespace; the kernel allows the
    // mount in a user namespace only when that namespace owns the net namespace.
    do_mount("sysfs", fd_path(target.get()), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, "/sys");
  } else {
    // Host network: a new sysfs is refused in a user namespace (the host owns the netns), so a
    // recursive read-only bind of the host's /sys.
    bind_onto(AT_FDCWD, "/sys", target.get(), true, true, "/sys");
  }
}

void mount_dev(int root, const Config& cfg) {
  {
    UniqueFd target = open_in_root(root, "/dev", Make::kDir);
    do_mount("tmpfs", fd_path(target.get()), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k", "/dev");
  }
  // mknod is refused in a user namespace: bind the host's nodes instead (as rootless podman).
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"}) {
    std::string host = std::string("/dev/") + node;
    UniqueFd target = open_in_root(root, host, Make::kFile);
    bind_onto(AT_FDCWD, host, target.get(), false, false, host);
  }
  {
    UniqueFd pts = open_in_root(root, "/dev/pts", Make::kDir);
    std::string opts = "newinstance,ptmxmode=0666,mode=0620";
    // gid 5 (tty) only when it exists in the container's user namespace.
    if (!cfg.userns() || *cfg.uid_count > 5) opts += ",gid=5";
    do_mount("devpts", fd_path(pts.get()), "devpts", MS_NOSUID | MS_NOEXEC, opts.c_str(), "/dev/pts");
  }
  {
    UniqueFd shm = open_in_root(root, "/dev/shm", Make::kDir);
    do_mount("shm", fd_path(shm.get()), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k", "/dev/shm");
  }
  {
    UniqueFd mq = open_in_root(root, "/dev/mqueue", Make::kDir);
    // mqueue belongs to the mounter's ipc namespace, which is the container's own.
    do_mount("mqueue", fd_path(mq.get()), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, "/dev/mqueue");
  }
  UniqueFd dev_path = open_in_root(root, "/dev", Make::kNothing);
  UniqueFd dev(::openat(dev_path.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dev.valid()) throw_errno(kErr, "open", "/dev");
  const std::pair<const char*, const char*> links[] = {{"ptmx", "pts/ptmx"},
                                                       {"fd", "/proc/self/fd"},
                                                       {"stdin", "/proc/self/fd/0"},
                                                       {"stdout", "/proc/self/fd/1"},
                                                       {"stderr", "/proc/self/fd/2"}};
  for (auto [name, to] : links)
    if (::symlinkat(to, dev.get(), name) < 0) throw_errno(kErr, "symlink", std::string("/dev/") + name);
}

void mask_paths(int root) {
  // A path the kernel does not have is skipped.
  for (const char* p : kMasked) {
    int fd = open_beneath(root, p, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      throw_errno(kErr, "openat2", p);
    }
    UniqueFd target(fd);
    if (is_dir(fd))
      do_mount("tmpfs", fd_path(fd), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, p);
    else
      bind_onto(AT_FDCWD, "/dev/null", fd, false, false, p);
  }
}

void mount_meminfo(int root, const UniqueFd& tree) {
  if (!tree.valid()) return;
  int fd = open_beneath(root, "/proc/meminfo", O_PATH | O_NOFOLLOW);
  if (fd < 0) throw_errno(kErr, "openat2", "/proc/meminfo");
  UniqueFd target(fd);
  if (::syscall(SYS_move_mount, tree.get(), "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    throw_errno(kErr, "move_mount", "/proc/meminfo");
}

void readonly_paths(int root) {
  for (const char* p : kReadonly) {
    int fd = open_beneath(root, p, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      throw_errno(kErr, "openat2", p);
    }
    UniqueFd target(fd);
    // Bind the path onto itself, read-only (recursively: /proc/sys/fs/binfmt_misc may be a mount).
    bind_onto(fd, "", fd, true, true, p);
  }
}

int mask_proc_tree(int tree) {
  // Only system calls from here on: the caller is a child forked from the multithreaded shim.
  // The files' mask is the container's /dev/null, checked to be the null device: the workload may
  // have replaced it, and whatever it put there must not become the mask.
  UniqueFd null(::open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st{};
  if (!null.valid() || ::fstat(null.get(), &st) < 0) return errno;
  if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) return EPERM;
  for (const char* p : kMasked) {
    const char* rel = under_proc(p);
    if (!rel) continue;
    UniqueFd target(::openat(tree, rel, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!target.valid()) {
      if (errno == ENOENT) continue;  // this kernel has no such file, or subset=pid hides it
      return errno;
    }
    UniqueFd mask;
    if (is_dir(target.get())) {
      UniqueFd fs(::fsopen("tmpfs", FSOPEN_CLOEXEC));
      if (!fs.valid() || ::fsconfig(fs.get(), FSCONFIG_SET_STRING, "size", "4k", 0) < 0 ||
          ::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
        return errno;
      mask.reset(::fsmount(fs.get(), FSMOUNT_CLOEXEC,
                           MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
    } else {
      mask.reset(::open_tree(null.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
    }
    if (!mask.valid()) return errno;
    if (::move_mount(mask.get(), "", target.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return errno;
  }
  for (const char* p : kReadonly) {
    const char* rel = under_proc(p);
    if (!rel) continue;
    UniqueFd target(::openat(tree, rel, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!target.valid()) {
      if (errno == ENOENT) continue;
      return errno;
    }
    UniqueFd copy(::open_tree(target.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
    if (!copy.valid()) return errno;
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (::mount_setattr(copy.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) return errno;
    if (::move_mount(copy.get(), "", target.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return errno;
  }
  return 0;
}

void pivot_into(int root) {
  if (::fchdir(root) < 0) throw_errno(kErr, "fchdir", "rootfs");
  // pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "." then
  // detaches the old root (and with it every host mount) without needing a put_old directory
  // inside the image (crun's trick, also works on a read-only rootfs).
  if (::syscall(SYS_pivot_root, ".", ".") < 0) throw_errno(kErr, "pivot_root", "rootfs");
  if (::umount2(".", MNT_DETACH) < 0) throw_errno(kErr, "umount2", "old root");
  if (::chdir("/") < 0) throw_errno(kErr, "chdir", "/");
}

}  // namespace berth
