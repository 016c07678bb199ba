// The gossip benchmark's simulator half: the cluster's own code (membership, replicated state,
// anti-entropy) on the deterministic in-memory network of cluster/sim.ts, in virtual time. Every
// time here is virtual ms, read from the simulator's clock at the event that counts (a watch
// callback, a member:dead event), so the figures do not depend on how loaded this machine is;
// only the wall time to compute them does. What the simulator does not model: gossipsub's mesh
// (a DELTA broadcast reaches every member in one hop, each delivery lost independently), TCP
// (datagrams and broadcasts are lossy, request/response streams are not), CPU and the event loop.
import { createSimFleet } from '../../cluster/index.ts'
import type { ClusterConfig, SimFleet } from '../../cluster/index.ts'

export interface SimBudget {
  /** true once the wall-time budget of this part is spent: loops stop and say so */
  over: () => boolean
  /** throws on an interrupt (Ctrl-C) or past the whole run's deadline */
  check: (what: string) => void
}

export interface SimNet {
  seed: number
  lossRate: number
  delayMs: number
  jitterMs: number
}

export interface FleetFigures {
  nodes: number
  config: Partial<ClusterConfig>
  net: SimNet
  /** virtual ms from start until one digest and a right view of who is alive (undefined: not within the limit) */
  convergeMs: number | undefined
  /** per write: virtual ms from the write to the last live node applying it */
  writeAllMs: number[]
  writesUnfinished: number
  /** per crashed node: virtual ms from the crash to the first / the last live observer declaring it dead */
  deadFirstMs: number[]
  deadAllMs: number[]
  deadUnfinished: number
  /** over an idle window: messages each node sends per virtual second (its own counters) */
  sentPerNodeS: number | undefined
  /** … and deliveries each node receives per second (the network's count; a broadcast counts once per recipient) */
  deliveredPerNodeS: number | undefined
  /** per partition/heal round: virtual ms from the heal until every live node has one digest / a right membership view */
  healDigestMs: number[]
  healMembersMs: number[]
  healUnfinished: number
  notes: string[]
  wallMs: number
}

export interface SoakFigures {
  nodes: number
  net: SimNet
  durationMs: number
  /** live nodes declared dead by a live observer during the soak (every one is false: nothing crashed) */
  falseDeaths: number
  /** suspicions raised (each observer's own count) and refutations during the soak */
  suspicions: number
  refutations: number
  /** membership/digest disagreements at the end */
  membershipErrors: number
  digests: number
  sentPerNodeS: number
  notes: string[]
  wallMs: number
}

export interface FleetPlan {
  nodes: number
  seed: number
  config?: Partial<ClusterConfig>
  lossRate: number
  writes: number
  crashes: number
  /** partition/heal rounds (0 to skip) */
  healRounds: number
  convergeLimitMs: number
  /** virtual ms between convergence checks (a check is O(N²) at the top) */
  checkEveryMs: number
}

const DELAY_MS = 1
const JITTER_MS = 4
const IDLE_WINDOW_MS = 10_000
const WRITE_LIMIT_MS = 60_000
const WRITE_STEP_MS = 20
const DEAD_LIMIT_MS = 150_000
const DEAD_STEP_MS = 250
const PARTITION_MS = 25_000
const HEAL_LIMIT_MS = 120_000
const HEAL_STEP_MS = 250

function totalSent (fleet: SimFleet): number {
  let n = 0
  for (const id of fleet.ids) {
    const node = fleet.node(id)
    if (node === undefined || !fleet.isUp(id)) continue
    for (const v of Object.values(node.stats().sent)) n += v
  }
  return n
}

function sumMembership (fleet: SimFleet, key: 'suspicionsRaised' | 'refutations'): number {
  let n = 0
  for (const id of fleet.ids) {
    const node = fleet.node(id)
    if (node !== undefined && fleet.isUp(id)) n += node.stats().membership[key]
  }
  return n
}

async function converge (fleet: SimFleet, limitMs: number, stepMs: number, budget: SimBudget, what: string): Promise<number | undefined> {
  const t0 = fleet.net.now()
  while (fleet.net.now() - t0 < limitMs) {
    budget.check(what)
    if (budget.over()) return undefined
    await fleet.run(stepMs)
    if (fleet.digests().size === 1 && fleet.membershipErrors().length === 0) return fleet.net.now() - t0
  }
  return undefined
}

