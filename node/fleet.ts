// The daemon's side of the fleet layer: builds the cluster node (cluster/) from the config —
// on libp2p when the node has fleet flags, alone (no sockets) otherwise — and the endpoint
// registry that rides on its replicated state.
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { createClusterNode, createLocalTransport, defaultCapacity, type ClusterNode } from '../cluster/index.ts'
import type { Store } from '../storage/index.ts'
import type { DaemonConfig } from './config.ts'
import { logger } from './log.ts'
import type { EndpointRecord, EndpointRegistry } from './proxy/controller.ts'
import type { Runtime } from './runtime/runtime.ts'

const log = logger('berth:node:fleet')

/** The id of a node that runs alone, made once and kept in the data dir. */
async function localNodeId (dataDir: string): Promise<string> {
  const path = join(dataDir, 'node-id')
  try {
    const id = (await readFile(path, 'utf8')).trim()
    if (/^[0-9a-f]{16,64}$/.test(id)) return id
  } catch {}
  const id = randomBytes(8).toString('hex')
  await writeFile(path, id + '\n', { mode: 0o644 })
  return id
}

export async function startFleet (config: DaemonConfig, store: Store, version: string): Promise<ClusterNode> {
  const f = config.fleet
  const machine = defaultCapacity()
  const common = {
    store,
    nodeName: f.nodeName,
    labels: f.labels,
    capacity: { cpu: f.capacityCpu ?? machine.cpu, memoryBytes: f.capacityMemoryBytes ?? machine.memoryBytes },
    profile: f.profile,
    version
  }
  const node = f.enabled
    ? createClusterNode({
      ...common,
      libp2pInit: { dataDir: config.dataDir, listen: f.listen, pskFile: f.pskFile, bootstrap: f.join, mdns: f.mdns },
      join: f.join
    })
    : createClusterNode({ ...common, transport: createLocalTransport(await localNodeId(config.dataDir)) })
  node.on('join:error', err => log.error('%s', err.toDisplayString()))
  node.on('join:ok', n => log.info('joined the fleet through %d seed(s)', n))
  node.on('member:dead', m => log.info('member %s (%s) is dead', m.name, m.id))
  await node.start()
  return node
}

/**
 * Endpoint records on the fleet's replicated state (`endpoint/<workload>/<port>`, written only by
 * the node running the workload), so every node's supervisor can route to every service.
 */
export class FleetEndpointRegistry implements EndpointRegistry {
  private readonly cluster: ClusterNode
  constructor (cluster: ClusterNode) { this.cluster = cluster }

  list (): EndpointRecord[] {
    return this.cluster.state.list<EndpointRecord>('endpoint/').map(e => e.value).filter(v => v !== undefined)
  }

  async put (rec: EndpointRecord): Promise<void> {
    await this.cluster.state.put('endpoint', `${rec.workload}/${rec.name}`, rec)
  }

  async removeWorkload (workload: string, node: string): Promise<void> {
    for (const e of this.cluster.state.list<EndpointRecord>(`endpoint/${workload}/`)) {
      if (e.value?.node === node) await this.cluster.state.delete('endpoint', `${workload}/${e.value.name}`)
    }
  }

  onChange (fn: () => void): void {
    this.cluster.state.watch('endpoint/', () => fn())
  }
}

/**
 * Keeps `usage` in this node's member record current (running containers and what their limits
 * reserve), for `berth nodes` and, later, the scheduler. Coalesced to one write per 2 s.
 */
export function publishUsage (cluster: ClusterNode, runtime: Runtime): void {
  let timer: NodeJS.Timeout | undefined
  const write = async (): Promise<void> => {
    timer = undefined
    const running = runtime.list(false)
    const usage = {
      containers: running.length,
      cpu: Math.round(running.reduce((n, c) => n + (c.resources.cpus ?? 0), 0) * 100) / 100,
      memoryBytes: running.reduce((n, c) => n + (c.resources.memoryBytes ?? 0), 0)
    }
    const self = cluster.state.get<Record<string, unknown>>('member', cluster.id)?.value
    if (self === undefined) return
    await cluster.state.put('member', cluster.id, { ...self, usage })
  }
  const schedule = (): void => {
    if (timer !== undefined) return
    timer = setTimeout(() => { write().catch(err => log.error(err)) }, 2000)
    timer.unref()
  }
  runtime.on('container:started', schedule)
  runtime.on('container:exited', schedule)
  runtime.on('container:removed', schedule)
  schedule()
}

/** This node's address as other nodes reach it: the first non-loopback IPv4 it listens on. */
export function advertisedAddress (cluster: ClusterNode): string {
  const self = cluster.members().find(m => m.self)
  for (const a of self?.addrs ?? []) {
    const m = /\/ip4\/([0-9.]+)\//.exec(a)
    // Listening on 0.0.0.0 lists every interface's address, loopback first: another node
    // that dialled 127.0.0.1 would reach itself.
    if (m != null && m[1] !== '0.0.0.0' && !m[1].startsWith('127.')) return m[1]
  }
  return '127.0.0.1'
}

/**
 * The IP addresses the fleet's live members announce (their libp2p listen addresses; alive or
 * suspect — a suspect may well be alive — and not this node): who may reach this node's internal
 * ports besides itself. Dead and left members are not in it. Names (`/dns4/…`), unspecified and
 * loopback addresses are skipped.
 */
export function memberAddresses (cluster: ClusterNode): string[] {
  const out = new Set<string>()
  for (const m of cluster.members()) {
    if (m.self || (m.status !== 'alive' && m.status !== 'suspect')) continue
    for (const a of m.addrs) {
      const ip = /^\/ip[46]\/([^/]+)/.exec(a)?.[1]
      if (ip === undefined || isIP(ip) === 0) continue
      if (ip === '0.0.0.0' || ip === '::' || ip === '::1' || ip.startsWith('127.')) continue
      out.add(ip)
    }
  }
  return [...out]
}

/**
 * Calls fn with the live members' addresses now, on every membership change, and every 10 s
 * (an address change need not come with a status change); returns the stop function.
 */
export function watchMemberAddresses (cluster: ClusterNode, fn: (addrs: string[]) => void): () => void {
  const update = (): void => fn(memberAddresses(cluster))
  const events = ['member:alive', 'member:suspect', 'member:dead', 'member:left'] as const
  for (const ev of events) cluster.on(ev, update)
  const timer = setInterval(update, 10_000)
  timer.unref()
  update()
  return () => {
    clearInterval(timer)
    for (const ev of events) cluster.off(ev, update)
  }
}
