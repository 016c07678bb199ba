#include "hostaddrs.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <tuple>
#include <functional>
#include <mutex>
#include <thread>

#include "util.h"

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

namespace berth {
namespace {

constexpr const char* kErr = "BERTH_ERR_SYSCALL";
constexpr size_t kBufSize = 1 << 16;  // above the kernel's largest dump message (32 KiB)

UniqueFd g_monitor;  // subscribed by open_host_addresses, read by the watching thread
std::once_flag g_watch_once;

// Appends FAMILY's address at DATA (LEN bytes) as a CIDR of PREFIX bits (-1: the whole address).
void add(std::vector<Cidr>* out, int family, const void* data, size_t len, int prefix) {
  const size_t size = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
  if (size == 0 || len < size) return;
  Cidr c;
  c.net.family = family;
  std::memcpy(c.net.b, data, size);
  const int max = static_cast<int>(size * 8);
  c.prefix = prefix < 0 || prefix > max ? max : prefix;
  for (int bit = c.prefix; bit < max; bit++) c.net.b[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  out->push_back(c);
}

// The table a route message is in: RTA_TABLE when present (tables above 255), else rtm_table.
uint32_t route_table(const nlmsghdr* h, const rtattr** dst) {
  const auto* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
  uint32_t table = rt->rtm_table;
  int len = static_cast<int>(RTM_PAYLOAD(h));
  for (const rtattr* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) >= sizeof table) std::memcpy(&table, RTA_DATA(a), sizeof table);
    else if (a->rta_type == RTA_DST && dst) *dst = a;
  }
  return table;
}

void on_addr(const nlmsghdr* h, std::vector<Cidr>* out) {
  if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) return;
  const auto* ifa = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  const rtattr *local = nullptr, *address = nullptr;
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (const rtattr* a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    switch (a->rta_type) {
      case IFA_LOCAL: local = a; break;
      case IFA_ADDRESS: address = a; break;
      case IFA_BROADCAST:
      case IFA_ANYCAST: add(out, ifa->ifa_family, RTA_DATA(a), RTA_PAYLOAD(a), -1); break;
      default: break;
    }
  }
  // On a point-to-point link IFA_ADDRESS is the peer's and IFA_LOCAL ours.
  if (const rtattr* a = local ? local : address) add(out, ifa->ifa_family, RTA_DATA(a), RTA_PAYLOAD(a), -1);
}

void on_route(const nlmsghdr* h, std::vector<Cidr>* out) {
  if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return;
  const auto* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
  if (rt->rtm_type != RTN_LOCAL && rt->rtm_type != RTN_BROADCAST && rt->rtm_type != RTN_ANYCAST) return;
  const rtattr* dst = nullptr;
  if (route_table(h, &dst) != RT_TABLE_LOCAL) return;
  static const uint8_t any[16] = {};
  // No RTA_DST: a default route (`local default dev lo`), i.e. every address is the host's.
  if (dst) add(out, rt->rtm_family, RTA_DATA(dst), RTA_PAYLOAD(dst), rt->rtm_dst_len);
  else add(out, rt->rtm_family, any, sizeof any, 0);
}

// One rtnetlink dump: sends TYPE with BODY and hands every message of the answer to FN.
void dump(uint16_t type, const void* body, size_t body_len, const std::function<void(const nlmsghdr*)>& fn) {
  const char* what = type == RTM_GETADDR ? "RTM_GETADDR" : "RTM_GETROUTE";
  UniqueFd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!s.valid()) throw_errno(kErr, "socket", "NETLINK_ROUTE");
  // Strict checking lets the kernel filter a route dump by table (Linux 4.20+); without it the
  // whole routing table comes back and on_route filters it.
  int one = 1;
  ::setsockopt(s.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  struct {
    nlmsghdr h;
    unsigned char body[64];
  } req{};
  if (body_len > sizeof req.body) throw_error(kErr, "netlink request too long");
  req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(body_len));
  req.h.nlmsg_type = type;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  std::memcpy(NLMSG_DATA(&req.h), body, body_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(s.get(), &req, req.h.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    throw_errno(kErr, "sendto", what);
  std::vector<nlmsghdr> buf(kBufSize / sizeof(nlmsghdr));  // aligned for the headers
  for (;;) {
    ssize_t n = ::recv(s.get(), buf.data(), kBufSize, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(kErr, "recv", what);
    if (n == 0) {
      errno = EPIPE;
      throw_errno(kErr, "recv", what);
    }
    int len = static_cast<int>(n);
    for (const nlmsghdr* h = buf.data(); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != 1) continue;
      if (h->nlmsg_type == NLMSG_DONE) return;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        errno = e->error < 0 ? -e->error : EIO;
        throw_errno(kErr, "netlink dump", what);
      }
      fn(h);
    }
  }
}

