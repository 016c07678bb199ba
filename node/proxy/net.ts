// Addresses for the proxy namespace: CIDR parsing (egress), virtual IPs of services, port specs.
// Pure functions, unit-tested without root.
import { createHash } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import { UsageError } from '../errors.ts'

/** Services' virtual IPs live in 10.213.0.0/16 and, for IPv6 clients, fd7b:e47:b3::/64. */
export const VIP4_PREFIX = [10, 213]
export const VIP6_PREFIX = 'fd7b:e47:b3::'

export interface Cidr { family: 4 | 6, text: string }

/** "10.0.0.0/8" or "2001:db8::/32"; a bare address is a /32 or /128. */
export function parseCidr (text: string): Cidr {
  const t = text.trim()
  const slash = t.indexOf('/')
  const addr = slash < 0 ? t : t.slice(0, slash)
  const bitsText = slash < 0 ? undefined : t.slice(slash + 1)
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : undefined
  if (family === undefined) {
    throw new UsageError('BERTH_ERR_BAD_CIDR', `bad CIDR "${text}": "${addr}" is not an IP address`, 'use e.g. 10.0.0.0/8 or 2001:db8::/32')
  }
  const max = family === 4 ? 32 : 128
  const bits = bitsText === undefined ? max : Number(bitsText)
  if (bitsText !== undefined && (!/^[0-9]{1,3}$/.test(bitsText) || bits > max)) {
    throw new UsageError('BERTH_ERR_BAD_CIDR', `bad CIDR "${text}": prefix length must be 0–${max}`, 'use e.g. 10.0.0.0/8 or 2001:db8::/32')
  }
  return { family, text: `${addr}/${bits}` }
}

/** `--egress all|none|CIDR[,CIDR...]` */
export function parseEgress (text: string): { mode: 'all' | 'none' | 'cidrs', cidrs: string[] } {
  const t = text.trim()
  if (t === 'all' || t === 'none') return { mode: t, cidrs: [] }
  const cidrs = t.split(',').map(s => s.trim()).filter(s => s !== '')
  if (cidrs.length === 0) throw new UsageError('BERTH_ERR_BAD_CIDR', 'empty --egress', 'use all, none, or CIDR[,CIDR...]')
  return { mode: 'cidrs', cidrs: cidrs.map(c => parseCidr(c).text) }
}

/**
 * A service's virtual IPs, derived from its name so every node computes the same ones without
 * coordination. `salt` moves a name off a collision (the caller resolves collisions
 * deterministically over the sorted set of names).
 */
export function vipsFor (name: string, salt = 0): { v4: string, v6: string } {
  const h = createHash('sha256').update(salt === 0 ? name : `${name}#${salt}`).digest()
  // 1 … 65534: never 10.213.0.0 nor 10.213.255.255.
  const idx = (h.readUInt32BE(0) % 65534) + 1
  const hi = idx >> 8
  const lo = idx & 0xff
  return { v4: `${VIP4_PREFIX[0]}.${VIP4_PREFIX[1]}.${hi}.${lo}`, v6: `${VIP6_PREFIX}${hi.toString(16)}:${lo.toString(16)}` }
}

/** VIPs for a set of service names, collisions moved by salting, stable for a given set. */
export function assignVips (names: Iterable<string>): Map<string, { v4: string, v6: string }> {
  const out = new Map<string, { v4: string, v6: string }>()
  const taken = new Set<string>()
  for (const name of [...new Set(names)].sort()) {
    let salt = 0
    let v = vipsFor(name)
    while (taken.has(v.v4) && salt < 64) v = vipsFor(name, ++salt)
    taken.add(v.v4)
    out.set(name, v)
  }
  return out
}

const PORT_NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/

function portNumber (text: string, what: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new UsageError('BERTH_ERR_BAD_PORT', `bad ${what} "${text}"`, 'ports are 1–65535')
  }
  return Number(text)
}

function splitProto (text: string): [string, 'tcp' | 'udp' | 'any'] {
  const m = /^(.*)\/(tcp|udp)$/.exec(text)
  return m == null ? [text, 'any'] : [m[1], m[2] as 'tcp' | 'udp']
}

/** `--port NAME:PORT[/tcp|udp]` */
export function parsePortFlag (text: string): { name: string, port: number, proto: 'tcp' | 'udp' | 'any' } {
  const [body, proto] = splitProto(text.trim())
  const colon = body.lastIndexOf(':')
  if (colon < 0) throw new UsageError('BERTH_ERR_BAD_PORT', `bad --port "${text}"`, 'use --port NAME:PORT, e.g. --port http:8080')
  const name = body.slice(0, colon)
  if (!PORT_NAME_RE.test(name)) throw new UsageError('BERTH_ERR_BAD_PORT', `bad port name "${name}"`, 'a port name is lowercase letters, digits and "-", e.g. http')
  return { name, port: portNumber(body.slice(colon + 1), 'port'), proto }
}

/** `--publish HOSTPORT:PORT[/tcp|udp]` */
export function parsePublishFlag (text: string): { hostPort: number, port: number, proto: 'tcp' | 'udp' | 'any' } {
  const [body, proto] = splitProto(text.trim())
  const parts = body.split(':')
  if (parts.length !== 2) throw new UsageError('BERTH_ERR_BAD_PORT', `bad --publish "${text}"`, 'use --publish HOSTPORT:PORT, e.g. --publish 8080:80')
  return { hostPort: portNumber(parts[0], 'host port'), port: portNumber(parts[1], 'port'), proto }
}
