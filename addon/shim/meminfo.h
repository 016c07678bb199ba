// A virtual /proc/meminfo for a container with a memory limit (LXCFS's idea, without FUSE):
// the shim renders the host's meminfo with the container's limit and usage in place of the
// machine's, into a file in the bundle that is bound read-only over /proc/meminfo, and rewrites
// it every second. procps `free`, busybox `free` (which mixes sysinfo, emulated by the
// supervisor, with meminfo's Cached) and programs that size themselves from meminfo then agree.
#pragma once

#include <string>

namespace berth {

class Cgroup;

// Pure: HOST (the text of /proc/meminfo) with MemTotal, MemFree, MemAvailable, Buffers, Cached,
// SwapCached, Active/Inactive(file), the slab lines and the swap lines replaced from LIMIT and USAGE (bytes).
// Numbers are padded to the kernel's width, so the text keeps its length while values fit.
std::string render_meminfo(const std::string& host, long long limit, long long usage);

// Rewrites PATH in place (pwrite + ftruncate: the bind-mounted inode must stay the same).
void refresh_meminfo(const std::string& path, Cgroup& cgroup);

}  // namespace berth