// Whether a notification can change the list: any address change, and route changes in the
// local table (other tables' churn, a full BGP feed say, is not ours to reload on).
bool relevant(const nlmsghdr* h) {
  if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) return true;
  if (h->nlmsg_type != RTM_NEWROUTE && h->nlmsg_type != RTM_DELROUTE) return false;
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return true;
  return route_table(h, nullptr) == RT_TABLE_LOCAL;
}

void reload() {
  // A failed reload (out of memory, say) keeps the last list and tries again shortly.
  for (;;) {
    try {
      set_host_addresses(load_host_addresses());
      return;
    } catch (const SysError&) {
    }
    timespec ts{0, 100 * 1000 * 1000};
    ::nanosleep(&ts, nullptr);
  }
}

[[noreturn]] void watch(int fd) {
  std::vector<nlmsghdr> buf(kBufSize / sizeof(nlmsghdr));
  for (;;) {
    bool changed = false;
    // Block for the first message, then drain what else is queued: one reload per burst.
    for (int flags = 0;; flags = MSG_DONTWAIT) {
      ssize_t n = ::recv(fd, buf.data(), kBufSize, flags);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        // ENOBUFS: the socket overflowed and notifications were lost; reload to catch up.
        // Anything else: reload too, and do not spin on an error that repeats.
        changed = true;
        if (errno != ENOBUFS) {
          timespec ts{1, 0};
          ::nanosleep(&ts, nullptr);
        }
        break;
      }
      int len = static_cast<int>(n);
      for (const nlmsghdr* h = buf.data(); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) changed = changed || relevant(h);
    }
    if (changed) reload();
  }
}

}  // namespace

std::vector<Cidr> load_host_addresses() {
  std::vector<Cidr> out;
  for (unsigned char family : {AF_INET, AF_INET6}) {
    ifaddrmsg ifa{};
    ifa.ifa_family = family;
    dump(RTM_GETADDR, &ifa, sizeof ifa, [&](const nlmsghdr* h) { on_addr(h, &out); });
    rtmsg rt{};
    rt.rtm_family = family;
    rt.rtm_table = RT_TABLE_LOCAL;
    dump(RTM_GETROUTE, &rt, sizeof rt, [&](const nlmsghdr* h) { on_route(h, &out); });
  }
  // An address shows up as an address and as a local route: keep one of each.
  auto key = [](const Cidr& c) { return std::make_tuple(c.net.family, std::to_array(c.net.b), c.prefix); };
  std::sort(out.begin(), out.end(), [&](const Cidr& a, const Cidr& b) { return key(a) < key(b); });
  out.erase(std::unique(out.begin(), out.end(), [&](const Cidr& a, const Cidr& b) { return key(a) == key(b); }), out.end());
  return out;
}

void open_host_addresses() {
  if (g_monitor.valid()) return;
  UniqueFd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!s.valid()) throw_errno(kErr, "socket", "NETLINK_ROUTE (address notifications)");
  // Room for a burst of changes (an interface with many addresses going down) before ENOBUFS.
  int size = 1 << 20;
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  sockaddr_nl groups{};
  groups.nl_family = AF_NETLINK;
  groups.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&groups), sizeof groups) < 0)
    throw_errno(kErr, "bind", "NETLINK_ROUTE (address notifications)");
  set_host_addresses(load_host_addresses());
  g_monitor = std::move(s);
}

void watch_host_addresses() {
  if (!g_monitor.valid()) return;
  std::call_once(g_watch_once, [] {
    int fd = g_monitor.get();
    std::thread([fd] { watch(fd); }).detach();  // lives as long as the shim
  });
}

}  // namespace berth
