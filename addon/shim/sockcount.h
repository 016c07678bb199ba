// Counting a container's outgoing host connections, for the per-container cap on routed
// connections (docs/proxy.md, "services"). The supervisor's routed sockets are all made in the
// shim's cgroup v2 (sockguard.h), so the kernel can count them: a sock_diag dump with a filter
// on that cgroup and on source ports in the ephemeral range (a routed connect's; a declared
// port's listener and the connections it accepted have the declared host port, below it).
#pragma once

#include <cstdint>

namespace berth {

// The ephemeral range's low end (net.ipv4.ip_local_port_range), 32768 when unreadable.
int ephemeral_port_low();

// TCP sockets (IPv4 and IPv6, every state but TIME_WAIT, which has no cgroup) created in cgroup
// v2 CGROUP_ID whose source port is at least MIN_SPORT, or -1 with errno set.
long count_cgroup_sockets(uint64_t cgroup_id, int min_sport);

}  // namespace berth
