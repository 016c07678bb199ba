// A container's cgroup: one small interface, a v1 and a v2 implementation, and open_cgroup(),
// which looks at where this machine mounts cpu, memory and pids (all v1, all v2, or the hybrid
// mix systemd calls "hybrid") and returns an object that drives whichever applies.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace berth {

// -1 = no limit. cpu: quota per period (`--cpu 0.5` -> 50000 / 100000; a quota alone uses the
// kernel's default period of 100 ms).
struct CgroupLimits {
  long long cpu_quota_us = -1, cpu_period_us = -1, memory_bytes = -1, pids_max = -1;
};

// What the supervisor's sysinfo emulation reports; -1 = not known (no such controller/limit).
struct CgroupUsage {
  long long memory_limit = -1, memory_usage = -1, pids = -1;
};

class Cgroup {
 public:
  virtual ~Cgroup() = default;
  // mkdir under each hierarchy + write limits; throws SysError code "BERTH_ERR_CGROUP" (also when a
  // limit is asked for whose controller this machine has nowhere). Undoes its directories on failure.
  virtual void create(const CgroupLimits& limits) = 0;
  // Writes pid to every cgroup.procs (v1 hierarchies and, when mounted, the v2 one).
  virtual void add_process(pid_t pid) = 0;
  // An OOM kill happened in this cgroup (v1 memory.oom_control "oom_kill N", v2 memory.events).
  virtual bool oom_killed() = 0;
  // Kills what remains (cgroup.kill on v2; SIGKILL through pidfds on v1), removes the leaf
  // directories, retrying briefly on EBUSY. Parents (e.g. "berth") stay. Missing dirs are fine.
  virtual void destroy() = 0;
  // Every cgroup.procs this cgroup writes to (for `berth-shim exec`, which joins them).
  virtual std::vector<std::string> procs_files() = 0;
  // Reads the memory limit and usage and the number of tasks; never throws. Safe to call from
  // several threads (it only reads files).
  virtual CgroupUsage usage() = 0;
};

// `rel_path` is relative to each hierarchy's root, e.g. "berth/<id>" (no "..", no leading "/").
// Creates nothing until create(). Throws SysError BERTH_ERR_CGROUP for a bad path or when
// /proc/self/mountinfo cannot be read.
std::unique_ptr<Cgroup> open_cgroup(const std::string& rel_path);

// Where each controller lives on this machine.
enum class CgroupVersion { NONE, V1, V2 };
struct ControllerPlace {
  CgroupVersion version = CgroupVersion::NONE;
  std::string mount;  // the hierarchy's root directory, e.g. /sys/fs/cgroup/memory; "" for NONE
};
struct CgroupLayout {
  ControllerPlace cpu, memory, pids;
  std::string unified;  // the cgroup2 mount ("" when none): home of the cgroup namespace
};
CgroupLayout describe_cgroups();
const char* cgroup_version_name(CgroupVersion v);  // "v1", "v2" or nullptr

}  // namespace berth
