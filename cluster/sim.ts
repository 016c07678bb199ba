// The deterministic simulator: one virtual clock (an event queue, no real timers) shared by
// every simulated node, and an in-memory network with seeded loss, delay + jitter, partitions
// (sets of node groups) and crashes. Same seed → same event order → same trace hash.
//
// Determinism: events run one at a time in (time, insertion) order; after each, the loop waits
// for a macrotask turn (setImmediate), by which time every promise chain the event started has
// settled (nothing in the simulation does real I/O). No Math.random, no Date.now.

import { createRandom } from './random.ts'
import type { Clock, PeerId, Random, RequestOptions, TimerHandle, Transport, TransportHandlers } from './types.ts'

/** virtual ms between full drains of pending promise chains (see run) */
const DRAIN_MS = 5

interface Ev {
  at: number
  seq: number
  fn: () => void
  /** node whose epoch must still be current for this event to run ('' = the network's) */
  owner: PeerId
  epoch: number
  cancelled: boolean
}

class Heap {
  private a: Ev[] = []
  get size (): number { return this.a.length }
  private less (x: Ev, y: Ev): boolean { return x.at < y.at || (x.at === y.at && x.seq < y.seq) }
  push (e: Ev): void {
    const a = this.a
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(a[i] as Ev, a[p] as Ev)) break
      const t = a[i] as Ev; a[i] = a[p] as Ev; a[p] = t; i = p
    }
  }
  peek (): Ev | undefined { return this.a[0] }
  pop (): Ev | undefined {
    const a = this.a
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1; const r = l + 1
        let m = i
        if (l < a.length && this.less(a[l] as Ev, a[m] as Ev)) m = l
        if (r < a.length && this.less(a[r] as Ev, a[m] as Ev)) m = r
        if (m === i) break
        const t = a[i] as Ev; a[i] = a[m] as Ev; a[m] = t; i = m
      }
    }
    return top
  }
}

export interface SimNetworkInit {
  seed: number
  /** probability a datagram or broadcast delivery is lost (streams are reliable) */
  lossRate?: number
  /** one-way delay: delayMs + uniform [0, jitterMs) */
  delayMs?: number
  jitterMs?: number
  /** virtual wall-clock start (ms since epoch) */
  startMs?: number
}

export interface SimStats {
  delivered: number
  lost: number
  blocked: number
  events: number
}

export interface SimNetwork {
  /** the virtual clock's now */
  now: () => number
  /** a clock for one node: its timers die with it when it crashes */
  clockFor: (id: PeerId) => Clock
  /** a Random for one node, derived from the seed and its id */
  randomFor: (id: PeerId) => Random
  /** a transport for `id`; a new one after a restart */
  transport: (id: PeerId) => Transport
  /** nodes in different groups cannot exchange anything; nodes in no group form one more group */
  partition: (groups: PeerId[][]) => void
  heal: () => void
  setLoss: (rate: number) => void
  /**
   * the node stops: nothing to or from it is delivered, its timers never fire. With
   * closesConnections (a process that died on a live host, whose kernel closes its TCP
   * connections) every node that can reach it gets the transport's peerDown hint one latency
   * later; without it (a host gone silent) nobody is told.
   */
  crash: (id: PeerId, opts?: { closesConnections?: boolean }) => void
  isUp: (id: PeerId) => boolean
  /** runs the event queue for `ms` of virtual time */
  run: (ms: number) => Promise<void>
  /** a hash of every delivery (time, from, to, size) and timer fire so far */
  traceHash: () => string
  stats: () => SimStats
}

interface SimNode {
  id: PeerId
  epoch: number
  up: boolean
  handlers: TransportHandlers | undefined
  index: number
}

class Sim implements SimNetwork {
  private t: number
  private seqN = 0
  private readonly heap = new Heap()
  readonly rnd: Random
  private readonly seed: number
  loss: number
  private readonly delayMs: number
  private readonly jitterMs: number
  private readonly nodes = new Map<PeerId, SimNode>()
  private groups: Map<PeerId, number> | undefined
  private drainedAt = 0
  private h1 = 0x811c9dc5
  private h2 = 0x01000193
  readonly st: SimStats = { delivered: 0, lost: 0, blocked: 0, events: 0 }

