#include "cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <optional>
#include <sstream>

#include "util.h"

namespace berth {
namespace {

constexpr const char* CODE = "BERTH_ERR_CGROUP";
// destroy() waits at most RETRIES * RETRY_US for the last processes to leave: killed tasks leave
// their cgroup while exiting, which takes a moment after SIGKILL, and rmdir says EBUSY until then.
constexpr int RETRIES = 100;
constexpr useconds_t RETRY_US = 10000;

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::string read_knob(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw_errno(CODE, "open", path);
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(CODE, "read", path);
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

// Kernel knobs take one write(); a short or failed write is an error, reported with the value.
void write_knob(const std::string& path, const std::string& value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) throw SysError{CODE, "open", path, errno, "writing " + value};
  ssize_t n;
  do n = write(fd.get(), value.data(), value.size());
  while (n < 0 && errno == EINTR);
  if (n < 0) throw SysError{CODE, "write", path, errno, "value " + value};
}

bool try_write_knob(const std::string& path, const std::string& value) {
  try {
    write_knob(path, value);
    return true;
  } catch (const SysError&) {
    return false;
  }
}

// The number after `key ` in a "key value\n" file (memory.events, memory.oom_control); -1 if absent.
long long keyed_value(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  long long v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return -1;
}

std::vector<pid_t> read_procs(const std::string& procs) {
  std::vector<pid_t> pids;
  std::string text;
  try {
    text = read_knob(procs);
  } catch (const SysError& e) {
    if (e.err == ENOENT) return pids;
    throw;
  }
  std::istringstream in(text);
  long p;
  while (in >> p) pids.push_back(static_cast<pid_t>(p));
  return pids;
}

// SIGKILLs every process listed in `procs` without the pid-reuse race: a pidfd pins each process,
// and only pids still listed after the pidfds are open are signalled (a pid listed then is the
// pinned process, or the pinned one is dead and pidfd_send_signal says ESRCH). Returns how many
// were listed.
size_t kill_listed(const std::string& procs) {
  std::vector<pid_t> first = read_procs(procs);
  if (first.empty()) return 0;
  std::vector<std::pair<pid_t, UniqueFd>> pinned;
  for (pid_t p : first) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, p, 0));
    if (fd >= 0) pinned.emplace_back(p, UniqueFd(fd));
  }
  std::vector<pid_t> again = read_procs(procs);
  for (auto& [pid, fd] : pinned) {
    if (std::find(again.begin(), again.end(), pid) == again.end()) continue;
    syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
  }
  return first.size();
}

// mkdir -p `root`/`rel`, each level 0755. Returns whether the leaf was made now.
bool make_path(const std::string& root, const std::string& rel) {
  std::string path = root;
  bool made = false;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) slash = rel.size();
    path += "/" + rel.substr(start, slash - start);
    made = mkdir(path.c_str(), 0755) == 0;
    if (!made && errno != EEXIST) throw_errno(CODE, "mkdir", path);
    start = slash + 1;
  }
  return made;
}

// rmdir, retrying on EBUSY while `kill` makes progress. ENOENT counts as removed.
void remove_dir(const std::string& dir, const std::string& procs, bool kill_each_try) {
  for (int i = 0;; i++) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY || i >= RETRIES) throw_errno(CODE, "rmdir", dir);
    if (kill_each_try) kill_listed(procs);
    usleep(RETRY_US);
  }
}

// A hierarchy's root as /proc/self/mountinfo shows it. Mount points escape space, tab, newline
// and backslash as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>(std::stoi(oct, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) parts.push_back(cur);
  return parts;
}

