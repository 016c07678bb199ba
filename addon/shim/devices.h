// The container's device allow-list, as runc applies it: a container may open (and mknod) only
// the character devices its /dev offers — null, zero, full, random, urandom, tty, console, ptmx
// and the pts ptys — whatever node it finds or makes. Fenced twice where the machine allows:
//   v1: a cgroup in the `devices` hierarchy (devices.deny "a", then devices.allow lines);
//   v2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the container's cgroup2 cgroup.
// Without a user namespace (`--userns host`) this is what stands between container root and a
// host disk's node (an old image's, or one bound in); with one, the kernel already ignores
// nodes on the container's own mounts, and this is defence in depth.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace berth {

class DeviceCgroup {
 public:
  virtual ~DeviceCgroup() = default;
  // Makes the v1 cgroup and writes its list, and/or loads and attaches the v2 program to the
  // cgroup2 directory (which the container's Cgroup::create() made). Throws BERTH_ERR_CGROUP.
  virtual void create() = 0;
  // Puts PID in the v1 devices cgroup (v2: Cgroup::add_process already did).
  virtual void add_process(pid_t pid) = 0;
  // The v1 cgroup.procs, for `berth-shim exec` (empty when there is no v1 devices hierarchy).
  virtual std::vector<std::string> procs_files() = 0;
  // Removes the v1 directory once its processes are gone (the v2 program goes with its cgroup).
  virtual void destroy() = 0;
  // Which fences apply: "v1", "v2", "v1+v2" or "" (for messages and tests).
  virtual std::string kinds() const = 0;
};

// REL as for open_cgroup (e.g. berth/<id>). Creates nothing until create().
std::unique_ptr<DeviceCgroup> open_device_cgroup(const std::string& rel);

}  // namespace berth