/** One fleet: converge, an idle window, writes, crashes, then partition/heal rounds. */
export async function measureFleet (plan: FleetPlan, budget: SimBudget, progress: (line: string) => void): Promise<FleetFigures> {
  const wall0 = performance.now()
  const net: SimNet = { seed: plan.seed, lossRate: plan.lossRate, delayMs: DELAY_MS, jitterMs: JITTER_MS }
  const fleet = createSimFleet({ seed: plan.seed, nodes: plan.nodes, profile: 'lan', config: plan.config, lossRate: plan.lossRate, delayMs: DELAY_MS, jitterMs: JITTER_MS })
  const f: FleetFigures = {
    nodes: plan.nodes, config: plan.config ?? {}, net, convergeMs: undefined,
    writeAllMs: [], writesUnfinished: 0, deadFirstMs: [], deadAllMs: [], deadUnfinished: 0,
    sentPerNodeS: undefined, deliveredPerNodeS: undefined, healDigestMs: [], healMembersMs: [], healUnfinished: 0,
    notes: [], wallMs: 0
  }
  const over = (phase: string): boolean => {
    if (!budget.over()) return false
    f.notes.push(`wall-time budget spent: ${phase} cut short or skipped`)
    return true
  }
  try {
    await fleet.start()
    f.convergeMs = await converge(fleet, plan.convergeLimitMs, plan.checkEveryMs, budget, `sim ${plan.nodes}: start`)
    if (f.convergeMs === undefined) {
      if (!over('convergence')) f.notes.push(`did not converge within ${plan.convergeLimitMs / 1000} virtual s of start; measured anyway`)
    }
    progress(`sim ${plan.nodes}: converged after ${f.convergeMs ?? '>limit'} virtual ms (${Math.round(performance.now() - wall0)} ms wall)`)

    // ---- idle traffic ----
    if (!over('idle window')) {
      const s0 = totalSent(fleet)
      const d0 = fleet.net.stats().delivered
      const t0 = fleet.net.now()
      await fleet.run(IDLE_WINDOW_MS)
      const secs = (fleet.net.now() - t0) / 1000
      f.sentPerNodeS = (totalSent(fleet) - s0) / plan.nodes / secs
      f.deliveredPerNodeS = (fleet.net.stats().delivered - d0) / plan.nodes / secs
    }

    // ---- writes: watch every node, write from a random one, time until the last applies it ----
    const arrived = new Map<string, Map<string, number>>()
    for (const id of fleet.ids) {
      fleet.node(id)?.state.watch('kv/bench/', e => {
        let m = arrived.get(e.key)
        if (m === undefined) arrived.set(e.key, m = new Map())
        if (!m.has(id)) m.set(id, fleet.net.now())
      })
    }
    for (let i = 0; i < plan.writes; i++) {
      budget.check(`sim ${plan.nodes}: write ${i + 1}`)
      if (over('writes')) break
      const writer = fleet.ids[(i * 7919) % plan.nodes] as string
      const key = `bench/w${i}`
      const t0 = fleet.net.now()
      await fleet.node(writer)?.kv.set(key, `v${i}`)
      const seen = (): number => arrived.get(`kv/${key}`)?.size ?? 0
      while (seen() < plan.nodes && fleet.net.now() - t0 < WRITE_LIMIT_MS) await fleet.run(WRITE_STEP_MS)
      const times = [...(arrived.get(`kv/${key}`)?.values() ?? [])]
      if (seen() < plan.nodes) f.writesUnfinished++
      else f.writeAllMs.push(Math.max(0, ...times.map(t => t - t0)))
      await fleet.run(100)
    }
    progress(`sim ${plan.nodes}: ${f.writeAllMs.length} writes measured`)

    // ---- crashes: K at once, time to the first and the last observer declaring each dead ----
    if (plan.crashes > 0 && !over('crashes')) {
      const victims = fleet.ids.slice(1).filter((_, i) => i % Math.floor((plan.nodes - 1) / plan.crashes) === 0).slice(0, plan.crashes)
      const deadAt = new Map<string, Map<string, number>>(victims.map(v => [v, new Map()]))
      const observers = fleet.ids.filter(id => !victims.includes(id))
      for (const obs of observers) {
        fleet.node(obs)?.on('member:dead', m => {
          const d = deadAt.get(m.id)
          if (d !== undefined && !d.has(obs)) d.set(obs, fleet.net.now())
        })
      }
      const t0 = fleet.net.now()
      for (const v of victims) fleet.crash(v)
      const done = (): boolean => [...deadAt.values()].every(d => d.size >= observers.length)
      while (!done() && fleet.net.now() - t0 < DEAD_LIMIT_MS) {
        budget.check(`sim ${plan.nodes}: crashes`)
        if (budget.over()) break
        await fleet.run(DEAD_STEP_MS)
      }
      for (const d of deadAt.values()) {
        const ts = [...d.values()].map(t => t - t0)
        if (ts.length > 0) f.deadFirstMs.push(Math.min(...ts))
        if (d.size >= observers.length) f.deadAllMs.push(Math.max(...ts))
        else f.deadUnfinished++
      }
      progress(`sim ${plan.nodes}: ${victims.length} crashes measured`)
      for (const v of victims) await fleet.restart(v)
      await converge(fleet, plan.convergeLimitMs, plan.checkEveryMs, budget, `sim ${plan.nodes}: rejoin`)
    }

    // ---- partition into halves, writes on both sides, heal; time until one digest ----
    for (let r = 0; r < plan.healRounds; r++) {
      if (over('partition/heal rounds')) break
      const shuffled = fleet.ids.slice().sort((a, b) => hash(a, r) - hash(b, r))
      const half = Math.floor(plan.nodes / 2)
      const sides = [shuffled.slice(0, half), shuffled.slice(half)]
      fleet.net.partition(sides)
      await fleet.run(PARTITION_MS / 2)
      for (const [s, side] of sides.entries()) {
        for (let k = 0; k < 3; k++) await fleet.node(side[k] as string)?.kv.set(`bench/p${r}-${s}-${k}`, `side ${s}`)
      }
      await fleet.run(PARTITION_MS / 2)
      const before = fleet.digests().size
      fleet.net.heal()
      const t0 = fleet.net.now()
      let digestAt: number | undefined
      let membersAt: number | undefined
      while ((digestAt === undefined || membersAt === undefined) && fleet.net.now() - t0 < HEAL_LIMIT_MS) {
        budget.check(`sim ${plan.nodes}: heal ${r + 1}`)
        if (budget.over()) break
        await fleet.run(HEAL_STEP_MS)
        if (digestAt === undefined && fleet.digests().size === 1) digestAt = fleet.net.now() - t0
        if (membersAt === undefined && fleet.membershipErrors().length === 0) membersAt = fleet.net.now() - t0
      }
      if (digestAt === undefined) f.healUnfinished++
      else f.healDigestMs.push(digestAt)
      if (membersAt !== undefined) f.healMembersMs.push(membersAt)
      progress(`sim ${plan.nodes}: heal round ${r + 1}: ${before} digests before the heal, one after ${digestAt ?? '>limit'} virtual ms, membership after ${membersAt ?? '>limit'}`)
      await converge(fleet, plan.convergeLimitMs, plan.checkEveryMs, budget, `sim ${plan.nodes}: after heal ${r + 1}`)
    }
  } finally {
    await fleet.stop()
    f.wallMs = Math.round(performance.now() - wall0)
  }
  return f
}