// Reads mountinfo and the v2 root's cgroup.controllers. A controller bound to a v1 hierarchy
// cannot be enabled on v2, so v1 wins; mounts of the whole hierarchy (root "/") win over bind
// mounts of a part of it.
CgroupLayout discover() {
  CgroupLayout layout;
  const std::string info = read_knob("/proc/self/mountinfo");
  bool unified_whole = false;
  bool whole[3] = {false, false, false};
  ControllerPlace* places[3] = {&layout.cpu, &layout.memory, &layout.pids};
  const char* names[3] = {"cpu", "memory", "pids"};
  for (const std::string& line : split(info, '\n')) {
    std::vector<std::string> f = split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 7 || dash == f.end() || dash + 3 > f.end()) continue;
    const std::string& root = f[3];
    const std::string mount = unescape_mountinfo(f[4]);
    const std::string& fstype = *(dash + 1);
    const std::string& super = *(dash + 3);
    const bool is_whole = root == "/";
    if (fstype == "cgroup2") {
      if (layout.unified.empty() || (is_whole && !unified_whole)) {
        layout.unified = mount;
        unified_whole = is_whole;
      }
    } else if (fstype == "cgroup") {
      std::vector<std::string> opts = split(super, ',');
      for (int i = 0; i < 3; i++) {
        if (std::find(opts.begin(), opts.end(), names[i]) == opts.end()) continue;
        if (places[i]->version == CgroupVersion::NONE || (is_whole && !whole[i])) {
          *places[i] = {CgroupVersion::V1, mount};
          whole[i] = is_whole;
        }
      }
    }
  }
  if (!layout.unified.empty()) {
    std::vector<std::string> avail;
    try {
      std::istringstream in(read_knob(layout.unified + "/cgroup.controllers"));
      std::string c;
      while (in >> c) avail.push_back(c);
    } catch (const SysError&) {
    }
    for (int i = 0; i < 3; i++) {
      if (places[i]->version == CgroupVersion::NONE &&
          std::find(avail.begin(), avail.end(), names[i]) != avail.end()) {
        *places[i] = {CgroupVersion::V2, layout.unified};
      }
    }
  }
  return layout;
}

// A knob holding one number; -1 when it is missing, unreadable or not a number ("max").
long long knob_number(const std::string& path) {
  try {
    std::string v = read_knob(path);
    if (v.empty() || v[0] < '0' || v[0] > '9') return -1;
    return std::stoll(v);
  } catch (...) {
    return -1;
  }
}

struct Wanted {
  bool cpu = false, memory = false, pids = false;
};

// One v1 hierarchy (one mount; cpu may share it with cpuacct).
class CgroupV1 {
 public:
  CgroupV1(std::string mount, const std::string& rel, Wanted w)
      : mount_(std::move(mount)), rel_(rel), dir_(mount_ + "/" + rel), w_(w) {}

  void create(const CgroupLimits& l) {
    made_ = make_path(mount_, rel_);
    if (w_.cpu) {
      if (l.cpu_period_us > 0) write_knob(dir_ + "/cpu.cfs_period_us", std::to_string(l.cpu_period_us));
      if (l.cpu_quota_us > 0) write_knob(dir_ + "/cpu.cfs_quota_us", std::to_string(l.cpu_quota_us));
    }
    if (w_.memory && l.memory_bytes >= 0) {
      const std::string v = std::to_string(l.memory_bytes);
      write_knob(dir_ + "/memory.limit_in_bytes", v);
      // memory+swap = memory: no swap to escape to. Absent when swap accounting is off.
      if (exists(dir_ + "/memory.memsw.limit_in_bytes")) write_knob(dir_ + "/memory.memsw.limit_in_bytes", v);
      try_write_knob(dir_ + "/memory.swappiness", "0");  // refused under some parents: a hint only
    }
    if (w_.pids && l.pids_max >= 0) write_knob(dir_ + "/pids.max", std::to_string(l.pids_max));
  }
  void add_process(pid_t pid) { write_knob(procs(), std::to_string(pid)); }
  void usage(CgroupUsage& u) {
    if (w_.memory) {
      long long limit = knob_number(dir_ + "/memory.limit_in_bytes");
      u.memory_limit = limit >= (1LL << 60) ? -1 : limit;  // "no limit" is PAGE_COUNTER_MAX pages
      u.memory_usage = knob_number(dir_ + "/memory.usage_in_bytes");
    }
    if (w_.pids) u.pids = knob_number(dir_ + "/pids.current");
  }
  bool oom_killed() {
    if (!w_.memory) return false;
    try {
      return keyed_value(read_knob(dir_ + "/memory.oom_control"), "oom_kill") > 0;
    } catch (const SysError&) {
      return false;
    }
  }
  void kill_all() {
    for (int i = 0; i < RETRIES && kill_listed(procs()) > 0; i++) usleep(RETRY_US);
  }
  void remove() { remove_dir(dir_, procs(), true); }
  void undo_create() {
    if (made_) rmdir(dir_.c_str());
  }
  std::string procs() const { return dir_ + "/cgroup.procs"; }

