#include "rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmath>
#include <cstring>

#include "util.h"

namespace berth {
namespace {

constexpr const char* kErr = "BERTH_ERR_CONFIG";

[[noreturn]] void bad(const std::string& where, const std::string& why) { throw_error(kErr, "rules: " + where + ": " + why); }

const std::string& want_string(const Json* v, const std::string& where) {
  if (!v || !v->is(Json::STRING)) bad(where, "want a string");
  return v->str();
}

double want_number(const Json* v, const std::string& where, double min, double max) {
  if (!v || !v->is(Json::NUMBER)) bad(where, "want a number");
  double d = v->number();
  if (d < min || d > max) bad(where, "out of range");
  return d;
}

long long want_int(const Json* v, const std::string& where, long long min, long long max) {
  double d = want_number(v, where, static_cast<double>(min), static_cast<double>(max));
  if (d != std::floor(d)) bad(where, "want an integer");
  return static_cast<long long>(d);
}

const std::vector<Json>& want_array(const Json* v, const std::string& where) {
  static const std::vector<Json> empty;
  if (!v || v->is(Json::NUL)) return empty;
  if (!v->is(Json::ARRAY)) bad(where, "want an array");
  return v->items();
}

IpAddr want_ip(const Json* v, const std::string& where) {
  IpAddr a;
  if (!parse_ip(want_string(v, where), &a)) bad(where, "not an IP address: " + v->str());
  return a;
}

bool same_ip(const IpAddr& a, const IpAddr& b) { return unmap_ip(a) == unmap_ip(b); }

}  // namespace

bool IpAddr::operator==(const IpAddr& o) const {
  return family == o.family && std::memcmp(b, o.b, family == AF_INET ? 4 : 16) == 0;
}

bool parse_ip(const std::string& text, IpAddr* out) {
  IpAddr a;
  if (::inet_pton(AF_INET, text.c_str(), a.b) == 1) {
    a.family = AF_INET;
  } else if (::inet_pton(AF_INET6, text.c_str(), a.b) == 1) {
    a.family = AF_INET6;
  } else {
    return false;
  }
  *out = a;
  return true;
}

std::string format_ip(const IpAddr& a) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (a.family == AF_INET || a.family == AF_INET6) ::inet_ntop(a.family, a.b, buf, sizeof buf);
  return buf;
}

IpAddr unmap_ip(const IpAddr& a) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a.family != AF_INET6 || std::memcmp(a.b, prefix, 12) != 0) return a;
  IpAddr v4;
  v4.family = AF_INET;
  std::memcpy(v4.b, a.b + 12, 4);
  return v4;
}

bool ip_is_loopback(const IpAddr& x) {
  IpAddr a = unmap_ip(x);
  if (a.family == AF_INET) return a.b[0] == 127;
  if (a.family != AF_INET6) return false;
  for (int i = 0; i < 15; i++)
    if (a.b[i]) return false;
  return a.b[15] == 1;
}

bool ip_is_unspecified(const IpAddr& x) {
  IpAddr a = unmap_ip(x);
  if (a.family != AF_INET && a.family != AF_INET6) return false;
  for (int i = 0; i < (a.family == AF_INET ? 4 : 16); i++)
    if (a.b[i]) return false;
  return true;
}

bool parse_cidr(const std::string& text, Cidr* out) {
  Cidr c;
  size_t slash = text.find('/');
  if (!parse_ip(text.substr(0, slash), &c.net)) return false;
  c.net = unmap_ip(c.net);
  const int max = c.net.family == AF_INET ? 32 : 128;
  if (slash == std::string::npos) {
    c.prefix = max;
  } else {
    std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos) return false;
    c.prefix = std::stoi(p);
    if (c.prefix > max) return false;
  }
  // Host bits must be zero: "10.0.0.1/8" is more likely a mistake than a network.
  for (int bit = c.prefix; bit < max; bit++)
    if (c.net.b[bit / 8] & (0x80 >> (bit % 8))) return false;
  *out = c;
  return true;
}

bool cidr_contains(const Cidr& c, const IpAddr& x) {
  IpAddr a = unmap_ip(x);
  if (a.family != c.net.family) return false;
  int full = c.prefix / 8, rest = c.prefix % 8;
  if (std::memcmp(a.b, c.net.b, static_cast<size_t>(full)) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.b[full] & mask) == (c.net.b[full] & mask);
}

std::string format_endpoint(const Endpoint& e) {
  if (e.ip.family == AF_INET6) return "[" + format_ip(e.ip) + "]:" + std::to_string(e.port);
  return format_ip(e.ip) + ":" + std::to_string(e.port);
}