/** A fleet under steady loss, nothing crashing: every death is false, every suspicion too. */
export async function measureSoak (nodes: number, seed: number, lossRate: number, durationMs: number,
  budget: SimBudget, progress: (line: string) => void): Promise<SoakFigures> {
  const wall0 = performance.now()
  const net: SimNet = { seed, lossRate, delayMs: DELAY_MS, jitterMs: JITTER_MS }
  const fleet = createSimFleet({ seed, nodes, profile: 'lan', lossRate, delayMs: DELAY_MS, jitterMs: JITTER_MS })
  const notes: string[] = []
  try {
    await fleet.start()
    const c = await converge(fleet, 120_000, 2_000, budget, `soak ${nodes}: start`)
    if (c === undefined) notes.push('did not converge within 120 virtual s of start (under loss); soaked anyway')
    const deaths0 = fleet.falseDeaths.length
    const susp0 = sumMembership(fleet, 'suspicionsRaised')
    const ref0 = sumMembership(fleet, 'refutations')
    const sent0 = totalSent(fleet)
    const t0 = fleet.net.now()
    while (fleet.net.now() - t0 < durationMs) {
      budget.check(`soak ${nodes}`)
      if (budget.over()) { notes.push('wall-time budget spent: soak cut short'); break }
      await fleet.run(Math.min(10_000, durationMs - (fleet.net.now() - t0)))
    }
    const ran = fleet.net.now() - t0
    progress(`soak ${nodes}: ${ran / 1000} virtual s at ${lossRate * 100}% loss (${Math.round(performance.now() - wall0)} ms wall)`)
    return {
      nodes, net, durationMs: ran,
      falseDeaths: fleet.falseDeaths.length - deaths0,
      suspicions: sumMembership(fleet, 'suspicionsRaised') - susp0,
      refutations: sumMembership(fleet, 'refutations') - ref0,
      membershipErrors: fleet.membershipErrors().length,
      digests: fleet.digests().size,
      sentPerNodeS: (totalSent(fleet) - sent0) / nodes / (ran / 1000),
      notes,
      wallMs: Math.round(performance.now() - wall0)
    }
  } finally {
    await fleet.stop()
  }
}

/** A stable pseudo-random order of ids for round R (no Math.random: a run replays). */
function hash (s: string, r: number): number {
  let h = (0x811c9dc5 ^ r) >>> 0
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0
  return h
}
