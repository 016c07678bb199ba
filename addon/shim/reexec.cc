#include "reexec.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

extern char** environ;

namespace berth {
namespace {

constexpr int kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

// The marker is the seals themselves, not an environment variable or argv flag: those are
// inherited/forgeable, while only a memfd we sealed can answer F_GET_SEALS with all four.
bool running_sealed() {
  UniqueFd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!self.valid()) return false;
  int seals = ::fcntl(self.get(), F_GET_SEALS);
  return seals >= 0 && (seals & kSeals) == kSeals;
}

}  // namespace

void ensure_sealed_self(char** argv) {
  if (running_sealed()) return;
  UniqueFd exe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!exe.valid()) throw_errno("BERTH_ERR_SYSCALL", "open", "/proc/self/exe");
  // MFD_EXEC: with vm.memfd_noexec=1 a memfd is not executable unless asked for; older kernels
  // reject the flag with EINVAL, then we retry without it.
  UniqueFd mem(::memfd_create("berth-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC));
  if (!mem.valid() && errno == EINVAL) mem.reset(::memfd_create("berth-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem.valid()) throw_errno("BERTH_ERR_SYSCALL", "memfd_create", "berth-shim");
  struct stat st{};
  if (::fstat(exe.get(), &st) < 0) throw_errno("BERTH_ERR_SYSCALL", "fstat", "/proc/self/exe");
  off_t left = st.st_size;
  while (left > 0) {
    ssize_t n = ::sendfile(mem.get(), exe.get(), nullptr, static_cast<size_t>(left));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("BERTH_ERR_SYSCALL", "sendfile", "/proc/self/exe");
    }
    if (n == 0) break;
    left -= n;
  }
  if (left != 0) throw_error("BERTH_ERR_SYSCALL", "copy of /proc/self/exe came out short");
  if (::fcntl(mem.get(), F_ADD_SEALS, kSeals) < 0) throw_errno("BERTH_ERR_SYSCALL", "fcntl F_ADD_SEALS", "memfd:berth-shim");
  // The memfd is close-on-exec: fexecve then runs it through execveat(AT_EMPTY_PATH), which
  // works because the image is ELF (a script would need its fd after exec).
  ::fexecve(mem.get(), argv, environ);
  throw_errno("BERTH_ERR_SYSCALL", "fexecve", "memfd:berth-shim");
}

}  // namespace berth