 private:
  std::string mount_, rel_, dir_;
  Wanted w_;
  bool made_ = false;
};

// The v2 hierarchy: controllers that live there (possibly none, as on a hybrid host where v2 only
// gives the cgroup namespace a home).
class CgroupV2 {
 public:
  CgroupV2(std::string mount, const std::string& rel, Wanted w)
      : mount_(std::move(mount)), rel_(rel), dir_(mount_ + "/" + rel), w_(w) {}

  void create(const CgroupLimits& l) {
    std::string enable;
    if (w_.cpu) enable += " +cpu";
    if (w_.memory) enable += " +memory";
    if (w_.pids) enable += " +pids";
    // A controller is usable in a cgroup only once every ancestor lists it in subtree_control, so
    // enable top-down while making the path. (Intermediate dirs hold no processes, so the
    // no-internal-processes rule does not refuse this.)
    std::string parent = mount_;
    std::vector<std::string> parts = split(rel_, '/');
    for (size_t i = 0; i < parts.size(); i++) {
      if (!enable.empty()) enable_in(parent, enable);
      const std::string path = parent + "/" + parts[i];
      bool made = mkdir(path.c_str(), 0755) == 0;
      if (!made && errno != EEXIST) throw_errno(CODE, "mkdir", path);
      if (i + 1 == parts.size()) made_ = made;
      parent = path;
    }
    if (w_.cpu && (l.cpu_quota_us > 0 || l.cpu_period_us > 0)) {
      const long long period = l.cpu_period_us > 0 ? l.cpu_period_us : 100000;
      const std::string quota = l.cpu_quota_us > 0 ? std::to_string(l.cpu_quota_us) : "max";
      write_knob(dir_ + "/cpu.max", quota + " " + std::to_string(period));
    }
    if (w_.memory && l.memory_bytes >= 0) {
      write_knob(dir_ + "/memory.max", std::to_string(l.memory_bytes));
      if (exists(dir_ + "/memory.swap.max")) write_knob(dir_ + "/memory.swap.max", "0");
    }
    if (w_.pids && l.pids_max >= 0) write_knob(dir_ + "/pids.max", std::to_string(l.pids_max));
  }
  void add_process(pid_t pid) { write_knob(procs(), std::to_string(pid)); }
  void usage(CgroupUsage& u) {
    if (w_.memory) {
      u.memory_limit = knob_number(dir_ + "/memory.max");  // "max" -> -1
      u.memory_usage = knob_number(dir_ + "/memory.current");
    }
    if (w_.pids) u.pids = knob_number(dir_ + "/pids.current");
  }
  bool oom_killed() {
    if (!w_.memory) return false;
    try {
      return keyed_value(read_knob(dir_ + "/memory.events"), "oom_kill") > 0;
    } catch (const SysError&) {
      return false;
    }
  }
  void kill_all() {
    // cgroup.kill (5.14+) kills the whole subtree atomically, forks in flight included.
    if (!exists(dir_)) return;
    const bool has_kill = exists(dir_ + "/cgroup.kill") && try_write_knob(dir_ + "/cgroup.kill", "1");
    for (int i = 0; i < RETRIES; i++) {
      if (has_kill) {
        std::string events;
        try {
          events = read_knob(dir_ + "/cgroup.events");
        } catch (const SysError&) {
          return;
        }
        if (keyed_value(events, "populated") == 0) return;
      } else if (kill_listed(procs()) == 0) {
        return;
      }
      usleep(RETRY_US);
    }
  }
  void remove() { remove_dir(dir_, procs(), true); }
  void undo_create() {
    if (made_) rmdir(dir_.c_str());
  }
  std::string procs() const { return dir_ + "/cgroup.procs"; }

