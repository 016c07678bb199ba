// The host's own addresses, for the egress policy (docs/proxy.md, "egress"): a connect the
// supervisor routes is made from the host's network namespace, so without this list egress `all`
// would reach the host itself on any of its addresses (sshd on the LAN address, a database on the
// docker bridge, another workload's host port). The shim's network namespace is the host's; the
// list is read there over rtnetlink and kept current on every change the kernel announces.
#pragma once

#include <vector>

#include "rules.h"

namespace berth {

// Every address the host answers on itself: the addresses of every interface (IFA_LOCAL, or
// IFA_ADDRESS without one; their broadcast and anycast addresses) and every destination the local
// routing table answers for (types local, broadcast, anycast: also AnyIP ranges such as
// `ip route add local 192.0.2.0/24 dev lo`). Throws SysError (BERTH_ERR_SYSCALL).
std::vector<Cidr> load_host_addresses();

// Subscribes to the kernel's address and route notifications, then loads the list and publishes
// it (set_host_addresses, rules.h) so that decide_connect sees it from the first connect.
// Subscribing first means no change between the load and the watch is missed: it waits in the
// socket. Starts no thread (the container's first process is cloned after this, and must be
// cloned from a single-threaded shim). Throws SysError when it cannot: egress would then reach
// the host, so the container does not start.
void open_host_addresses();

// Starts the thread that reloads and republishes the list on every notification (coalesced;
// a full reload also after the socket overflowed). Once per process; after open_host_addresses.
void watch_host_addresses();

}  // namespace berth
