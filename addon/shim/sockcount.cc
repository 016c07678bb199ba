#include "sockcount.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "util.h"

namespace berth {

int ephemeral_port_low() {
  try {
    int low = std::atoi(read_file("/proc/sys/net/ipv4/ip_local_port_range").c_str());
    if (low > 0 && low < 65536) return low;
  } catch (const SysError&) {
  }
  return 32768;
}

namespace {

// The filter, as inet_diag bytecode: accept when the socket's cgroup is CGROUP_ID and its source
// port >= MIN_SPORT. A jump past the end by 4 bytes rejects (inet_diag_bc_run accepts only
// when the program ends exactly at its end).
struct Filter {
  inet_diag_bc_op cg;       // INET_DIAG_BC_CGROUP_COND: yes -> sport, no -> reject
  uint64_t cgroup_id;
  inet_diag_bc_op sport;    // INET_DIAG_BC_S_GE: yes -> accept, no -> reject
  inet_diag_bc_op sport_value;
} __attribute__((packed));
static_assert(sizeof(Filter) == 20);

struct Request {
  nlmsghdr nlh;
  inet_diag_req_v2 req;
  nlattr attr;
  Filter filter;
} __attribute__((packed));

long count_family(int nl, int family, uint64_t cgroup_id, int min_sport) {
  Request r{};
  r.nlh.nlmsg_len = sizeof r;
  r.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  r.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  r.nlh.nlmsg_seq = static_cast<uint32_t>(family);
  r.req.sdiag_family = static_cast<uint8_t>(family);
  r.req.sdiag_protocol = IPPROTO_TCP;
  r.req.idiag_states = ~0U & ~(1U << 6);  // every state but TCP_TIME_WAIT (6)
  r.attr.nla_len = sizeof r.attr + sizeof r.filter;
  r.attr.nla_type = INET_DIAG_REQ_BYTECODE;
  r.filter.cg = {INET_DIAG_BC_CGROUP_COND, 12, 24};
  r.filter.cgroup_id = cgroup_id;
  r.filter.sport = {INET_DIAG_BC_S_GE, 8, 12};
  r.filter.sport_value = {0, 0, static_cast<uint16_t>(min_sport)};
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl, &r, sizeof r, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) return -1;
  long n = 0;
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t len = ::recv(nl, buf, sizeof buf, 0);
    if (len < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(len)); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return n;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        errno = e->error ? -e->error : EIO;
        return -1;
      }
      if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) n++;
    }
  }
}

}  // namespace

long count_cgroup_sockets(uint64_t cgroup_id, int min_sport) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.valid()) return -1;
  long v4 = count_family(nl.get(), AF_INET, cgroup_id, min_sport);
  if (v4 < 0) return -1;
  long v6 = count_family(nl.get(), AF_INET6, cgroup_id, min_sport);
  if (v6 < 0) return -1;
  return v4 + v6;
}

}  // namespace berth
