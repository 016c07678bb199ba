#include "config.h"

#include <cerrno>
#include <cstdlib>
#include <set>

#include "util.h"

namespace berth {
namespace {

constexpr const char* kErr = "BERTH_ERR_CONFIG";

[[noreturn]] void bad(const std::string& key, const std::string& why) {
  throw_error(kErr, "config `" + key + "`: " + why);
}

long long parse_int(const std::string& key, const std::string& v, long long min, long long max) {
  if (v.empty()) bad(key, "empty number");
  if (v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
    bad(key, "not a non-negative integer: " + v);
  errno = 0;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (errno || *end || n < min || n > max) bad(key, "out of range: " + v);
  return n;
}

bool is_abs_clean(const std::string& p) {
  if (p.empty() || p[0] != '/') return false;
  // No `..` component: paths inside the container are resolved before pivot_root, where `..`
  // could walk out of the rootfs.
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (p.compare(i, j - i, "..") == 0 && j - i == 2) return false;
    i = j + 1;
  }
  return true;
}

BindMount parse_bind(const std::string& v) {
  size_t a = v.find('\x1f');
  size_t b = a == std::string::npos ? a : v.find('\x1f', a + 1);
  if (b == std::string::npos || v.find('\x1f', b + 1) != std::string::npos)
    bad("bind", "want SRC\\x1fDST\\x1fOPTS");
  BindMount m;
  m.src = v.substr(0, a);
  m.dst = v.substr(a + 1, b - a - 1);
  std::string opts = v.substr(b + 1);
  if (!is_abs_clean(m.src)) bad("bind", "source is not an absolute path: " + m.src);
  if (!is_abs_clean(m.dst)) bad("bind", "destination is not an absolute path: " + m.dst);
  size_t i = 0;
  while (i < opts.size()) {
    size_t j = opts.find(',', i);
    if (j == std::string::npos) j = opts.size();
    std::string o = opts.substr(i, j - i);
    if (o == "ro") m.readonly = true;
    else if (o == "rw") m.readonly = false;
    else if (o == "rec") m.recursive = true;
    else if (o == "idmap") m.idmap = true;
    else if (o == "nosuid") m.nosuid = true;
    else if (o == "nodev") {
      // always applied; accepted so the daemon can say so
    } else if (o == "nofollow") m.nofollow = true;
    else bad("bind", "unknown option `" + o + "`");
    i = j + 1;
  }
  return m;
}

}  // namespace

Config parse_config(const std::string& data) {
  if (!data.empty() && data.back() != '\0') throw_error(kErr, "config: not NUL-terminated");
  std::vector<std::string> fields;
  size_t i = 0;
  while (i < data.size()) {
    size_t j = data.find('\0', i);
    fields.emplace_back(data.substr(i, j - i));
    i = j + 1;
  }
  if (fields.size() % 2) throw_error(kErr, "config: a key without a value");

  Config c;
  std::set<std::string> seen;
  static const std::set<std::string> repeatable = {"bind", "arg", "env"};
  for (size_t k = 0; k < fields.size(); k += 2) {
    const std::string& key = fields[k];
    const std::string& v = fields[k + 1];
    if (!repeatable.count(key) && !seen.insert(key).second) bad(key, "given twice");
    if (key == "version") {
      if (v != "1") bad(key, "unsupported version " + v + " (this shim speaks 1)");
    } else if (key == "id") {
      if (v.size() < 12 || v.size() > 64 || v.find_first_not_of("0123456789abcdef") != std::string::npos)
        bad(key, "want 12-64 lowercase hex characters");
      c.id = v;
    } else if (key == "name") {
      // It is also the hostname: HOST_NAME_MAX is 64.
      if (v.empty() || v.size() > 64 || v.find('/') != std::string::npos) bad(key, "want 1-64 characters, no `/`");
      c.name = v;
    } else if (key == "image") {
      if (!is_abs_clean(v)) bad(key, "not an absolute path");
      c.image = v;
    } else if (key == "bind") {
      c.binds.push_back(parse_bind(v));
    } else if (key == "uid_base") {
      c.uid_base = static_cast<unsigned long>(parse_int(key, v, 1, 0xfffffffeLL));
    } else if (key == "uid_count") {
      c.uid_count = static_cast<unsigned long>(parse_int(key, v, 1, 0xfffffffeLL));
    } else if (key == "net") {
      if (v == "private") c.private_net = true;
      else if (v == "host") c.private_net = false;
      else bad(key, "want private or host");
    } else if (key == "init") {
      if (v == "1") c.init = true;
      else if (v == "0") c.init = false;
      else bad(key, "want 0 or 1");
    } else if (key == "arg") {
      c.args.push_back(v);
    } else if (key == "env") {
      if (v.find('=') == std::string::npos || v[0] == '=') bad(key, "want KEY=VALUE");
      c.env.push_back(v);
    } else if (key == "cwd") {
      if (!is_abs_clean(v)) bad(key, "not an absolute path");
      c.cwd = v;
    } else if (key == "cgroup") {
      if (v.empty() || v[0] == '/' || !is_abs_clean("/" + v)) bad(key, "want a relative path without `..`");
      c.cgroup = v;
    } else if (key == "cpu_quota_us") {
      c.cpu_quota_us = parse_int(key, v, 1000, 1LL << 40);
    } else if (key == "cpu_period_us") {
      c.cpu_period_us = parse_int(key, v, 1000, 1000000);
    } else if (key == "memory_bytes") {
      c.memory_bytes = parse_int(key, v, 1 << 20, 1LL << 50);
    } else if (key == "pids_max") {
      c.pids_max = parse_int(key, v, 1, 1LL << 22);
    } else if (key == "log_max_bytes") {
      c.log_max_bytes = parse_int(key, v, 1, 1LL << 50);
    } else if (key == "routed_max") {
      c.routed_max = parse_int(key, v, 0, 1 << 20);
    } else if (key == "rules_file") {
      if (!is_abs_clean(v)) bad(key, "not an absolute path");
      c.rules_file = v;
    } else if (key == "hosts_file") {
      if (!is_abs_clean(v)) bad(key, "not an absolute path");
      c.hosts_file = v;
    } else if (key == "meminfo_file") {
      if (!is_abs_clean(v)) bad(key, "not an absolute path");
      c.meminfo_file = v;
    } else if (key == "uname_release") {
      // struct utsname's fields hold 64 characters and a NUL.
      if (v.empty() || v.size() > 64) bad(key, "want 1-64 characters");
      c.uname_release = v;
    } else if (key == "chaos_calls") {
      size_t i = 0;
      while (i <= v.size()) {
        size_t j = v.find(',', i);
        if (j == std::string::npos) j = v.size();
        std::string call = v.substr(i, j - i);
        if (call == "open") c.chaos_open = true;
        else if (!call.empty()) bad(key, "unknown call `" + call + "` (known: open)");
        i = j + 1;
      }
    } else {
      // An old shim must never silently ignore a newer daemon's setting.
      bad(key, "unknown key");
    }
  }
  for (const char* req : {"version", "id", "name", "image", "cgroup"})
    if (!seen.count(req)) bad(req, "missing");
  if (c.args.empty()) bad("arg", "missing");
  if (c.uid_base.has_value() != c.uid_count.has_value()) bad("uid_base", "uid_base and uid_count go together");
  if (c.uid_base && *c.uid_base + *c.uid_count - 1 > 0xfffffffeUL) bad("uid_count", "range overflows");
  // Last, so that it is mounted after the image's binds and wins over one of /etc.
  if (!c.hosts_file.empty()) c.binds.push_back(BindMount{c.hosts_file, "/etc/hosts", true, false, false});
  if (c.cpu_quota_us > 0 && c.cpu_period_us < 0) c.cpu_period_us = 100000;  // the kernel's default
  return c;
}

Config load_config(const std::string& path) {
  std::string data;
  try {
    data = read_file(path);
  } catch (SysError& e) {
    e.code = kErr;
    throw;
  }
  return parse_config(data);
}

}  // namespace berth