 private:
  static void enable_in(const std::string& dir, const std::string& enable) {
    const std::string file = dir + "/cgroup.subtree_control";
    std::string have = read_knob(file);
    std::string missing;
    std::istringstream in(enable);
    std::string tok;
    while (in >> tok) {
      std::istringstream h(have);
      std::string c;
      bool found = false;
      while (h >> c) found = found || c == tok.substr(1);
      if (!found) missing += (missing.empty() ? "" : " ") + tok;
    }
    if (!missing.empty()) write_knob(file, missing);
  }

  std::string mount_, rel_, dir_;
  Wanted w_;
  bool made_ = false;
};

// The cgroup of one container across every hierarchy that matters on this machine: pure v1, pure
// v2, or a hybrid of v1 hierarchies plus a v2 one.
class CgroupSet : public Cgroup {
 public:
  CgroupSet(const CgroupLayout& layout, const std::string& rel) : layout_(layout) {
    // One CgroupV1 per distinct v1 mount holding a controller we use.
    const ControllerPlace* places[3] = {&layout.cpu, &layout.memory, &layout.pids};
    std::vector<std::string> mounts;
    for (auto* p : places) {
      if (p->version == CgroupVersion::V1 && std::find(mounts.begin(), mounts.end(), p->mount) == mounts.end()) {
        mounts.push_back(p->mount);
      }
    }
    for (const auto& m : mounts) {
      Wanted w{layout.cpu.version == CgroupVersion::V1 && layout.cpu.mount == m,
               layout.memory.version == CgroupVersion::V1 && layout.memory.mount == m,
               layout.pids.version == CgroupVersion::V1 && layout.pids.mount == m};
      v1_.emplace_back(m, rel, w);
    }
    if (!layout.unified.empty()) {
      v2_.emplace_back(layout.unified, rel,
                       Wanted{layout.cpu.version == CgroupVersion::V2, layout.memory.version == CgroupVersion::V2,
                              layout.pids.version == CgroupVersion::V2});
    }
  }

  void create(const CgroupLimits& l) override {
    auto need = [&](bool asked, const ControllerPlace& p, const char* name) {
      if (asked && p.version == CgroupVersion::NONE) {
        throw_error(CODE, std::string("a ") + name + " limit was asked for, but this machine has no " + name +
                              " cgroup controller (neither a v1 hierarchy nor in the v2 cgroup.controllers)");
      }
    };
    need(l.cpu_quota_us > 0 || l.cpu_period_us > 0, layout_.cpu, "cpu");
    need(l.memory_bytes >= 0, layout_.memory, "memory");
    need(l.pids_max >= 0, layout_.pids, "pids");
    try {
      for (auto& c : v2_) c.create(l);
      for (auto& c : v1_) c.create(l);
    } catch (...) {
      for (auto& c : v1_) c.undo_create();
      for (auto& c : v2_) c.undo_create();
      throw;
    }
  }

  void add_process(pid_t pid) override {
    for (auto& c : v2_) c.add_process(pid);
    for (auto& c : v1_) c.add_process(pid);
  }

  bool oom_killed() override {
    for (auto& c : v2_) {
      if (c.oom_killed()) return true;
    }
    for (auto& c : v1_) {
      if (c.oom_killed()) return true;
    }
    return false;
  }