int decode_sockaddr(const void* sa, size_t len, Endpoint* ep) {
  if (len < sizeof(sa_family_t)) return -1;
  sa_family_t fam;
  std::memcpy(&fam, sa, sizeof fam);
  if (fam == AF_INET) {
    if (len < sizeof(sockaddr_in)) return -1;
    sockaddr_in in;
    std::memcpy(&in, sa, sizeof in);
    ep->ip.family = AF_INET;
    std::memcpy(ep->ip.b, &in.sin_addr, 4);
    ep->port = ntohs(in.sin_port);
  } else if (fam == AF_INET6) {
    if (len < sizeof(sockaddr_in6)) return -1;
    sockaddr_in6 in6;
    std::memcpy(&in6, sa, sizeof in6);
    ep->ip.family = AF_INET6;
    std::memcpy(ep->ip.b, &in6.sin6_addr, 16);
    ep->port = ntohs(in6.sin6_port);
  }
  return fam;
}

const char* call_name(Call c) {
  switch (c) {
    case Call::CONNECT: return "connect";
    case Call::SENDTO: return "sendto";
    case Call::BIND: return "bind";
    case Call::OPEN: return "open";
  }
  return "?";
}

Rules parse_rules(const Json& j) {
  if (!j.is(Json::OBJECT)) bad("table", "want an object");
  Rules r;
  r.version = static_cast<unsigned long long>(want_int(j.get("version"), "version", 0, (1LL << 53)));
  const auto& ports = want_array(j.get("ports"), "ports");
  for (size_t i = 0; i < ports.size(); i++) {
    const Json& p = ports[i];
    std::string at = "ports[" + std::to_string(i) + "]";
    PortRule pr;
    if (const Json* n = p.get("name")) pr.name = want_string(n, at + ".name");
    pr.port = static_cast<uint16_t>(want_int(p.get("port"), at + ".port", 1, 65535));
    std::string proto = p.get("proto") ? want_string(p.get("proto"), at + ".proto") : "tcp";
    if (proto == "tcp") pr.proto = PROTO_TCP;
    else if (proto == "udp") pr.proto = PROTO_UDP;
    else if (proto == "any") pr.proto = PROTO_ANY;
    else bad(at + ".proto", "want tcp, udp or any");
    pr.host_address_text = p.get("hostAddress") ? want_string(p.get("hostAddress"), at + ".hostAddress") : "0.0.0.0";
    if (!parse_ip(pr.host_address_text, &pr.host_address)) bad(at + ".hostAddress", "not an IP address");
    pr.host_port = static_cast<uint16_t>(want_int(p.get("hostPort"), at + ".hostPort", 1, 65535));
    r.ports.push_back(std::move(pr));
  }
  const auto& services = want_array(j.get("services"), "services");
  for (size_t i = 0; i < services.size(); i++) {
    const Json& s = services[i];
    std::string at = "services[" + std::to_string(i) + "]";
    Service sv;
    if (const Json* n = s.get("name")) sv.name = want_string(n, at + ".name");
    const auto& vips = want_array(s.get("vips"), at + ".vips");
    for (size_t k = 0; k < vips.size(); k++) sv.vips.push_back(want_ip(&vips[k], at + ".vips[" + std::to_string(k) + "]"));
    sv.port = static_cast<uint16_t>(want_int(s.get("port"), at + ".port", 1, 65535));
    const auto& targets = want_array(s.get("targets"), at + ".targets");
    for (size_t k = 0; k < targets.size(); k++) {
      std::string tat = at + ".targets[" + std::to_string(k) + "]";
      Endpoint e;
      e.ip = want_ip(targets[k].get("address"), tat + ".address");
      e.port = static_cast<uint16_t>(want_int(targets[k].get("port"), tat + ".port", 1, 65535));
      sv.targets.push_back(e);
    }
    r.services.push_back(std::move(sv));
  }
  if (const Json* e = j.get("egress")) {
    std::string mode = want_string(e->get("mode"), "egress.mode");
    if (mode == "all") r.egress.mode = Egress::ALL;
    else if (mode == "none") r.egress.mode = Egress::NONE;
    else if (mode == "cidrs") r.egress.mode = Egress::CIDRS;
    else bad("egress.mode", "want all, none or cidrs");
    const auto& cidrs = want_array(e->get("cidrs"), "egress.cidrs");
    for (size_t k = 0; k < cidrs.size(); k++) {
      Cidr c;
      const std::string& text = want_string(&cidrs[k], "egress.cidrs");
      if (!parse_cidr(text, &c)) bad("egress.cidrs[" + std::to_string(k) + "]", "not a CIDR: " + text);
      r.egress.cidrs.push_back(c);
    }
  }
  const auto& chaos = want_array(j.get("chaos"), "chaos");
  for (size_t i = 0; i < chaos.size(); i++) {
    const Json& c = chaos[i];
    std::string at = "chaos[" + std::to_string(i) + "]";
    ChaosRule cr;
    cr.id = want_string(c.get("id"), at + ".id");
    if (cr.id.empty() || cr.id.size() > 128) bad(at + ".id", "want 1-128 characters");
    std::string call = want_string(c.get("call"), at + ".call");
    if (call == "connect") cr.call = Call::CONNECT;
    else if (call == "sendto") cr.call = Call::SENDTO;
    else if (call == "bind") cr.call = Call::BIND;
    else if (call == "open") cr.call = Call::OPEN;
    else bad(at + ".call", "want connect, sendto, bind or open");
    if (const Json* a = c.get("address"); a && !a->is(Json::NUL)) {
      cr.address = unmap_ip(want_ip(a, at + ".address"));
      cr.any_address = false;
    }
    if (const Json* p = c.get("port")) cr.port = static_cast<uint16_t>(want_int(p, at + ".port", 0, 65535));
    if (const Json* p = c.get("path"); p && !p->is(Json::NUL)) cr.path = want_string(p, at + ".path");
    if (cr.call == Call::OPEN && (cr.path.empty() || cr.path[0] != '/')) bad(at + ".path", "an open rule wants an absolute path prefix");
    if (const Json* e = c.get("errno")) cr.err = static_cast<int>(want_int(e, at + ".errno", 0, 4095));
    if (const Json* d = c.get("delayMs")) cr.delay_ms = static_cast<uint32_t>(want_int(d, at + ".delayMs", 0, 600000));
    if (const Json* p = c.get("probability")) cr.probability = want_number(p, at + ".probability", 0, 1);
    if (const Json* x = c.get("expiresAt"); x && !x->is(Json::NUL)) cr.expires_at_ms = want_int(x, at + ".expiresAt", 0, 1LL << 53);
    r.chaos.push_back(std::move(cr));
  }
  return r;
}

