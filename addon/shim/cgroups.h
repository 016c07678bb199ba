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

// The supervisor's share of a container's cgroup (docs/shim.md, "Whose CPU and memory"). The
// supervisor works on the container's behalf, so its threads are charged to the container: a
// child cgroup `<rel>/supervisor` in the v1 cpu and memory hierarchies, which each supervisor
// thread joins itself (v1 membership is per thread). Its CPU then counts against the container's
// quota, and what the kernel allocates for it (the host sockets it makes and hands over, their
// TCP buffers) against the container's memory. Not pids: the container's --pids is for the
// container's own tasks. The shim's main thread never joins (it must outlive the container and
// record its end), and the shim is made unkillable by the OOM killer (container.cc). On v2 a
// thread cannot sit in another cgroup than its process (short of a threaded subtree, which would
// put the whole shim in the container's memory domain): there the supervisor's CPU is paced
// instead (pacer.h) and its sockets stay the shim's.
class SupervisorCgroup {
 public:
  virtual ~SupervisorCgroup() = default;
  // Moves the calling thread into the child cgroup(s). Returns whether its CPU is now charged to
  // the container (false: no v1 cpu hierarchy here, or the move failed). Never throws.
  virtual bool join_thread() noexcept = 0;
  // Moves the whole shim back where its main thread is, kills what else is left in the child (a
  // helper forked by a supervisor thread, in flight), removes the child directories. Call before
  // Cgroup::destroy(), whose rmdir the child would otherwise keep busy. Throws SysError
  // BERTH_ERR_CGROUP (after trying everything).
  virtual void destroy() = 0;
};

// Makes `<rel_path>/supervisor` under the v1 cpu and memory hierarchies (after Cgroup::create()
// made `rel_path`), and turns on v1 TCP buffer accounting for the container (limited to
// MEMORY_BYTES when >= 0), so that the routed sockets' buffers are charged too. Must run on the
// shim's main thread (it records where that thread is). Throws SysError BERTH_ERR_CGROUP.
std::unique_ptr<SupervisorCgroup> open_supervisor_cgroup(const std::string& rel_path, long long memory_bytes);

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
