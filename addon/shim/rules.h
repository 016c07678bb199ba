// The supervisor's rule table (docs/proxy.md, "Rule table") and the pure decisions made from it:
// address parsing, CIDR matching, which port rule a bind hits, where a connect goes, which chaos
// rule fires. No syscalls here (youki style), so all of it is tested without root through
// `berth-shim selftest`. The supervisor (supervisor.cc) does the syscalls.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "json.h"

namespace berth {

// An IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are kept as written;
// every comparison below unmaps them first, so a rule for 10.0.0.1 also matches an AF_INET6
// socket connecting to ::ffff:10.0.0.1.
struct IpAddr {
  int family = 0;  // AF_INET or AF_INET6; 0 = none
  uint8_t b[16]{};  // network order; the first 4 bytes for AF_INET
  bool operator==(const IpAddr& o) const;
};

bool parse_ip(const std::string& text, IpAddr* out);
std::string format_ip(const IpAddr& a);
IpAddr unmap_ip(const IpAddr& a);  // ::ffff:a.b.c.d -> a.b.c.d; anything else unchanged
bool ip_is_loopback(const IpAddr& a);     // 127.0.0.0/8, ::1 (and mapped)
bool ip_is_unspecified(const IpAddr& a);  // 0.0.0.0, ::

struct Cidr {
  IpAddr net;
  int prefix = 0;
};
// "203.0.113.0/24", "2001:db8::/32", or a bare address (/32 or /128). Host bits must be zero.
bool parse_cidr(const std::string& text, Cidr* out);
bool cidr_contains(const Cidr& c, const IpAddr& a);

struct Endpoint {
  IpAddr ip;
  uint16_t port = 0;
};
std::string format_endpoint(const Endpoint& e);  // 10.0.0.1:80, [::1]:80

// A sockaddr copied out of the workload. Returns its family (AF_INET, AF_INET6, AF_UNIX,
// AF_UNSPEC, ...) or -1 when LEN is too short for it; fills EP for the two IP families.
int decode_sockaddr(const void* sa, size_t len, Endpoint* ep);

enum Proto { PROTO_TCP = 1, PROTO_UDP = 2, PROTO_ANY = 3 };
enum class Call { CONNECT, SENDTO, BIND, OPEN };
const char* call_name(Call c);

struct PortRule {
  std::string name;
  uint16_t port = 0;
  int proto = PROTO_TCP;
  std::string host_address_text;
  IpAddr host_address;  // 0.0.0.0 = every address
  uint16_t host_port = 0;
};

struct Service {
  std::string name;
  std::vector<IpAddr> vips;
  uint16_t port = 0;
  std::vector<Endpoint> targets;
};

struct Egress {
  enum Mode { ALL, NONE, CIDRS };
  Mode mode = NONE;
  std::vector<Cidr> cidrs;
};

struct ChaosRule {
  std::string id;
  Call call = Call::CONNECT;
  bool any_address = true;
  IpAddr address;
  uint16_t port = 0;  // 0 = any
  std::string path;   // for Call::OPEN: a prefix of the absolute path
  int err = 0;        // 0 = only the delay
  uint32_t delay_ms = 0;
  double probability = 1;
  long long expires_at_ms = 0;  // 0 = never
};

struct Rules {
  unsigned long long version = 0;
  std::vector<PortRule> ports;
  std::vector<Service> services;
  Egress egress;  // absent from the table: none (fail closed)
  std::vector<ChaosRule> chaos;
};

// Validates and builds a table; throws SysError{BERTH_ERR_CONFIG} naming the bad field.
Rules parse_rules(const Json& j);
Rules parse_rules_text(const std::string& text);

// The port rule a bind of PORT on a socket of SO_TYPE SOTYPE hits, or nullptr.
const PortRule* match_port(const Rules& r, uint16_t port, int sotype);

struct ConnectDecision {
  enum Kind {
    CONTINUE,  // loopback / unspecified: the container's own namespace
    ROUTE,     // to SERVICE's targets, or (no service) to the destination itself
    REFUSE,    // a VIP without that port or without targets: ECONNREFUSED
    UNREACH,   // egress policy says no: ENETUNREACH
  };
  Kind kind = CONTINUE;
  const Service* service = nullptr;
};
// Egress never reaches the host itself, whatever the mode: a routed connect is made from the
// host's network namespace. Reserved are 0.0.0.0/8 ("this host" on Linux), 127.0.0.0/8 and ::1
// (loopback: the container's own, CONTINUE), 169.254.0.0/16 and fe80::/10 (link-local: cloud
// metadata services live at 169.254.169.254), fd00:ec2::254 (the IPv6 metadata address), and
// HOST_ADDRS, the host's own addresses (hostaddrs.h); IPv4-mapped forms are unmapped first.
// A reserved destination is allowed only by a `cidrs` entry that lies within the most specific
// reserved range holding it: 169.254.169.254/32 or 169.254.0.0/16 opens the metadata address,
// a host address needs its own /32 (/128); 0.0.0.0/0 or `all` opens none of them.
ConnectDecision decide_connect(const Rules& r, const Endpoint& dst, const std::vector<Cidr>& host_addrs);
// The same with the host's addresses as last published (set_host_addresses).
ConnectDecision decide_connect(const Rules& r, const Endpoint& dst);

// The host's own addresses as the shim last read them (hostaddrs.cc keeps them current); empty
// before the first set. Swapped atomically: a decision uses one whole list.
void set_host_addresses(std::vector<Cidr> nets);
std::shared_ptr<const std::vector<Cidr>> host_addresses();

// A deterministic generator (splitmix64 over a shared counter): lock-free, seeded per shim.
class Rng {
 public:
  explicit Rng(uint64_t seed) : seed_(seed) {}
  double uniform();  // [0, 1)
  uint64_t next();

 private:
  uint64_t seed_;
  std::atomic<uint64_t> counter_{0};
};

// The first chaos rule that matches CALL on DST (or PATH, for OPEN), is not expired at NOW_MS and
// fires (one roll of RNG per matching rule, in table order); its index in r.chaos, or -1.
int select_chaos(const Rules& r, Call call, const Endpoint* dst, const std::string* path, long long now_ms, Rng& rng);

// Runs the pure checks named by WHAT on INPUT and returns a one-line result (for tests).
std::string selftest(const std::string& what, const std::string& input);

}  // namespace berth
