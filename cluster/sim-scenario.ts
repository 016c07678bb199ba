// One seeded fault scenario on a simulated fleet, shared by the simulation tests and the
// benchmark: start, faults (loss, delay/jitter, crashes, a partition, a restart, writes and
// deletes from random nodes), faults stop, then run until every live node has the same digest
// and the right view of who is alive. Everything is drawn from the seed: a seed replays exactly.

import { createRandom } from './random.ts'
import { createSimFleet } from './simulation.ts'
import type { FalseDeath } from './simulation.ts'
import type { ClusterConfig, ProfileName } from './config.ts'

export interface ScenarioResult {
  seed: number
  nodes: number
  converged: boolean
  /** virtual ms from the end of faults until converged (or the limit) */
  convergeMs: number
  digests: number
  membershipErrors: string[]
  crashed: string[]
  partitioned: boolean
  restarted: string | undefined
  /** nodes declared dead by a live observer while up, outside a partition */
  falseDeaths: FalseDeath[]
  traceHash: string
  wallMs: number
}

export interface ScenarioInit {
  seed: number
  nodes: number
  profile?: ProfileName
  /** most virtual ms to wait for convergence after the faults stop */
  settleLimitMs?: number
  /** allow partitions (default true) */
  partitions?: boolean
  crashes?: number
  config?: Partial<ClusterConfig>
}

export async function runScenario (init: ScenarioInit): Promise<ScenarioResult> {
  const t0 = performance.now()
  const r = createRandom(init.seed ^ 0x5eed)
  const lossRate = r.next() * 0.05
  const fleet = createSimFleet({
    seed: init.seed, nodes: init.nodes, profile: init.profile ?? 'lan', config: init.config,
    lossRate, delayMs: 1 + r.int(5), jitterMs: r.int(20)
  })
  const ids = fleet.ids
  await fleet.start()
  await fleet.run(6_000)

  const live = (): string[] => ids.filter(id => fleet.isUp(id))
  const someLive = (): string => { const l = live(); return l[r.int(l.length)] as string }
  const write = async (): Promise<void> => {
    const id = someLive()
    const node = fleet.node(id)
    if (node === undefined) return
    const key = `k${r.int(40)}`
    if (r.next() < 0.25) await node.kv.delete(key)
    else await node.kv.set(key, { by: id, n: r.int(1_000_000) })
  }
  for (let i = 0; i < 10; i++) await write()

  const crashes = init.crashes ?? 1 + r.int(3)
  const crashed: string[] = []
  for (const id of r.shuffle(ids.slice(1)).slice(0, crashes)) { fleet.crash(id); crashed.push(id) }
  const partitioned = (init.partitions ?? true) && r.next() < 0.35
  let partitionEndsAt = 0
  if (partitioned) {
    const cut = 1 + r.int(ids.length - 1)
    const shuffled = r.shuffle(ids.slice())
    fleet.net.partition([shuffled.slice(0, cut), shuffled.slice(cut)])
  }
  for (let step = 0; step < 4; step++) {
    await fleet.run(2_500)
    for (let i = 0; i < 5; i++) await write()
  }
  if (partitioned) { fleet.net.heal(); partitionEndsAt = fleet.net.now() }
  let restarted: string | undefined
  if (crashed.length > 1 && r.next() < 0.3) {
    restarted = crashed.pop() as string
    await fleet.restart(restarted)
  }
  // faults stop
  fleet.net.setLoss(0)
  const start = fleet.net.now()
  const limit = init.settleLimitMs ?? 180_000
  let converged = false
  while (fleet.net.now() - start < limit) {
    await fleet.run(2_000)
    if (fleet.digests().size === 1 && fleet.membershipErrors().length === 0) { converged = true; break }
  }
  const falseDeaths = fleet.falseDeaths.filter(d => !partitioned || d.atMs > partitionEndsAt + 1)
  const result: ScenarioResult = {
    seed: init.seed,
    nodes: init.nodes,
    converged,
    convergeMs: fleet.net.now() - start,
    digests: fleet.digests().size,
    membershipErrors: fleet.membershipErrors().slice(0, 10),
    crashed,
    partitioned,
    restarted,
    falseDeaths,
    traceHash: fleet.net.traceHash(),
    wallMs: Math.round(performance.now() - t0)
  }
  await fleet.stop()
  return result
}