  void destroy() override {
    // Kill everywhere first (the v2 cgroup.kill reaches everyone add_process placed), then rmdir.
    for (auto& c : v2_) c.kill_all();
    for (auto& c : v1_) c.kill_all();
    std::optional<SysError> first;
    auto attempt = [&](auto& c) {
      try {
        c.remove();
      } catch (const SysError& e) {
        if (!first) first = e;
      }
    };
    for (auto& c : v1_) attempt(c);
    for (auto& c : v2_) attempt(c);
    if (first) throw *first;
  }

  CgroupUsage usage() override {
    CgroupUsage u;
    for (auto& c : v2_) c.usage(u);
    for (auto& c : v1_) c.usage(u);
    return u;
  }

  std::vector<std::string> procs_files() override {
    std::vector<std::string> files;
    for (auto& c : v2_) files.push_back(c.procs());
    for (auto& c : v1_) files.push_back(c.procs());
    return files;
  }

 private:
  CgroupLayout layout_;
  std::vector<CgroupV1> v1_;
  std::vector<CgroupV2> v2_;  // zero or one
};

}  // namespace

// ---- the supervisor's share (cgroups.h, SupervisorCgroup) ----

namespace {

constexpr const char* kSupervisorDir = "supervisor";

// Where the calling thread is in the v1 hierarchy holding CONTROLLER, as a directory under MOUNT
// (from /proc/thread-self/cgroup: "ID:controller,...:/path").
std::string thread_cgroup_dir(const std::string& mount, const std::string& controller) {
  for (const std::string& line : split(read_knob("/proc/thread-self/cgroup"), '\n')) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::vector<std::string> names = split(line.substr(a + 1, b - a - 1), ',');
    if (std::find(names.begin(), names.end(), controller) == names.end()) continue;
    const std::string path = line.substr(b + 1);
    return path == "/" ? mount : mount + path;
  }
  throw_error(CODE, "/proc/thread-self/cgroup has no " + controller + " hierarchy");
}

// SIGKILLs what `procs` lists except SELF, with kill_listed's pidfd pinning. A v1 cgroup.procs
// lists the process of every thread in the cgroup, so the shim itself shows up while one of its
// threads is still there, and must not be killed.
size_t kill_listed_except(const std::string& procs, pid_t self) {
  std::vector<pid_t> first = read_procs(procs);
  first.erase(std::remove(first.begin(), first.end(), self), first.end());
  if (first.empty()) return 0;
  std::vector<std::pair<pid_t, UniqueFd>> pinned;
  for (pid_t p : first) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, p, 0));
    if (fd >= 0) pinned.emplace_back(p, UniqueFd(fd));
  }
  std::vector<pid_t> again = read_procs(procs);
  for (auto& [pid, fd] : pinned) {
    if (std::find(again.begin(), again.end(), pid) == again.end()) continue;
    syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
  }
  return first.size();
}

