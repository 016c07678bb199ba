// ADDR parsing for --listen/--join: `host:port` (IPv4, [IPv6] or a DNS name) or a multiaddr.

import { isIPv4, isIPv6 } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { InvalidAddressError } from '../errors.ts'

const HOST = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/

export function parseAddr (addr: string): Multiaddr {
  if (typeof addr !== 'string' || addr.length === 0) throw new InvalidAddressError(String(addr), 'empty')
  if (addr.startsWith('/')) {
    try {
      return multiaddr(addr)
    } catch (err) {
      throw new InvalidAddressError(addr, `not a multiaddr (${(err as Error).message})`)
    }
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr)
  if (m === null) throw new InvalidAddressError(addr, 'expected host:port or a multiaddr')
  const host = (m[1] ?? m[2]) as string
  const port = Number(m[3])
  if (port > 65535) throw new InvalidAddressError(addr, `port ${port} is out of range`)
  if (isIPv4(host)) return multiaddr(`/ip4/${host}/tcp/${port}`)
  if (isIPv6(host)) return multiaddr(`/ip6/${host}/tcp/${port}`)
  if (HOST.test(host)) return multiaddr(`/dns/${host}/tcp/${port}`)
  throw new InvalidAddressError(addr, `bad host ${JSON.stringify(host)}`)
}