Rules parse_rules_text(const std::string& text) { return parse_rules(parse_json(text)); }

const PortRule* match_port(const Rules& r, uint16_t port, int sotype) {
  const int want = sotype == SOCK_STREAM ? PROTO_TCP : sotype == SOCK_DGRAM ? PROTO_UDP : 0;
  for (const auto& p : r.ports)
    if (p.port == port && (p.proto & want)) return &p;
  return nullptr;
}

namespace {

std::atomic<std::shared_ptr<const std::vector<Cidr>>> g_host_addrs{std::make_shared<const std::vector<Cidr>>()};

// The prefix length of the most specific reserved range (decide_connect) holding A, or -1.
// Reserved ranges either nest or are disjoint, so the most specific lies within all the others.
int reserved_prefix(const IpAddr& a, const std::vector<Cidr>& host_addrs) {
  static const std::vector<Cidr> fixed = [] {
    std::vector<Cidr> v;
    for (const char* t : {"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "::/128", "::1/128", "fe80::/10", "fd00:ec2::254/128"}) {
      Cidr c;
      if (parse_cidr(t, &c)) v.push_back(c);
    }
    return v;
  }();
  int best = -1;
  for (const auto* list : {&fixed, &host_addrs})
    for (const Cidr& c : *list)
      if (c.prefix > best && cidr_contains(c, a)) best = c.prefix;
  return best;
}

bool egress_allows(const Egress& e, const IpAddr& dst, const std::vector<Cidr>& host_addrs) {
  if (e.mode == Egress::NONE) return false;
  const int reserved = reserved_prefix(dst, host_addrs);
  if (e.mode == Egress::ALL) return reserved < 0;
  // A listed range opens a reserved address only when it lies inside the reserved range (both
  // hold DST, so a prefix at least as long is enough).
  for (const auto& c : e.cidrs)
    if (cidr_contains(c, dst) && c.prefix >= reserved) return true;
  return false;
}

}  // namespace

void set_host_addresses(std::vector<Cidr> nets) {
  g_host_addrs.store(std::make_shared<const std::vector<Cidr>>(std::move(nets)));
}

std::shared_ptr<const std::vector<Cidr>> host_addresses() { return g_host_addrs.load(); }

ConnectDecision decide_connect(const Rules& r, const Endpoint& dst) {
  auto host = g_host_addrs.load();
  return decide_connect(r, dst, *host);
}

ConnectDecision decide_connect(const Rules& r, const Endpoint& dst, const std::vector<Cidr>& host_addrs) {
  ConnectDecision d;
  if (ip_is_loopback(dst.ip) || ip_is_unspecified(dst.ip)) return d;  // CONTINUE
  bool vip = false;
  for (const auto& s : r.services) {
    for (const auto& v : s.vips) {
      if (!same_ip(v, dst.ip)) continue;
      vip = true;
      if (s.port == dst.port && !s.targets.empty()) {
        d.kind = ConnectDecision::ROUTE;
        d.service = &s;
        return d;
      }
    }
  }
  if (vip) {
    d.kind = ConnectDecision::REFUSE;
    return d;
  }
  d.kind = egress_allows(r.egress, dst.ip, host_addrs) ? ConnectDecision::ROUTE : ConnectDecision::UNREACH;
  return d;
}

uint64_t Rng::next() {
  uint64_t z = seed_ + 0x9e3779b97f4a7c15ULL * (counter_.fetch_add(1, std::memory_order_relaxed) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int select_chaos(const Rules& r, Call call, const Endpoint* dst, const std::string* path, long long now_ms, Rng& rng) {
  for (size_t i = 0; i < r.chaos.size(); i++) {
    const ChaosRule& c = r.chaos[i];
    if (c.call != call) continue;
    if (c.expires_at_ms && now_ms >= c.expires_at_ms) continue;
    if (call == Call::OPEN) {
      if (!path || path->compare(0, c.path.size(), c.path) != 0) continue;
    } else {
      if (!dst) continue;
      if (!c.any_address && !same_ip(c.address, dst->ip)) continue;
      if (c.port && c.port != dst->port) continue;
    }
    if (c.probability >= 1 || rng.uniform() < c.probability) return static_cast<int>(i);
  }
  return -1;
}

std::string selftest(const std::string& what, const std::string& input) {
  try {
    if (what == "json") return parse_json(input).dump();
    if (what == "cidr") {  // "CIDR ADDRESS"
      size_t sp = input.find(' ');
      Cidr c;
      IpAddr a;
      if (!parse_cidr(input.substr(0, sp), &c)) return "bad-cidr";
      if (sp == std::string::npos || !parse_ip(input.substr(sp + 1), &a)) return "bad-address";
      return cidr_contains(c, a) ? "in" : "out";
    }
    if (what == "rules") {
      Rules r = parse_rules_text(input);
      return "{\"version\":" + std::to_string(r.version) + ",\"ports\":" + std::to_string(r.ports.size()) +
             ",\"services\":" + std::to_string(r.services.size()) + ",\"chaos\":" + std::to_string(r.chaos.size()) +
             ",\"egress\":" + std::to_string(static_cast<int>(r.egress.mode)) + "}";
    }
    if (what == "connect") {  // "RULES-JSON\n[HOST-CIDR,...\n]ADDRESS PORT"
      size_t nl = input.rfind('\n');
      std::string head = input.substr(0, nl);
      std::vector<Cidr> host;
      if (size_t nl2 = head.rfind('\n'); nl2 != std::string::npos && head.find('}', nl2) == std::string::npos) {
        // The host's addresses, given: the decision without reading this machine's.
        std::string list = head.substr(nl2 + 1);
        head.resize(nl2);
        for (size_t i = 0; i < list.size();) {
          size_t j = list.find(',', i);
          if (j == std::string::npos) j = list.size();
          Cidr c;
          if (j > i && !parse_cidr(list.substr(i, j - i), &c)) return "bad-cidr";
          if (j > i) host.push_back(c);
          i = j + 1;
        }
      }
      Rules r = parse_rules_text(head);
      std::string rest = input.substr(nl + 1);
      size_t sp = rest.find(' ');
      Endpoint e;
      if (!parse_ip(rest.substr(0, sp), &e.ip)) return "bad-address";
      e.port = static_cast<uint16_t>(std::stoi(rest.substr(sp + 1)));
      ConnectDecision d = decide_connect(r, e, host);
      static const char* names[] = {"continue", "route", "refuse", "unreach"};
      return std::string(names[d.kind]) + (d.service ? " " + d.service->name : "");
    }
    return "unknown selftest";
  } catch (const SysError& e) {
    return "error: " + e.message();
  }
}

}  // namespace berth