class SupervisorCgroupV1 : public SupervisorCgroup {
 public:
  SupervisorCgroupV1(const CgroupLayout& layout, const std::string& rel, long long memory_bytes) {
    struct Want {
      const ControllerPlace* place;
      const char* name;
      bool cpu;
    } wants[2] = {{&layout.cpu, "cpu", true}, {&layout.memory, "memory", false}};
    try {
      for (const Want& w : wants) {
        if (w.place->version != CgroupVersion::V1) continue;  // v2: paced instead (cgroups.h)
        auto same = std::find_if(places_.begin(), places_.end(), [&](const Place& p) { return p.mount == w.place->mount; });
        if (same != places_.end()) {  // co-mounted (cpu,memory): one directory serves both
          same->cpu = same->cpu || w.cpu;
          continue;
        }
        Place p;
        p.mount = w.place->mount;
        p.cpu = w.cpu;
        p.origin = thread_cgroup_dir(p.mount, w.name);
        p.parent = p.mount + "/" + rel;
        p.dir = p.parent + "/" + kSupervisorDir;
        p.made = ::mkdir(p.dir.c_str(), 0755) == 0;
        if (!p.made && errno != EEXIST) throw_errno(CODE, "mkdir", p.dir);
        places_.push_back(p);
      }
      for (const Place& p : places_) {
        // v1 charges TCP buffers to a memory cgroup only once its kmem.tcp limit was written
        // (v2 always does): for the container's own sockets (limited like its memory) and for
        // the child, where the routed sockets are made (no limit of its own: the container's
        // applies to it). Absent from kernels built without it.
        const std::string tcp = "/memory.kmem.tcp.limit_in_bytes";
        if (!exists(p.parent + tcp)) continue;
        write_knob(p.parent + tcp, memory_bytes >= 0 ? std::to_string(memory_bytes) : "-1");
        write_knob(p.dir + tcp, "-1");
      }
    } catch (...) {
      for (const Place& p : places_) {
        if (p.made) ::rmdir(p.dir.c_str());
      }
      throw;
    }
  }

  bool join_thread() noexcept override {
    const std::string tid = std::to_string(::gettid());
    // A thread starting while destroy() runs either joins before the move back (and is moved
    // with the rest) or finds the child closed; never joins a directory about to be removed.
    std::lock_guard<std::mutex> g(mu_);
    if (closed_) return false;
    bool cpu = false;
    for (const Place& p : places_) {
      try {
        write_knob(p.dir + "/tasks", tid);
        cpu = cpu || p.cpu;
      } catch (const SysError&) {
      }
    }
    return cpu;
  }

  void destroy() override {
    const pid_t self = ::getpid();
    std::lock_guard<std::mutex> g(mu_);
    if (closed_) return;
    closed_ = true;
    std::optional<SysError> first;
    for (const Place& p : places_) {
      try {
        // Writing a pid to a v1 cgroup.procs moves all of its threads.
        write_knob(p.origin + "/cgroup.procs", std::to_string(self));
        for (int i = 0;; i++) {
          if (::rmdir(p.dir.c_str()) == 0 || errno == ENOENT) break;
          if (errno != EBUSY || i >= RETRIES) throw_errno(CODE, "rmdir", p.dir);
          kill_listed_except(p.dir + "/cgroup.procs", self);
          usleep(RETRY_US);
        }
      } catch (const SysError& e) {
        if (!first) first = e;
      }
    }
    if (first) throw *first;
  }

 private:
  struct Place {
    std::string mount, origin, parent, dir;
    bool cpu = false, made = false;
  };
  std::vector<Place> places_;  // fixed once made
  std::mutex mu_;
  bool closed_ = false;  // under mu_: destroy() ran
};

}  // namespace

std::unique_ptr<SupervisorCgroup> open_supervisor_cgroup(const std::string& rel_path, long long memory_bytes) {
  return std::make_unique<SupervisorCgroupV1>(discover(), rel_path, memory_bytes);
}

CgroupLayout describe_cgroups() { return discover(); }

const char* cgroup_version_name(CgroupVersion v) {
  switch (v) {
    case CgroupVersion::V1: return "v1";
    case CgroupVersion::V2: return "v2";
    case CgroupVersion::NONE: return nullptr;
  }
  return nullptr;
}

std::unique_ptr<Cgroup> open_cgroup(const std::string& rel_path) {
  bool bad = rel_path.empty() || rel_path.front() == '/' || rel_path.back() == '/';
  for (const std::string& part : split(rel_path, '/')) bad = bad || part.empty() || part == "." || part == "..";
  if (bad) throw_error(CODE, "cgroup path `" + rel_path + "` must be relative, like berth/<id>, without . or ..");
  return std::make_unique<CgroupSet>(discover(), rel_path);
}

}  // namespace berth
