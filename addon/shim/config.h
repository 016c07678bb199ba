// The shim's configuration: `key\0value\0` pairs written by berthd (docs/shim.md, "The config
// file"). Parsing is pure logic, kept apart from the syscalls so it can be reasoned about alone.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace berth {

struct BindMount {
  std::string src;  // host path, absolute
  std::string dst;  // path inside the container, absolute
  bool readonly = false;
  bool recursive = false;
  bool idmap = false;
  bool nosuid = false;    // setuid/setgid bits and file capabilities do nothing through it
  bool nofollow = false;  // SRC must be a real path: a symlink anywhere on it fails the bind
  // Every bind is nodev, whatever OPTS say: no bind ever needs a working device node (the
  // container's /dev is made apart), and a node of a host disk in a bound tree must stay inert.
};

struct Config {
  std::string id;
  std::string name;
  std::string image;
  std::vector<BindMount> binds;
  // Both set, or neither (= --userns host: no user namespace).
  std::optional<unsigned long> uid_base;
  std::optional<unsigned long> uid_count;
  bool private_net = true;
  bool init = false;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  std::string cgroup;
  long long cpu_quota_us = -1, cpu_period_us = -1, memory_bytes = -1, pids_max = -1;
  long long log_max_bytes = -1;  // -1: never rotate
  // The proxy namespace (docs/proxy.md).
  std::string rules_file;      // initial rule table, read before the container starts
  std::string hosts_file;      // bound read-only over /etc/hosts (also added to `binds`)
  std::string meminfo_file;    // bound read-only over /proc/meminfo, rewritten every second (meminfo.h)
  std::string uname_release;   // "" = uname is not trapped
  bool chaos_open = false;     // chaos_calls contains `open`
  long long routed_max = 4096; // live routed connections (host sockets with ephemeral ports); 0 = no cap

  bool userns() const { return uid_base.has_value(); }
};

// Parses and validates; throws SysError{BERTH_ERR_CONFIG} naming the offending key.
Config parse_config(const std::string& data);
Config load_config(const std::string& path);

}  // namespace berth
