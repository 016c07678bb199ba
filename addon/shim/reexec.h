// CVE-2019-5736 (runc): a container process that can open /proc/<shim pid>/exe for writing
// could overwrite the host's berth-shim binary. The shim therefore runs from a sealed memfd copy
// of itself before it creates anything, so that link names an immutable anonymous file.
#pragma once

namespace berth {

// Returns when the running image already is a sealed memfd; otherwise copies /proc/self/exe
// into one and fexecve()s it with the same argv/environment (never returns). Throws SysError.
void ensure_sealed_self(char** argv);

}  // namespace berth
