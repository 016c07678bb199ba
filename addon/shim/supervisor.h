// The proxy namespace's supervisor (docs/proxy.md): worker threads that receive the container's
// seccomp notifications and answer them from the current rule table — bind a declared port on the
// host, route a connect, emulate sysinfo/mknod/mount/uname, inject chaos — plus the counters and
// events that go back to berthd. The decisions themselves are pure functions in rules.cc.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "cgroups.h"
#include "config.h"
#include "rules.h"
#include "util.h"

namespace berth {

class SupervisorImpl;

class Supervisor {
 public:
  // INITIAL is the table read from `rules_file` (or an empty one: no ports, no services, egress
  // none). CGROUP must outlive the supervisor. CHARGE (may be null; must outlive the supervisor's
  // threads' start) is joined by every thread the supervisor starts, so that its work is charged
  // to the container; a thread it cannot charge paces itself to the container's CPU quota.
  Supervisor(const Config& cfg, Cgroup* cgroup, SupervisorCgroup* charge, std::shared_ptr<const Rules> initial);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // The container's PID 1 (namespaces for the mknod/mount helpers) and its start time (uptime).
  // Starts the worker threads on the first call; later calls only add listeners.
  void start(pid_t pid, int pidfd, unsigned long long started_at_ms);
  // The cgroup v2 id its host sockets are made in (sockguard.h), for the cap on routed connections.
  void set_host_cgroup(uint64_t cgroup_id);
  void add_listener(UniqueFd listener);

  // Swaps in R unless its version is not above the current one; returns the version in effect.
  unsigned long long set_rules(std::shared_ptr<const Rules> r);
  unsigned long long rules_version() const;
  std::string chaos_hits_json() const;  // cumulative: {"id":n,...}

  // Readable (eventfd) when events are waiting; take_events() returns them as lines and clears.
  int event_fd() const;
  std::vector<std::string> take_events();

 private:
  std::unique_ptr<SupervisorImpl> impl_;
};

}  // namespace berth
