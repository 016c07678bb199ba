// Membership: SWIM (Das, Gupta, Motivala 2002) with Lifeguard's refinements (Dadgar et al.,
// 2018), after HashiCorp memberlist's state.go. One probe per probe interval; indirect probes
// through k members on a missed ack; suspicion refuted by a higher incarnation; a suspicion
// timeout that scales with log N and shrinks as independent confirmations arrive; a local
// health multiplier (LHM) that slows a node's own probing when it misses acks or nacks;
// membership updates piggybacked on probes and gossiped with a retransmit limit.

import { debuglog } from 'node:util'
import { pushPullIntervalFor, retransmitLimit, suspicionTimeoutMs } from './config.ts'
import type { ClusterConfig } from './config.ts'
import { MSG } from './wire.ts'
import type { MemberStatus, MemberUpdate, Message } from './wire.ts'
import type { Clock, PeerId, Random, TimerHandle } from './types.ts'

const log = debuglog('berth:cluster:membership')

export interface Member {
  id: PeerId
  name: string
  addrs: string[]
  incarnation: number
  status: MemberStatus
  /** when the status last changed (clock ms) */
  sinceMs: number
}

export type MemberEventName = 'member:alive' | 'member:suspect' | 'member:dead' | 'member:left'

interface Suspicion {
  incarnation: number
  confirmations: Set<PeerId>
  /** expected independent confirmations (k) */
  k: number
  minMs: number
  maxMs: number
  startMs: number
  timer: TimerHandle | undefined
}

interface MemberState extends Member {
  suspicion: Suspicion | undefined
  /** when a transport hint last made us probe it out of turn (probeNow) */
  hintedMs?: number
}

interface Queued {
  update: MemberUpdate
  transmits: number
}

interface PendingAck {
  acked: boolean
  nacks: number
  onAck: (() => void) | undefined
}

export interface MembershipInit {
  config: Readonly<ClusterConfig>
  clock: Clock
  random: Random
  localId: PeerId
  name: string
  addrs: () => string[]
  incarnation: number
  send: (to: PeerId, m: Message) => void
  request: (to: PeerId, m: Message) => Promise<Message>
  /** persist the incarnation before it is announced further (best effort, ordered) */
  saveIncarnation: (n: number) => void
  emit: (event: MemberEventName, member: Member) => void
  learnAddrs: (id: PeerId, addrs: string[]) => void
}

export interface MembershipCounters {
  probes: number
  indirectProbes: number
  failedProbes: number
  suspicionsRaised: number
  refutations: number
  pushPulls: number
}

export class Membership {
  private readonly cfg: Readonly<ClusterConfig>
  private readonly clock: Clock
  private readonly random: Random
  readonly localId: PeerId
  private readonly init: MembershipInit
  private readonly members = new Map<PeerId, MemberState>()
  /** queued updates by member id, and the same items by transmit count (memberlist's btree order) */
  private readonly queue = new Map<PeerId, Queued>()
  private readonly byTransmits: Array<Set<Queued>> = []
  /** live (alive/suspect) members other than self, for O(1) random picks */
  private readonly live: PeerId[] = []
  private readonly liveIndex = new Map<PeerId, number>()
  private readonly pending = new Map<number, PendingAck>()
  private readonly timers = new Set<TimerHandle>()
  private probeOrder: PeerId[] = []
  private probeIndex = 0
  private seq = 0
  private awareness = 0
  private running = false
  private leaving = false
  readonly counters: MembershipCounters = { probes: 0, indirectProbes: 0, failedProbes: 0, suspicionsRaised: 0, refutations: 0, pushPulls: 0 }

  constructor (init: MembershipInit) {
    this.init = init
    this.cfg = init.config
    this.clock = init.clock
    this.random = init.random
    this.localId = init.localId
    this.members.set(init.localId, {
      id: init.localId, name: init.name, addrs: init.addrs(), incarnation: init.incarnation,
      status: 'alive', sinceMs: init.clock.now(), suspicion: undefined
    })
  }

