// A private network for a benchmark fleet: one hub namespace holding a bridge, and one namespace
// per node joined to it by a veth pair. Both ends of each pair are created directly inside their
// namespaces (`ip link add … netns A type veth peer … netns B`), so nothing appears in the host's
// namespace and no traffic leaves these namespaces. The packet counters of the hub-side ends are
// each node's traffic as the wire sees it (TCP ACKs, noise, yamux and gossipsub control included).
import { BenchError, ERR_BENCH_SETUP } from './errors.ts'
import { runOk, runTimed } from './proc.ts'

const IP_TIMEOUT_MS = 10_000

export interface NetnsNode {
  index: number
  ns: string
  /** the node's address on the bridge */
  addr: string
  /** the hub-side end of its veth pair */
  hubIf: string
}

export interface PacketCounters {
  /** packets the node sent (received by the hub-side end) */
  txPackets: number
  txBytes: number
  rxPackets: number
  rxBytes: number
}

export interface NetnsFleet {
  readonly hub: string
  /** a namespace for node INDEX (1-based, ≤ 60000) with its address on the bridge */
  addNode: (index: number) => Promise<NetnsNode>
  /** counters of every node's link, by node index */
  counters: () => Promise<Map<number, PacketCounters>>
  /** deletes every namespace made here (their veths go with them); safe to call twice */
  remove: () => Promise<void>
}

/** Whether this process can make network namespaces (root, iproute2, a kernel with netns). */
export async function canMakeNetns (probeName: string): Promise<string | undefined> {
  const r = await runTimed('ip', ['netns', 'add', probeName], { timeoutMs: IP_TIMEOUT_MS }).catch(() => undefined)
  if (r?.code !== 0) return `\`ip netns add\` failed: ${r?.stderr.trim() ?? 'ip is missing'}`
  await runTimed('ip', ['netns', 'del', probeName], { timeoutMs: IP_TIMEOUT_MS }).catch(() => undefined)
  return undefined
}

/** PREFIX names everything: namespaces PREFIX-hub and PREFIX-N (keep it short and unique). */
export async function createNetnsFleet (prefix: string): Promise<NetnsFleet> {
  const hub = `${prefix}-hub`
  const made: string[] = []
  const nodes = new Map<number, NetnsNode>()
  const ip = (args: readonly string[]): Promise<string> => runOk('ip', args, { timeoutMs: IP_TIMEOUT_MS })

  await ip(['netns', 'add', hub])
  made.push(hub)
  await ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge'])
  await ip(['-n', hub, 'link', 'set', 'br0', 'up'])

  async function remove (): Promise<void> {
    while (made.length > 0) {
      const ns = made.pop() as string
      await runTimed('ip', ['netns', 'del', ns], { timeoutMs: IP_TIMEOUT_MS }).catch(() => undefined)
    }
  }

  return {
    hub,
    async addNode (index) {
      if (!Number.isInteger(index) || index < 1 || index > 60_000) {
        throw new BenchError(ERR_BENCH_SETUP, `node index ${index} out of range`, 'use 1..60000')
      }
      const ns = `${prefix}-${index}`
      const hubIf = `h${index}`
      // 10.78.0.0/16: index → 10.78.⌊index/254⌋.(index mod 254 + 1), never .0 or .255 in the last octet
      const addr = `10.78.${Math.floor(index / 254)}.${(index % 254) + 1}`
      await ip(['netns', 'add', ns])
      made.push(ns)
      await ip(['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', hubIf, 'netns', hub])
      await ip(['-n', hub, 'link', 'set', hubIf, 'master', 'br0'])
      await ip(['-n', hub, 'link', 'set', hubIf, 'up'])
      await ip(['-n', ns, 'addr', 'add', `${addr}/16`, 'dev', 'eth0'])
      await ip(['-n', ns, 'link', 'set', 'eth0', 'up'])
      await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      const n = { index, ns, addr, hubIf }
      nodes.set(index, n)
      return n
    },
    async counters () {
      const out = await ip(['-n', hub, '-s', '-j', 'link', 'show'])
      const links = JSON.parse(out) as Array<{ ifname: string, stats64?: { rx: { packets: number, bytes: number }, tx: { packets: number, bytes: number } } }>
      const byIf = new Map(links.map(l => [l.ifname, l.stats64]))
      const res = new Map<number, PacketCounters>()
      for (const n of nodes.values()) {
        const s = byIf.get(n.hubIf)
        if (s === undefined) continue
        // the hub side receives what the node sends
        res.set(n.index, { txPackets: s.rx.packets, txBytes: s.rx.bytes, rxPackets: s.tx.packets, rxBytes: s.tx.bytes })
      }
      return res
    },
    remove
  }
}
