// A simulated fleet over the simulator: N cluster nodes, each with an in-memory store that
// survives its crashes, and the checks the tests and the benchmark use (convergence of digests,
// who sees whom as dead).

import { createMemoryStore } from './memory-store.ts'
import type { MemoryStore } from './memory-store.ts'
import { createClusterNode } from './node.ts'
import type { ClusterNode } from './node.ts'
import type { ClusterConfig, ProfileName } from './config.ts'
import { createSimNetwork } from './sim.ts'
import type { SimNetwork, SimNetworkInit } from './sim.ts'
import type { PeerId } from './types.ts'

export interface SimFleetInit extends SimNetworkInit {
  nodes: number
  profile?: ProfileName
  config?: Partial<ClusterConfig>
}

export interface FalseDeath {
  atMs: number
  observer: PeerId
  subject: PeerId
}

export interface SimFleet {
  readonly net: SimNetwork
  readonly ids: PeerId[]
  node: (id: PeerId) => ClusterNode | undefined
  /** starts every node; each joins through node 0 */
  start: () => Promise<void>
  /** see SimNetwork.crash */
  crash: (id: PeerId, opts?: { closesConnections?: boolean }) => void
  restart: (id: PeerId) => Promise<void>
  isUp: (id: PeerId) => boolean
  run: (ms: number) => Promise<void>
  /** distinct digests among live nodes (1 = converged) */
  digests: () => Map<string, PeerId[]>
  /** pairs (observer, subject) where a live observer does not see a live subject as alive, or a crashed one as dead */
  membershipErrors: () => string[]
  /** live nodes declared dead by a live observer while the subject was up (and not partitioned off, if tracked) */
  readonly falseDeaths: FalseDeath[]
  stop: () => Promise<void>
}

export function createSimFleet (init: SimFleetInit): SimFleet {
  const net = createSimNetwork(init)
  const ids = Array.from({ length: init.nodes }, (_, i) => `n${String(i).padStart(4, '0')}`)
  const stores = new Map<PeerId, MemoryStore>(ids.map(id => [id, createMemoryStore()]))
  const nodes = new Map<PeerId, ClusterNode>()
  const up = new Set<PeerId>()
  const falseDeaths: FalseDeath[] = []

  const make = (id: PeerId): ClusterNode => {
    const node = createClusterNode({
      store: stores.get(id) as MemoryStore,
      transport: net.transport(id),
      clock: net.clockFor(id),
      random: net.randomFor(id),
      nodeName: id,
      capacity: { cpu: 4, memoryBytes: 8 << 30 },
      profile: init.profile ?? 'lan',
      config: init.config,
      join: id === ids[0] ? [] : [ids[0] as string]
    })
    node.on('member:dead', m => {
      // a death of the subject's *current* incarnation while it is up (a restarted node's old
      // incarnation may still be declared dead: that is right, and its new one overrides it)
      const subj = nodes.get(m.id)
      if (up.has(m.id) && up.has(id) && subj !== undefined && m.incarnation >= subj.stats().incarnation) {
        falseDeaths.push({ atMs: net.now(), observer: id, subject: m.id })
      }
    })
    nodes.set(id, node)
    return node
  }

  const fleet: SimFleet = {
    net,
    ids,
    falseDeaths,
    node: id => nodes.get(id),
    async start () {
      for (const id of ids) {
        up.add(id)
        await make(id).start()
      }
    },
    crash (id, opts) {
      up.delete(id)
      net.crash(id, opts)
      nodes.delete(id)
    },
    async restart (id) {
      up.add(id)
      await make(id).start()
    },
    isUp: id => up.has(id),
    run: async ms => { await net.run(ms) },
    digests () {
      const d = new Map<string, PeerId[]>()
      for (const id of up) {
        const g = (nodes.get(id) as ClusterNode).digest()
        let l = d.get(g)
        if (l === undefined) d.set(g, l = [])
        l.push(id)
      }
      return d
    },
    membershipErrors () {
      const errs: string[] = []
      for (const obs of up) {
        const view = new Map((nodes.get(obs) as ClusterNode).members().map(m => [m.id, m.status]))
        for (const subj of ids) {
          if (subj === obs) continue
          const s = view.get(subj)
          if (up.has(subj) && s !== 'alive') errs.push(`${obs} sees live ${subj} as ${s ?? 'unknown'}`)
          if (!up.has(subj) && s !== undefined && s !== 'dead' && s !== 'left') errs.push(`${obs} sees crashed ${subj} as ${s}`)
        }
      }
      return errs
    },
    async stop () {
      for (const n of nodes.values()) await n.stop()
    }
  }
  return fleet
}
