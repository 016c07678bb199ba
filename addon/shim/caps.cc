#include "caps.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>

#include "util.h"

namespace berth {
namespace {

// Index = capability number (<linux/capability.h>); append only, as the kernel does.
constexpr const char* CAP_NAMES[] = {
    "CAP_CHOWN",            "CAP_DAC_OVERRIDE",    "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",           "CAP_KILL",            "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",          "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",        "CAP_NET_RAW",         "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",       "CAP_SYS_RAWIO",       "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",        "CAP_SYS_ADMIN",       "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",     "CAP_SYS_TIME",        "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",            "CAP_AUDIT_WRITE",     "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",     "CAP_MAC_ADMIN",       "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",    "CAP_AUDIT_READ",      "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};
constexpr int KNOWN_CAPS = sizeof(CAP_NAMES) / sizeof(CAP_NAMES[0]);

// The highest capability the running kernel knows. Reading it beats CAP_LAST_CAP from the build
// machine's headers: a newer kernel may have more, and all of them must leave the bounding set.
int last_cap() {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return CAP_LAST_CAP;
  char buf[16] = {};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return CAP_LAST_CAP;
  int v = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) v = v * 10 + (buf[i] - '0');
  return v > 0 && v < 64 ? v : CAP_LAST_CAP;
}

}  // namespace

std::vector<int> default_capabilities() {
  std::vector<int> caps = {
      CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,     CAP_MKNOD,
      CAP_NET_RAW, CAP_SETGID,      CAP_SETUID,           CAP_SETFCAP,    CAP_SETPCAP,
      CAP_NET_BIND_SERVICE,         CAP_SYS_CHROOT,       CAP_KILL,       CAP_AUDIT_WRITE,
  };
  std::sort(caps.begin(), caps.end());
  return caps;
}

std::vector<std::string> capability_names(const std::vector<int>& caps) {
  std::vector<std::string> names;
  names.reserve(caps.size());
  for (int c : caps) {
    names.push_back(c >= 0 && c < KNOWN_CAPS ? CAP_NAMES[c] : "CAP_" + std::to_string(c));
  }
  return names;
}

int capability_from_name(const std::string& name) {
  std::string up;
  for (char ch : name) up.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
  if (up.rfind("CAP_", 0) != 0) up = "CAP_" + up;
  for (int i = 0; i < KNOWN_CAPS; i++) {
    if (up == CAP_NAMES[i]) return i;
  }
  return -1;
}

void apply_capabilities(const std::vector<int>& keep) {
  const int last = last_cap();
  auto kept = [&](int c) { return std::find(keep.begin(), keep.end(), c) != keep.end(); };

  // 1. Bounding set first, while CAP_SETPCAP is still effective. EINVAL means the kernel does not
  //    know that capability, which is as dropped as it gets.
  for (int c = 0; c <= last; c++) {
    if (kept(c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) {
      throw_errno("BERTH_ERR_SYSCALL", "prctl(PR_CAPBSET_DROP, " + std::to_string(c) + ")");
    }
  }

  // 2. Ambient: nothing survives execve beyond what the file and the sets below grant.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
    throw_errno("BERTH_ERR_SYSCALL", "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }

  // 3. effective = permitted = keep, inheritable empty (as Docker since CVE-2022-24769: an
  //    inheritable set would let file capabilities of a binary in the image raise its caps).
  //    Version 3 carries 64 bits in two 32-bit words.
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[2] = {};
  for (int c : keep) {
    if (c < 0 || c > 63) continue;
    data[c / 32].effective |= 1u << (c % 32);
  }
  for (auto& d : data) { d.permitted = d.effective; d.inheritable = 0; }
  if (syscall(SYS_capset, &header, data) < 0) throw_errno("BERTH_ERR_SYSCALL", "capset");
}

}  // namespace berth
