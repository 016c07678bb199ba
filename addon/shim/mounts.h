// Mount mechanics: the detached (idmapped) trees the shim prepares in the host namespaces, and
// everything the container's first process mounts in its own mount namespace before pivot_root.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "util.h"

namespace berth {

// --- parent side (host user and mount namespace) ---

// How clone_tree makes its copy. Every tree is nodev.
struct TreeAttrs {
  bool recursive = false;
  bool readonly = false;
  bool nosuid = false;
  bool nofollow = false;  // resolve PATH with RESOLVE_NO_SYMLINKS: it must be a real path
  int userns_fd = -1;     // idmap to this user namespace; -1: no idmap
};

// A detached copy of PATH (open_tree OPEN_TREE_CLONE) with the attributes of A set before the
// child attaches it. Idmapping has to happen here: it needs CAP_SYS_ADMIN over the *source*
// mount's user namespace, which the container's own user namespace never has. So does any
// attribute the container must not be able to clear: the child's mount namespace belongs to
// its user namespace. Throws BERTH_ERR_MOUNT.
UniqueFd clone_tree(const std::string& path, const TreeAttrs& a);

// --- child side (container's namespaces, before pivot_root) ---

// The bundle's directories (O_PATH). Overlay layers are then named through /proc/self/fd, never
// by a path walk through the bundle, which the container's mapped root may not traverse.
struct BundleDirs {
  UniqueFd lower, upper, work, rootfs;
};
BundleDirs open_bundle_dirs(const std::string& bundle);

void make_mounts_private();
// Attaches LOWER_TREE on BUNDLE/lower and mounts the overlay on BUNDLE/rootfs. Returns an fd of
// the overlay's root, the anchor for every later path (resolved with RESOLVE_IN_ROOT, so a
// symlink in the image can never point a mount outside the rootfs).
UniqueFd mount_overlay(const Config& cfg, BundleDirs& dirs, UniqueFd lower_tree);
void mount_binds(int root, const Config& cfg, std::vector<UniqueFd>& trees);
void mount_proc(int root);
void mount_sys(int root, const Config& cfg);
void mount_dev(int root, const Config& cfg);
void mask_paths(int root);
// Attaches TREE (a read-only clone of the config's meminfo_file) over /proc/meminfo
// (meminfo.h); nothing when TREE is not valid.
void mount_meminfo(int root, const UniqueFd& tree);
void readonly_paths(int root);
// Applies the /proc entries of mask_paths and readonly_paths to TREE, a procfs made with fsmount
// and not yet attached anywhere, so that it shows nothing they hide from the moment it becomes
// visible (the supervisor's emulated `mount -t proc`, docs/proxy.md). The caller must be in the
// container's user and mount namespaces (the mask for files is its /dev/null). Makes only system
// calls (no allocation: it runs in a child forked from the multithreaded shim). Returns 0 or an
// errno; on failure the tree is left half-masked and must not be attached.
int mask_proc_tree(int tree);
// pivot_root into ROOT and detach the old root; the cwd is "/" afterwards.
void pivot_into(int root);

}  // namespace berth