  constructor (init: SimNetworkInit) {
    this.seed = init.seed
    this.rnd = createRandom(init.seed)
    this.loss = init.lossRate ?? 0
    this.delayMs = init.delayMs ?? 1
    this.jitterMs = init.jitterMs ?? 0
    this.t = init.startMs ?? 1_700_000_000_000
  }

  now (): number { return this.t }

  private node (id: PeerId): SimNode {
    let n = this.nodes.get(id)
    if (n === undefined) this.nodes.set(id, n = { id, epoch: 0, up: true, handlers: undefined, index: this.nodes.size + 1 })
    return n
  }

  schedule (delay: number, fn: () => void, owner: PeerId, epoch: number): Ev {
    const e: Ev = { at: this.t + Math.max(0, delay), seq: this.seqN++, fn, owner, epoch, cancelled: false }
    this.heap.push(e)
    return e
  }

  trace (a: number, b: number, c: number): void {
    this.h1 = Math.imul(this.h1 ^ a, 0x01000193) ^ Math.imul(b, 0x9e3779b1)
    this.h2 = Math.imul(this.h2 ^ c ^ (this.h1 >>> 7), 0x85ebca6b) ^ (this.t & 0xffffffff)
  }

  clockFor (id: PeerId): Clock {
    const n = this.node(id)
    const epoch = n.epoch
    return {
      now: () => this.t,
      setTimeout: (fn, ms) => this.schedule(ms, fn, id, epoch) as unknown as TimerHandle,
      clearTimeout: (h) => { (h as unknown as Ev).cancelled = true }
    }
  }

  randomFor (id: PeerId): Random {
    let h = this.seed >>> 0
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0
    return createRandom(h)
  }

  reachable (a: SimNode, b: SimNode): boolean {
    if (!a.up || !b.up || b.handlers === undefined) return false
    if (this.groups === undefined) return true
    return (this.groups.get(a.id) ?? -1) === (this.groups.get(b.id) ?? -1)
  }

  latency (): number {
    return this.delayMs + (this.jitterMs > 0 ? this.rnd.next() * this.jitterMs : 0)
  }

  /** delivers `fn` at `to` after a delay, if both ends are still up and connected then */
  private deliver (from: SimNode, to: SimNode, size: number, lossy: boolean, fn: (h: TransportHandlers) => void, onFail?: () => void): void {
    if (lossy && this.loss > 0 && this.rnd.next() < this.loss) { this.st.lost++; onFail?.(); return }
    const fromEpoch = from.epoch
    const toEpoch = to.epoch
    this.schedule(this.latency(), () => {
      if (from.epoch !== fromEpoch || to.epoch !== toEpoch || !this.reachable(from, to)) { this.st.blocked++; onFail?.(); return }
      this.st.delivered++
      this.trace(from.index, to.index, size)
      fn(to.handlers as TransportHandlers)
    }, '', 0)
  }

