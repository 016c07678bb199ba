// `berth-shim create`: the order of every step that makes a container, in one place (like
// crun's libcrun_container_run_internal); the mechanics live in namespaces/mounts/cgroups/...
#pragma once

#include <string>

namespace berth {

// Returns the foreground process's exit status (0 started, 1 failed) after printing the one
// result line; the detached shim never returns from here.
int cmd_create(const std::string& bundle);

}  // namespace berth
