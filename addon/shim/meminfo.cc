#include "meminfo.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>

#include "cgroups.h"
#include "util.h"

namespace berth {

std::string render_meminfo(const std::string& host, long long limit, long long usage) {
  const unsigned long long total_kb = static_cast<unsigned long long>(limit) / 1024;
  const unsigned long long used_kb = usage > 0 ? static_cast<unsigned long long>(usage) / 1024 : 0;
  const unsigned long long free_kb = used_kb >= total_kb ? 0 : total_kb - used_kb;
  std::istringstream in(host);
  std::string line, out;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    std::string key = colon == std::string::npos ? "" : line.substr(0, colon);
    long long v = -1;
    if (key == "MemTotal") v = static_cast<long long>(total_kb);
    else if (key == "MemFree" || key == "MemAvailable") v = static_cast<long long>(free_kb);
    else if (key == "Buffers" || key == "Cached" || key == "SwapCached" || key == "SwapTotal" || key == "SwapFree" ||
             key == "Active(file)" || key == "Inactive(file)" || key == "Shmem" || key == "Zswap" || key == "Zswapped" ||
             key == "Slab" || key == "SReclaimable" || key == "SUnreclaim" || key == "KReclaimable")
      v = 0;
    if (v < 0) {
      out += line + "\n";
      continue;
    }
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s:%*llu kB\n", key.c_str(), static_cast<int>(23 - key.size()), static_cast<unsigned long long>(v));
    out += buf;
  }
  return out;
}

void refresh_meminfo(const std::string& path, Cgroup& cgroup) {
  CgroupUsage u = cgroup.usage();
  if (u.memory_limit <= 0) return;
  std::string host;
  try {
    host = read_file("/proc/meminfo");
  } catch (const SysError&) {
    return;
  }
  std::string text = render_meminfo(host, u.memory_limit, u.memory_usage);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return;
  // One pwrite of under a page, then the length: a reader sees the old or the new numbers.
  if (::pwrite(fd.get(), text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()))
    (void)!::ftruncate(fd.get(), static_cast<off_t>(text.size()));
}

}  // namespace berth