  transport (id: PeerId): Transport {
    const self = this.node(id)
    const sim = this
    let started = false
    const epoch = self.epoch
    const alive = (): boolean => started && self.epoch === epoch && self.up
    return {
      localId: id,
      async start (handlers) {
        if (started) return
        started = true
        self.handlers = handlers
        self.up = true
      },
      async stop () {
        if (!started) return
        started = false
        if (self.epoch === epoch) self.handlers = undefined
      },
      localAddrs: () => [id],
      addPeer: () => {},
      send (to, data) {
        if (!alive()) return
        const dst = sim.nodes.get(to)
        if (dst === undefined) return
        sim.deliver(self, dst, data.length, true, h => { h.message(id, data) })
      },
      broadcast (data) {
        if (!alive()) return
        // One event for all recipients (a thousand-node fleet would otherwise fill the queue
        // with a million deliveries); loss is still drawn per recipient.
        const targets: Array<[SimNode, number]> = []
        for (const dst of sim.nodes.values()) {
          if (dst === self || !sim.reachable(self, dst)) continue
          if (sim.loss > 0 && sim.rnd.next() < sim.loss) { sim.st.lost++; continue }
          targets.push([dst, dst.epoch])
        }
        const fromEpoch = self.epoch
        sim.schedule(sim.latency(), () => {
          for (const [dst, e] of targets) {
            if (self.epoch !== fromEpoch || dst.epoch !== e || !sim.reachable(self, dst)) { sim.st.blocked++; continue }
            sim.st.delivered++
            sim.trace(self.index, dst.index, data.length)
            ;(dst.handlers as TransportHandlers).broadcast(id, data)
          }
        }, '', 0)
      },
      async request (to, data, opts: RequestOptions) {
        if (!alive()) throw new Error('transport stopped')
        const dst = sim.nodes.get(to)
        return await new Promise<Uint8Array>((resolve, reject) => {
          let done = false
          const timer = sim.schedule(opts.timeoutMs, () => {
            if (!done) { done = true; reject(new Error(`request to ${to} timed out after ${opts.timeoutMs} ms`)) }
          }, '', 0)
          if (dst === undefined) return
          sim.deliver(self, dst, data.length, false, h => {
            h.request(id, data).then(res => {
              sim.deliver(dst, self, res.length, false, () => {
                if (!done) { done = true; timer.cancelled = true; resolve(res) }
              })
            }, () => {})
          })
        })
      },
      async dial (addr, opts) {
        const dst = sim.nodes.get(addr)
        const ok = dst !== undefined && sim.reachable(self, dst)
        await new Promise<void>(resolve => sim.schedule(ok ? 2 * sim.delayMs : opts.timeoutMs, resolve, '', 0))
        if (!ok || dst === undefined || !sim.reachable(self, dst)) throw new Error(`cannot reach ${addr}`)
        return addr
      }
    }
  }

  partition (groups: PeerId[][]): void {
    const m = new Map<PeerId, number>()
    groups.forEach((g, i) => { for (const id of g) m.set(id, i) })
    this.groups = m
  }

  heal (): void { this.groups = undefined }
  setLoss (rate: number): void { this.loss = rate }

  crash (id: PeerId, opts: { closesConnections?: boolean } = {}): void {
    const n = this.node(id)
    const peers = opts.closesConnections === true ? [...this.nodes.values()].filter(o => o !== n && this.reachable(n, o)) : []
    n.epoch++
    n.up = true // a restart gets a fresh transport (new epoch); until then nothing reaches it
    n.handlers = undefined
    for (const o of peers) {
      const epoch = o.epoch
      this.schedule(this.latency(), () => { if (o.epoch === epoch) o.handlers?.peerDown?.(id) }, '', 0)
    }
  }

  isUp (id: PeerId): boolean {
    const n = this.nodes.get(id)
    return n !== undefined && n.handlers !== undefined
  }

  async run (ms: number): Promise<void> {
    const end = this.t + ms
    for (;;) {
      const e = this.heap.peek()
      if (e === undefined || e.at > end) break
      this.heap.pop()
      if (e.cancelled) continue
      if (e.owner !== '' && this.node(e.owner).epoch !== e.epoch) continue
      this.t = e.at
      this.st.events++
      e.fn()
      // Let promise chains the event started run. A macrotask turn settles all of them but costs
      // ~10 µs, so it is taken once per DRAIN_MS of virtual time; in between, one microtask turn
      // per event. Either way the order is a pure function of the seed (the microtask queue is
      // FIFO and nothing here does real I/O): a chain may just finish a few events later.
      if (this.t - this.drainedAt >= DRAIN_MS) {
        this.drainedAt = this.t
        await new Promise<void>(resolve => setImmediate(resolve))
      } else {
        await undefined
      }
    }
    this.t = end
    await new Promise<void>(resolve => setImmediate(resolve))
  }

  traceHash (): string {
    return ((this.h1 >>> 0).toString(16).padStart(8, '0')) + ((this.h2 >>> 0).toString(16).padStart(8, '0'))
  }

  stats (): SimStats { return { ...this.st } }
}

export function createSimNetwork (init: SimNetworkInit): SimNetwork {
  return new Sim(init)
}