  private get self (): MemberState {
    return this.members.get(this.localId) as MemberState
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  start (): void {
    if (this.running) return
    this.running = true
    this.leaving = false
    this.self.addrs = this.init.addrs()
    this.enqueue(this.selfUpdate())
    // Stagger the first ticks so a fleet started at once does not probe in lockstep.
    this.after(this.random.int(this.cfg.probeIntervalMs), () => { this.probeTick() })
    this.after(this.random.int(this.cfg.gossipIntervalMs), () => { this.gossipTick() })
    this.after(this.cfg.pushPullIntervalMs / 2 + this.random.int(this.cfg.pushPullIntervalMs), () => { this.pushPullTick() })
    this.after(this.random.int(this.cfg.reconnectIntervalMs) + this.cfg.reconnectIntervalMs, () => { this.reconnectTick() })
  }

  stop (): void {
    this.running = false
    for (const t of this.timers) this.clock.clearTimeout(t)
    this.timers.clear()
    for (const m of this.members.values()) {
      if (m.suspicion?.timer !== undefined) this.clock.clearTimeout(m.suspicion.timer)
    }
    this.pending.clear()
  }

  /** Announces a graceful leave and gossips it for about `waitMs` before the caller stops. */
  leave (): void {
    if (this.leaving) return
    this.leaving = true
    const self = this.self
    self.incarnation++
    this.init.saveIncarnation(self.incarnation)
    self.status = 'left'
    this.enqueue(this.selfUpdate())
    // push it out now rather than waiting for a gossip tick
    for (const id of this.pick(Math.max(this.cfg.gossipNodes, this.cfg.indirectChecks) * 2, () => true)) {
      this.init.send(id, { type: MSG.GOSSIP, updates: this.takeUpdates() })
    }
  }

  private after (ms: number, fn: () => void): TimerHandle {
    const h = this.clock.setTimeout(() => {
      this.timers.delete(h)
      if (this.running) fn()
    }, ms)
    this.timers.add(h)
    return h
  }

  // ---- views ---------------------------------------------------------------------------------

  list (): Member[] {
    return [...this.members.values()].map(m => ({ id: m.id, name: m.name, addrs: m.addrs, incarnation: m.incarnation, status: m.status, sinceMs: m.sinceMs }))
  }

  get (id: PeerId): Member | undefined {
    const m = this.members.get(id)
    return m === undefined ? undefined : { id: m.id, name: m.name, addrs: m.addrs, incarnation: m.incarnation, status: m.status, sinceMs: m.sinceMs }
  }

  /** alive and suspect members, self included: who must acknowledge a tombstone */
  liveIds (): Set<PeerId> {
    const s = new Set<PeerId>()
    for (const m of this.members.values()) if (m.status === 'alive' || m.status === 'suspect') s.add(m.id)
    return s
  }

  private liveCount (): number {
    return this.live.length + (this.self.status === 'alive' ? 1 : 0)
  }

  private trackLive (m: MemberState): void {
    if (m.id === this.localId) return
    const isLive = m.status === 'alive' || m.status === 'suspect'
    const i = this.liveIndex.get(m.id)
    if (isLive && i === undefined) {
      this.liveIndex.set(m.id, this.live.length)
      this.live.push(m.id)
    } else if (!isLive && i !== undefined) {
      const last = this.live.pop() as PeerId
      if (last !== m.id) { this.live[i] = last; this.liveIndex.set(last, i) }
      this.liveIndex.delete(m.id)
    }
  }

  /** Lifeguard's local health multiplier, 0 = healthy */
  health (): number {
    return this.awareness
  }

  incarnation (): number {
    return this.self.incarnation
  }

  /** up to n random live members other than self (and those `ok` accepts) */
  pick (n: number, ok: (m: MemberState) => boolean): PeerId[] {
    // Large fleets: draw at random from the live list (rejecting what `ok` refuses) instead of
    // scanning every member on each probe and gossip tick.
    if (this.live.length > 4 * n + 16) {
      const out = new Set<PeerId>()
      for (let tries = 0; tries < 8 * n && out.size < n; tries++) {
        const id = this.live[this.random.int(this.live.length)] as PeerId
        if (!out.has(id) && ok(this.members.get(id) as MemberState)) out.add(id)
      }
      return [...out]
    }
    const c: PeerId[] = []
    for (const id of this.live) if (ok(this.members.get(id) as MemberState)) c.push(id)
    if (c.length <= n) return this.random.shuffle(c)
    // partial Fisher-Yates: n draws
    for (let i = 0; i < n; i++) {
      const j = i + this.random.int(c.length - i)
      const t = c[i] as PeerId; c[i] = c[j] as PeerId; c[j] = t
    }
    return c.slice(0, n)
  }

  private scale (ms: number): number {
    return ms * (this.awareness + 1)
  }

  private applyAwareness (delta: number): void {
    this.awareness = Math.max(0, Math.min(this.cfg.awarenessMaxMultiplier - 1, this.awareness + delta))
  }

  // ---- gossip queue (memberlist's TransmitLimitedQueue) ---------------------------------------

  private selfUpdate (): MemberUpdate {
    const s = this.self
    return { status: s.status, id: s.id, incarnation: s.incarnation, name: s.name, addrs: s.addrs, from: s.id }
  }

  private enqueue (u: MemberUpdate): void {
    // a newer update about a member replaces the queued one
    const old = this.queue.get(u.id)
    if (old !== undefined) this.byTransmits[old.transmits]?.delete(old)
    const item = { update: u, transmits: 0 }
    this.queue.set(u.id, item)
    this.bucket(0).add(item)
  }

  private bucket (n: number): Set<Queued> {
    let b = this.byTransmits[n]
    if (b === undefined) this.byTransmits[n] = b = new Set()
    return b
  }

  /** the least-transmitted updates first; each is dropped after the retransmit limit */
  takeUpdates (): MemberUpdate[] {
    if (this.queue.size === 0) return []
    const limit = retransmitLimit(this.cfg.retransmitMult, this.live.length + 1)
    const taken: Queued[] = []
    for (let t = 0; t < this.byTransmits.length && taken.length < this.cfg.maxPiggybackUpdates; t++) {
      const b = this.byTransmits[t]
      if (b === undefined) continue
      for (const item of b) {
        if (taken.length >= this.cfg.maxPiggybackUpdates) break
        taken.push(item)
      }
    }
    const out: MemberUpdate[] = []
    for (const item of taken) {
      out.push(item.update)
      this.byTransmits[item.transmits]?.delete(item)
      item.transmits++
      if (item.transmits >= limit) this.queue.delete(item.update.id)
      else this.bucket(item.transmits).add(item)
    }
    return out
  }

  queued (): number {
    return this.queue.size
  }

  // ---- probing -------------------------------------------------------------------------------

  private nextTarget (): MemberState | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.probeIndex < this.probeOrder.length) {
        const m = this.members.get(this.probeOrder[this.probeIndex++] as PeerId)
        if (m !== undefined && m.id !== this.localId && (m.status === 'alive' || m.status === 'suspect')) return m
      }
      this.probeOrder = this.random.shuffle([...this.members.keys()])
      this.probeIndex = 0
    }
    return undefined
  }

  private probeTick (): void {
    const intervalMs = this.scale(this.cfg.probeIntervalMs)
    this.after(intervalMs, () => { this.probeTick() })
    if (this.leaving) return
    const target = this.nextTarget()
    if (target !== undefined) this.probe(target, intervalMs)
  }

  private probe (target: MemberState, intervalMs: number): void {
    this.counters.probes++
    const seq = ++this.seq
    const p: PendingAck = { acked: false, nacks: 0, onAck: undefined }
    this.pending.set(seq, p)
    const inc = target.incarnation
    const updates = this.takeUpdates()
    if (target.status === 'suspect' && !updates.some(u => u.id === target.id)) {
      // Lifeguard's buddy system: a suspect learns of its suspicion from the probe itself, and
      // refutes at once instead of when gossip happens to reach it
      updates.unshift({ status: 'suspect', id: target.id, incarnation: target.incarnation, name: target.name, addrs: target.addrs, from: this.localId })
      if (updates.length > this.cfg.maxPiggybackUpdates) updates.pop()
    }
    this.init.send(target.id, { type: MSG.PING, seq, target: target.id, updates })
    let expectedNacks = 0
    this.after(this.scale(this.cfg.probeTimeoutMs), () => {
      if (p.acked) return
      // No direct ack: ask k others to probe it for us (they nack if they get no ack either).
      const relays = this.pick(this.cfg.indirectChecks, m => m.id !== target.id && m.status === 'alive')
      expectedNacks = relays.length
      for (const r of relays) {
        this.counters.indirectProbes++
        this.init.send(r, { type: MSG.PING_REQ, seq, target: target.id, addrs: target.addrs, updates: this.takeUpdates() })
      }
    })
    this.after(intervalMs, () => {
      this.pending.delete(seq)
      if (p.acked) {
        this.applyAwareness(-1)
        return
      }
      this.counters.failedProbes++
      // Lifeguard: missing nacks mean *we* may be the problem (slow, lossy): raise LHM.
      this.applyAwareness(expectedNacks > 0 ? Math.max(0, expectedNacks - p.nacks) : 1)
      const cur = this.members.get(target.id)
      if (cur === undefined || cur.incarnation !== inc || cur.status === 'dead' || cur.status === 'left') return
      log('%s: probe of %s failed, suspecting', this.localId, target.id)
      this.onSuspect({ status: 'suspect', id: target.id, incarnation: inc, name: target.name, addrs: target.addrs, from: this.localId })
    })
  }

  /**
   * A hint from the transport that member ID may be gone: its last connection closed. Probe it
   * now instead of at its turn in the round-robin (at most once per probe interval). A hint is
   * not a verdict: only the probe's failure leads to suspicion, so a connection that merely
   * recycles costs one probe. A crashed process, whose host's kernel closes its connections at
   * once, is suspected about one probe interval after it died instead of at its turn (up to
   * N probe intervals away for each prober); a vanished host gives no hint and waits its turn.
   */
  probeNow (id: PeerId): void {
    const m = this.members.get(id)
    if (!this.running || this.leaving || m === undefined || m.status !== 'alive') return
    const now = this.clock.now()
    if (m.hintedMs !== undefined && now - m.hintedMs < this.cfg.probeIntervalMs) return
    m.hintedMs = now
    this.probe(m, this.scale(this.cfg.probeIntervalMs))
  }

  // ---- inbound datagrams ---------------------------------------------------------------------

  handle (from: PeerId, m: Message): void {
    if (!this.running) return
    // A member we hold dead is talking to us (a healed partition; it never heard of its death):
    // tell it, so it refutes with a higher incarnation that overrides our dead record. Without
    // this the two only meet again at a push-pull or reconnect, minutes apart in a large fleet.
    const sender = this.members.get(from)
    if (sender !== undefined && sender.status === 'dead' && m.type !== MSG.NACK) {
      this.init.send(from, {
        type: MSG.GOSSIP,
        updates: [{ status: 'dead', id: from, incarnation: sender.incarnation, name: sender.name, addrs: sender.addrs, from: this.localId }]
      })
    }
    switch (m.type) {
      case MSG.PING:
        this.merge(m.updates)
        // A ping for another id reached us (address reuse after a restart): ignore it, as memberlist does.
        if (m.target !== this.localId) return
        this.init.send(from, { type: MSG.ACK, seq: m.seq, updates: this.takeUpdates() })
        return
      case MSG.PING_REQ: {
        this.merge(m.updates)
        if (m.target === this.localId) {
          this.init.send(from, { type: MSG.ACK, seq: m.seq, updates: this.takeUpdates() })
          return
        }
        this.init.learnAddrs(m.target, m.addrs)
        const seq = ++this.seq
        const p: PendingAck = {
          acked: false,
          nacks: 0,
          onAck: () => { this.init.send(from, { type: MSG.ACK, seq: m.seq, updates: [] }) }
        }
        this.pending.set(seq, p)
        this.init.send(m.target, { type: MSG.PING, seq, target: m.target, updates: this.takeUpdates() })
        // Lifeguard: tell the requester we tried and got nothing, so it can tell "target down" from "I am slow".
        this.after(this.cfg.probeTimeoutMs, () => {
          if (!p.acked) this.init.send(from, { type: MSG.NACK, seq: m.seq })
        })
        this.after(this.cfg.probeIntervalMs, () => { this.pending.delete(seq) })
        return
      }
      case MSG.ACK: {
        this.merge(m.updates)
        const p = this.pending.get(m.seq)
        if (p !== undefined && !p.acked) {
          p.acked = true
          p.onAck?.()
        }
        return
      }
      case MSG.NACK: {
        const p = this.pending.get(m.seq)
        if (p !== undefined) p.nacks++
        return
      }
      case MSG.GOSSIP:
        this.merge(m.updates)
    }
  }

  merge (updates: MemberUpdate[]): void {
    for (const u of updates) {
      switch (u.status) {
        case 'alive': this.onAlive(u); break
        case 'suspect': this.onSuspect(u); break
        case 'dead': this.onDead(u); break
        case 'left': this.onDead(u); break
      }
    }
  }

  // ---- the state machine (memberlist's aliveNode / suspectNode / deadNode) ---------------------

  private setStatus (m: MemberState, status: MemberStatus): void {
    if (m.status === status) return
    m.status = status
    this.trackLive(m)
    m.sinceMs = this.clock.now()
    if (m.id === this.localId) return
    const ev = `member:${status}` as MemberEventName
    log('%s: %s is %s (incarnation %d)', this.localId, m.id, status, m.incarnation)
    this.init.emit(ev, { id: m.id, name: m.name, addrs: m.addrs, incarnation: m.incarnation, status: m.status, sinceMs: m.sinceMs })
  }

  private clearSuspicion (m: MemberState): void {
    if (m.suspicion?.timer !== undefined) this.clock.clearTimeout(m.suspicion.timer)
    m.suspicion = undefined
  }

  private refute (accused: number): void {
    const self = this.self
    if (this.leaving) return
    self.incarnation = Math.max(self.incarnation, accused) + 1
    this.init.saveIncarnation(self.incarnation)
    this.counters.refutations++
    this.applyAwareness(1)
    this.enqueue(this.selfUpdate())
  }

  private onAlive (u: MemberUpdate): void {
    if (u.id === this.localId) {
      // Someone holds a newer alive of us (from before a restart that lost our incarnation): outbid it.
      if (u.incarnation > this.self.incarnation && !this.leaving) this.refute(u.incarnation)
      return
    }
    // only the member itself says it is alive: accept alive updates whose origin is the subject
    if (u.from !== u.id) return
    let m = this.members.get(u.id)
    if (m === undefined) {
      m = { id: u.id, name: u.name, addrs: u.addrs, incarnation: u.incarnation, status: 'dead', sinceMs: this.clock.now(), suspicion: undefined }
      this.members.set(u.id, m)
      this.probeOrder.splice(this.probeIndex + this.random.int(this.probeOrder.length - this.probeIndex + 1), 0, u.id)
    } else if (u.incarnation <= m.incarnation) {
      // Only a higher incarnation clears a suspicion or a death (memberlist's aliveNode): a
      // refutation always bumps it. An alive at the same incarnation is old news that push-pull
      // relays from members that have not heard of the suspicion yet; taking it would reset
      // suspicions of a crashed member as fast as they are raised, and it would never die.
      return
    }
    this.clearSuspicion(m)
    m.incarnation = u.incarnation
    m.name = u.name
    m.addrs = u.addrs
    this.init.learnAddrs(m.id, m.addrs)
    this.enqueue(u)
    this.setStatus(m, 'alive')
  }

  private onSuspect (u: MemberUpdate): void {
    const m = this.members.get(u.id)
    if (m === undefined || u.incarnation < m.incarnation) return
    if (u.id === this.localId) {
      this.refute(u.incarnation)
      return
    }
    if (m.status === 'dead' || m.status === 'left') return
    if (m.status === 'suspect' && m.suspicion !== undefined && u.incarnation === m.suspicion.incarnation) {
      // an independent confirmation shrinks the timeout (Lifeguard); re-gossip only new ones
      if (this.confirm(m, u.from)) this.enqueue(u)
      return
    }
    m.incarnation = u.incarnation
    this.clearSuspicion(m)
    const n = this.liveCount()
    const k = n - 2 < this.cfg.suspicionMult - 2 ? 0 : this.cfg.suspicionMult - 2
    const minMs = suspicionTimeoutMs(this.cfg.suspicionMult, n, this.cfg.probeIntervalMs)
    const s: Suspicion = {
      incarnation: u.incarnation, confirmations: new Set([u.from]), k, minMs,
      maxMs: this.cfg.suspicionMaxTimeoutMult * minMs, startMs: this.clock.now(), timer: undefined
    }
    m.suspicion = s
    if (u.from === this.localId) this.counters.suspicionsRaised++
    this.enqueue(u)
    this.setStatus(m, 'suspect')
    this.armSuspicion(m, s)
  }

  /** memberlist's suspicion.Confirm: true if `from` is a new, independent confirmation */
  private confirm (m: MemberState, from: PeerId): boolean {
    const s = m.suspicion as Suspicion
    if (s.confirmations.size - 1 >= s.k || s.confirmations.has(from)) return false
    s.confirmations.add(from)
    this.armSuspicion(m, s)
    return true
  }

  private armSuspicion (m: MemberState, s: Suspicion): void {
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer)
    const c = s.confirmations.size - 1
    const frac = s.k < 1 ? 1 : Math.log(c + 1) / Math.log(s.k + 1)
    const timeoutMs = Math.max(s.minMs, Math.floor(s.maxMs - frac * (s.maxMs - s.minMs)))
    const remaining = Math.max(0, s.startMs + timeoutMs - this.clock.now())
    s.timer = this.clock.setTimeout(() => {
      s.timer = undefined
      if (!this.running || m.suspicion !== s || m.status !== 'suspect') return
      log('%s: suspicion of %s timed out after %d ms, declaring dead', this.localId, m.id, this.clock.now() - s.startMs)
      this.onDead({ status: 'dead', id: m.id, incarnation: s.incarnation, name: m.name, addrs: m.addrs, from: this.localId })
    }, remaining)
  }

  private onDead (u: MemberUpdate): void {
    const m = this.members.get(u.id)
    if (m === undefined || u.incarnation < m.incarnation) return
    if (u.id === this.localId) {
      if (!this.leaving) this.refute(u.incarnation)
      return
    }
    const left = u.status === 'left' && u.from === u.id
    if (m.status === 'dead' || m.status === 'left') {
      // a dead member that we learn has left gracefully becomes 'left'
      if (left && m.status === 'dead' && u.incarnation >= m.incarnation) { m.incarnation = u.incarnation; this.enqueue(u); this.setStatus(m, 'left') }
      return
    }
    m.incarnation = u.incarnation
    this.clearSuspicion(m)
    this.enqueue(left ? u : { ...u, status: 'dead' })
    this.setStatus(m, left ? 'left' : 'dead')
  }

  // ---- gossip, push-pull, reconnect ----------------------------------------------------------

  private gossipTick (): void {
    this.after(this.cfg.gossipIntervalMs, () => { this.gossipTick() })
    if (this.queue.size === 0) return
    for (const id of this.pick(this.cfg.gossipNodes, () => true)) {
      const updates = this.takeUpdates()
      if (updates.length === 0) break
      this.init.send(id, { type: MSG.GOSSIP, updates })
    }
  }

  private stateUpdates (): MemberUpdate[] {
    const now = this.clock.now()
    const out: MemberUpdate[] = []
    for (const m of this.members.values()) {
      if ((m.status === 'dead' || m.status === 'left') && now - m.sinceMs > this.cfg.deadReclaimMs) {
        this.members.delete(m.id)
        continue
      }
      out.push({ status: m.status, id: m.id, incarnation: m.incarnation, name: m.name, addrs: m.addrs, from: m.status === 'alive' || m.status === 'left' ? m.id : this.localId })
    }
    return out
  }

  /** Answers a push-pull: merge theirs first (so a refutation of us is in our answer), then send ours. */
  handlePushPull (from: PeerId, m: Extract<Message, { type: typeof MSG.PUSH_PULL }>): Message {
    this.mergeRemoteState(m.members)
    return { type: MSG.PUSH_PULL, join: false, members: this.stateUpdates() }
  }

  private mergeRemoteState (members: MemberUpdate[]): void {
    for (const u of members) {
      // memberlist's mergeState: a remote "dead" only makes us suspect (we may know better)
      if (u.status === 'alive') this.onAlive(u)
      else if (u.status === 'left') this.onDead(u)
      else this.onSuspect({ ...u, status: 'suspect' })
    }
  }

  /** Full state exchange with one peer (join, periodic sync, reconnect). */
  async pushPull (id: PeerId, join: boolean): Promise<void> {
    this.counters.pushPulls++
    const res = await this.init.request(id, { type: MSG.PUSH_PULL, join, members: this.stateUpdates() })
    if (res.type !== MSG.PUSH_PULL) throw new Error(`push-pull with ${id}: unexpected answer type ${res.type}`)
    if (this.running) this.mergeRemoteState(res.members)
  }

  private pushPullTick (): void {
    const n = this.liveCount()
    this.after(pushPullIntervalFor(this.cfg.pushPullIntervalMs, n), () => { this.pushPullTick() })
    const [id] = this.pick(1, m => m.status === 'alive')
    if (id !== undefined) this.pushPull(id, false).catch(err => { log('%s: push-pull with %s: %o', this.localId, id, err) })
  }

  private reconnectTick (): void {
    this.after(this.cfg.reconnectIntervalMs, () => { this.reconnectTick() })
    const dead = [...this.members.values()].filter(m => m.status === 'dead')
    if (dead.length === 0) return
    const m = dead[this.random.int(dead.length)] as MemberState
    this.pushPull(m.id, false).catch(err => { log('%s: reconnect to %s: %o', this.localId, m.id, err) })
  }
}
