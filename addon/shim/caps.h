// Capabilities of a container's processes: Docker's default set, and the one call that reduces
// the calling process to a given set. No libcap: the raw capset syscall is enough.
#pragma once

#include <string>
#include <vector>

namespace berth {

// Docker's default capability set (CAP_* numbers from <linux/capability.h>), ascending.
std::vector<int> default_capabilities();

// "CAP_CHOWN", ... for each number; a number this table does not know becomes "CAP_<n>".
std::vector<std::string> capability_names(const std::vector<int>& caps);

// The number of "CAP_CHOWN" or "chown" (case-insensitive, prefix optional); -1 when unknown.
int capability_from_name(const std::string& name);

// Reduces the calling process to `keep`: drops every other capability from the bounding set (up to
// /proc/sys/kernel/cap_last_cap), clears the ambient set, then sets effective = permitted =
// inheritable = keep. Call it last before no_new_privs/seccomp/execve: dropping the bounding set
// needs CAP_SETPCAP, which capset may have just removed. Throws SysError (BERTH_ERR_SYSCALL).
void apply_capabilities(const std::vector<int>& keep);

}  // namespace berth
