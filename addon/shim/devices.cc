#include "devices.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "util.h"

namespace berth {
namespace {

constexpr const char* CODE = "BERTH_ERR_CGROUP";
constexpr int kRetries = 100;
constexpr useconds_t kRetryUs = 10000;

// A character device the container may use; -1 = any minor.
struct Allowed {
  unsigned major;
  int minor;
  const char* what;
};
// runc's default list (libcontainer/specconv AllowedDevices) without tun and fuse, which a
// container here never gets a node for.
constexpr Allowed kAllowed[] = {
    {1, 3, "null"},   {1, 5, "zero"},    {1, 7, "full"},    {1, 8, "random"}, {1, 9, "urandom"},
    {5, 0, "tty"},    {5, 1, "console"}, {5, 2, "ptmx"},    {136, -1, "pts"},
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) parts.push_back(cur);
  return parts;
}

// Mount points in mountinfo escape space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && std::all_of(s.begin() + i + 1, s.begin() + i + 4, [](char c) { return c >= '0' && c <= '7'; })) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Where the v1 devices hierarchy and cgroup2 are mounted ("" when not); whole-hierarchy
// mounts (root "/") win over bind mounts of a part, as in cgroups.cc.
void discover(std::string* v1, std::string* v2) {
  bool v1_whole = false, v2_whole = false;
  for (const std::string& line : split(read_file("/proc/self/mountinfo"), '\n')) {
    std::vector<std::string> f = split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 7 || dash == f.end() || dash + 3 > f.end()) continue;
    const bool whole = f[3] == "/";
    const std::string mount = unescape(f[4]);
    const std::string& fstype = *(dash + 1);
    if (fstype == "cgroup2") {
      if (v2->empty() || (whole && !v2_whole)) *v2 = mount, v2_whole = whole;
    } else if (fstype == "cgroup") {
      std::vector<std::string> opts = split(*(dash + 3), ',');
      if (std::find(opts.begin(), opts.end(), "devices") == opts.end()) continue;
      if (v1->empty() || (whole && !v1_whole)) *v1 = mount, v1_whole = whole;
    }
  }
}

void write_knob(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) throw SysError{CODE, "open", path, errno, "writing " + value};
  ssize_t n;
  do n = ::write(fd.get(), value.data(), value.size());
  while (n < 0 && errno == EINTR);
  if (n < 0) throw SysError{CODE, "write", path, errno, "value " + value};
}

// ---- v2: the BPF program --------------------------------------------------------------------

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

// bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; } in R1.
// Allows (R0 = 1) a char device on the list, for any access; denies (R0 = 0) everything else.
std::vector<bpf_insn> device_program() {
  std::vector<bpf_insn> p;
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0));  // r2 = access_type
  p.push_back(insn(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff));   // r2 = type
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 4, 0));  // r4 = major
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, 8, 0));  // r5 = minor
  for (const Allowed& a : kAllowed) {
    // Each block: type, major, [minor] compared; on a mismatch jump past the block's "allow".
    // A jump's offset counts from the next instruction: N is the block's length minus one.
    const int16_t n = a.minor < 0 ? 3 : 4;
    p.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, static_cast<int16_t>(n), BPF_DEVCG_DEV_CHAR));
    p.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, static_cast<int16_t>(n - 1), static_cast<int32_t>(a.major)));
    if (a.minor >= 0) p.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 2, a.minor));
    p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1));
    p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  }
  p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0));
  p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  return p;
}

void attach_device_program(const std::string& cgroup_dir) {
  std::vector<bpf_insn> prog = device_program();
  static const char kLicense[] = "Apache-2.0";
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uint64_t>(prog.data());
  load.insn_cnt = static_cast<uint32_t>(prog.size());
  load.license = reinterpret_cast<uint64_t>(kLicense);
  UniqueFd fd(static_cast<int>(::syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load)));
  if (!fd.valid()) throw_errno(CODE, "bpf(BPF_PROG_LOAD)", "device allow-list for " + cgroup_dir);
  UniqueFd dir(::open(cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) throw_errno(CODE, "open", cgroup_dir);
  bpf_attr att{};
  att.target_fd = static_cast<uint32_t>(dir.get());
  att.attach_bpf_fd = static_cast<uint32_t>(fd.get());
  att.attach_type = BPF_CGROUP_DEVICE;
  // MULTI: a program of an ancestor (systemd's) keeps running as well; both must allow.
  att.attach_flags = BPF_F_ALLOW_MULTI;
  if (::syscall(SYS_bpf, BPF_PROG_ATTACH, &att, sizeof att) < 0) throw_errno(CODE, "bpf(BPF_PROG_ATTACH)", cgroup_dir);
  // The cgroup holds the program now; our fds may close. It goes when the cgroup is removed.
}

class Devices : public DeviceCgroup {
 public:
  explicit Devices(const std::string& rel) {
    discover(&v1_mount_, &v2_mount_);
    if (!v1_mount_.empty()) v1_dir_ = v1_mount_ + "/" + rel;
    if (!v2_mount_.empty()) v2_dir_ = v2_mount_ + "/" + rel;
    rel_ = rel;
  }

  void create() override {
    if (!v1_dir_.empty()) {
      std::string path = v1_mount_;
      for (const std::string& part : split(rel_, '/')) {
        path += "/" + part;
        if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) throw_errno(CODE, "mkdir", path);
      }
      // A new v1 cgroup inherits its parent's list (everything, under the root): deny all,
      // then allow the list.
      write_knob(v1_dir_ + "/devices.deny", "a");
      for (const Allowed& a : kAllowed) {
        write_knob(v1_dir_ + "/devices.allow",
                   "c " + std::to_string(a.major) + ":" + (a.minor < 0 ? "*" : std::to_string(a.minor)) + " rwm");
      }
    }
    if (!v2_dir_.empty()) {
      try {
        attach_device_program(v2_dir_);
      } catch (const SysError&) {
        // A kernel without cgroup BPF: the v1 list is the fence then. Without that either,
        // the container does not start unfenced.
        if (v1_dir_.empty()) throw;
        v2_dir_.clear();
      }
    }
  }

  void add_process(pid_t pid) override {
    if (!v1_dir_.empty()) write_knob(v1_dir_ + "/cgroup.procs", std::to_string(pid));
  }

  std::vector<std::string> procs_files() override {
    if (v1_dir_.empty()) return {};
    return {v1_dir_ + "/cgroup.procs"};
  }

  void destroy() override {
    if (v1_dir_.empty()) return;
    // The container's other cgroups were emptied first (Cgroup::destroy kills everything);
    // killed tasks leave this one a moment later.
    for (int i = 0;; i++) {
      if (::rmdir(v1_dir_.c_str()) == 0 || errno == ENOENT) return;
      if (errno != EBUSY || i >= kRetries) throw_errno(CODE, "rmdir", v1_dir_);
      ::usleep(kRetryUs);
    }
  }

  std::string kinds() const override {
    if (!v1_dir_.empty() && !v2_dir_.empty()) return "v1+v2";
    return !v1_dir_.empty() ? "v1" : !v2_dir_.empty() ? "v2" : "";
  }

 private:
  std::string rel_, v1_mount_, v2_mount_, v1_dir_, v2_dir_;
};

}  // namespace

std::unique_ptr<DeviceCgroup> open_device_cgroup(const std::string& rel) { return std::make_unique<Devices>(rel); }

}  // namespace berth
