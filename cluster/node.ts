// A cluster node: wires a Transport to membership (membership.ts) and the replicated state
// (state.ts) through the wire layer (wire.ts), and runs anti-entropy. The order of start-up
// and shutdown lives here; each mechanism lives in its own file.

import { EventEmitter } from 'node:events'
import { availableParallelism, totalmem } from 'node:os'
import { debuglog } from 'node:util'
import { resolveConfig } from './config.ts'
import type { ClusterConfig, ProfileName } from './config.ts'
import { ClusterNotStartedError, InvalidRecordError, JoinError, WriteNotAllowedError } from './errors.ts'
import { Membership } from './membership.ts'
import type { Member, MemberEventName, MembershipCounters } from './membership.ts'
import { createRandom } from './random.ts'
import { systemClock } from './clock.ts'
import { checkKey, checkWriter } from './rules.ts'
import { ReplicatedState } from './state.ts'
import type { ClusterStore, StateCounters, StateEntry, WatchEvent } from './state.ts'
import { decode, encode, MSG, MSG_NAMES, WireError } from './wire.ts'
import type { DropReason, MemberStatus, Message, WireEntry } from './wire.ts'
import type { Clock, PeerId, Random, Transport } from './types.ts'
import type { HlcVersion } from './hlc.ts'

const log = debuglog('berth:cluster:node')

export interface Capacity {
  cpu: number
  memoryBytes: number
  pids?: number
}

/** The record every node keeps at `member/<its id>` in the replicated state. */
export interface MemberRecord {
  name: string
  addrs: string[]
  incarnation: number
  labels: Record<string, string>
  capacity: Capacity
  usage?: Record<string, number>
  version: string
  startedAtMs: number
}

export interface MemberInfo {
  id: PeerId
  name: string
  addrs: string[]
  status: MemberStatus
  incarnation: number
  /** from the member's own `member/<id>` record, once it has arrived */
  labels: Record<string, string>
  capacity: Capacity | undefined
  usage: Record<string, number> | undefined
  version: string | undefined
  self: boolean
}

export interface ClusterNodeEvents {
  'member:alive': [Member]
  'member:suspect': [Member]
  'member:dead': [Member]
  'member:left': [Member]
  /** a join attempt through the seeds failed; it is retried with backoff */
  'join:error': [JoinError]
  /** at least one seed answered */
  'join:ok': [number]
}

export type DropCounters = Record<DropReason | 'wrongChannel', number>

export interface ClusterStats {
  id: PeerId
  incarnation: number
  /** Lifeguard's local health multiplier (0 = healthy) */
  health: number
  received: Record<string, number>
  sent: Record<string, number>
  /** messages dropped before reaching a state machine, by reason */
  dropped: DropCounters
  membership: MembershipCounters & { queuedUpdates: number }
  state: StateCounters & { live: number; tombstones: number; graveyard: number }
  antiEntropy: { rounds: number; failures: number; pushed: number; pulled: number }
}

export interface KvApi {
  set: (key: string, value: unknown) => Promise<void>
  get: (key: string) => unknown
  list: (prefix?: string) => Array<{ key: string; value: unknown }>
  delete: (key: string) => Promise<void>
  /** calls `cb` for every change under `prefix` from now on (local writes and remote ones alike); returns the unsubscribe */
  watch: (prefix: string, cb: (e: KvChange) => void) => () => void
}

/** One change of a kv key: its new value, or deleted; who wrote it and at what HLC version. */
export interface KvChange { key: string; value: unknown; deleted: boolean; writer: PeerId; version: HlcVersion }

export interface StateApi {
  /** writes `kind/id` as this node (checked against the writer table) */
  put: (kind: string, id: string, record: unknown) => Promise<void>
  delete: (kind: string, id: string) => Promise<void>
  get: <T = unknown>(kind: string, id: string) => StateEntry<T> | undefined
  /** entries whose key (`kind/id`) starts with prefix, sorted by key */
  list: <T = unknown>(prefix: string) => Array<StateEntry<T>>
  /** called after each change under prefix is persisted and applied; returns an unsubscribe */
  watch: <T = unknown>(prefix: string, cb: (e: WatchEvent<T>) => void) => () => void
}

export interface ClusterNode {
  readonly id: PeerId
  readonly config: Readonly<ClusterConfig>
  /** safe to call twice */
  start: () => Promise<void>
  /** safe to call twice */
  stop: () => Promise<void>
  /** joins through seed addresses (host:port, multiaddr; ids in the simulator); throws JoinError if none answers */
  join: (addrs: string[], opts?: { signal?: AbortSignal }) => Promise<number>
  /** announces a graceful leave and gives it time to spread; call stop() after */
  leave: () => Promise<void>
  members: () => MemberInfo[]
  readonly kv: KvApi
  readonly state: StateApi
  /** hash of all live entries of the replicated state (equal digests = same state) */
  digest: () => string
  stats: () => ClusterStats
  /** one anti-entropy round with a peer (normally run every antiEntropyIntervalMs) */
  antiEntropy: (peer: PeerId) => Promise<void>
  on: <E extends keyof ClusterNodeEvents>(event: E, cb: (...args: ClusterNodeEvents[E]) => void) => void
  off: <E extends keyof ClusterNodeEvents>(event: E, cb: (...args: ClusterNodeEvents[E]) => void) => void
}

export interface ClusterNodeInit {
  /** the node's Store (storage/), or anything with its sublevel() and write() */
  store: ClusterStore
  /** a Transport; give this or libp2pInit */
  transport?: Transport
  /** builds the libp2p transport (cluster/libp2p/) */
  libp2pInit?: import('./libp2p/transport.ts').Libp2pTransportInit
  clock?: Clock
  random?: Random
  nodeName: string
  labels?: Record<string, string>
  capacity?: Capacity
  profile?: ProfileName
  config?: Partial<ClusterConfig>
  /** seed addresses to join on start (retried with backoff until one answers) */
  join?: string[]
  /** berth's version, published in the member record */
  version?: string
}

export function defaultCapacity (): Capacity {
  return { cpu: availableParallelism(), memoryBytes: totalmem() }
}

const DATAGRAMS = new Set<number>([MSG.PING, MSG.PING_REQ, MSG.ACK, MSG.NACK, MSG.GOSSIP])
const META_INCARNATION = 'incarnation'

class Node implements ClusterNode {
  id: PeerId = ''
  readonly config: Readonly<ClusterConfig>
  private readonly init: ClusterNodeInit
  private readonly clock: Clock
  private readonly random: Random
  private readonly events = new EventEmitter()
  private transport: Transport | undefined
  private membership: Membership | undefined
  private st: ReplicatedState | undefined
  private running = false
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined
  private aeTimer: ReturnType<Clock['setTimeout']> | undefined
  private joinTimer: ReturnType<Clock['setTimeout']> | undefined
  private incQueue: Promise<unknown> = Promise.resolve()
  private readonly received: Record<string, number> = {}
  private readonly sent: Record<string, number> = {}
  private readonly dropped: DropCounters = { malformed: 0, oversized: 0, version: 0, unknownType: 0, unauthorized: 0, clockSkew: 0, wrongChannel: 0 }
  private readonly ae = { rounds: 0, failures: 0, pushed: 0, pulled: 0 }
  readonly kv: KvApi
  readonly state: StateApi

  constructor (init: ClusterNodeInit) {
    if (init.transport === undefined && init.libp2pInit === undefined) throw new TypeError('createClusterNode: give a transport or libp2pInit')
    this.init = init
    this.config = resolveConfig(init.profile ?? 'lan', init.config)
    this.clock = init.clock ?? systemClock()
    this.random = init.random ?? createRandom()
    this.transport = init.transport
    if (init.transport !== undefined) this.id = init.transport.localId
    this.events.setMaxListeners(0)
    const kvKey = (key: string): string => {
      if (typeof key !== 'string' || key.length === 0) throw new InvalidRecordError(`kv/${String(key)}`, 'a kv key is a non-empty string')
      return `kv/${key}`
    }
    this.kv = {
      set: async (key, value) => { await this.write(kvKey(key), value) },
      get: (key) => this.st?.get(kvKey(key))?.value,
      list: (prefix = '') => (this.st?.list(`kv/${prefix}`) ?? []).map(e => ({ key: e.key.slice(3), value: e.value })),
      delete: async (key) => { await this.write(kvKey(key), undefined) },
      watch: (prefix, cb) => {
        const st = this.st
        if (st === undefined) throw new ClusterNotStartedError('kv.watch')
        return st.watch(`kv/${prefix}`, e => { cb({ key: e.key.slice(3), value: e.value, deleted: e.deleted, writer: e.writer, version: e.version }) })
      }
    }
    this.state = {
      put: async (kind, id, record) => {
        if (record === undefined) throw new InvalidRecordError(`${kind}/${id}`, 'a record cannot be undefined; use delete')
        await this.write(`${kind}/${id}`, record)
      },
      delete: async (kind, id) => { await this.write(`${kind}/${id}`, undefined) },
      get: <T>(kind: string, id: string) => this.st?.get(`${kind}/${id}`) as StateEntry<T> | undefined,
      list: <T>(prefix: string) => (this.st?.list(prefix) ?? []) as Array<StateEntry<T>>,
      watch: <T>(prefix: string, cb: (e: WatchEvent<T>) => void) => {
        if (this.st === undefined) throw new ClusterNotStartedError('state.watch')
        return this.st.watch(prefix, cb as (e: WatchEvent) => void)
      }
    }
  }

  on<E extends keyof ClusterNodeEvents> (event: E, cb: (...args: ClusterNodeEvents[E]) => void): void {
    this.events.on(event, cb as (...a: unknown[]) => void)
  }

  off<E extends keyof ClusterNodeEvents> (event: E, cb: (...args: ClusterNodeEvents[E]) => void): void {
    this.events.off(event, cb as (...a: unknown[]) => void)
  }

  // ---- lifecycle: store → transport → membership → member record → anti-entropy → join --------

  async start (): Promise<void> {
    if (this.running) return
    if (this.starting !== undefined) return await this.starting
    this.starting = this.doStart().finally(() => { this.starting = undefined })
    await this.starting
  }

  private async doStart (): Promise<void> {
    if (this.stopping !== undefined) await this.stopping
    if (this.transport === undefined) {
      const { createLibp2pTransport } = await import('./libp2p/transport.ts')
      this.transport = await createLibp2pTransport(this.init.libp2pInit as import('./libp2p/transport.ts').Libp2pTransportInit)
    }
    const transport = this.transport
    this.id = transport.localId
    const cfg = this.config
    const st = new ReplicatedState({
      store: this.init.store, clock: this.clock, localId: this.id, buckets: cfg.antiEntropyBuckets,
      maxClockDriftMs: cfg.maxClockDriftMs, maxRecordBytes: cfg.maxRecordBytes, tombstoneGraveMs: cfg.tombstoneGraveMs
    })
    await st.load()
    // Rejoin after a restart with a higher incarnation than any we announced before.
    const meta = this.init.store.sublevel<unknown>('cluster-meta')
    const prev = await meta.get(META_INCARNATION)
    const incarnation = (typeof prev === 'number' ? prev : 0) + 1
    await this.init.store.write(tx => { tx.put(meta, META_INCARNATION, incarnation) })
    this.st = st
    this.membership = new Membership({
      config: cfg,
      clock: this.clock,
      random: this.random,
      localId: this.id,
      name: this.init.nodeName,
      addrs: () => transport.localAddrs(),
      incarnation,
      send: (to, m) => { this.send(to, m) },
      request: async (to, m) => await this.request(to, m),
      saveIncarnation: (n) => {
        this.incQueue = this.incQueue.then(async () => {
          await this.init.store.write(tx => { tx.put(meta, META_INCARNATION, n) })
        }).catch(err => { log('saving incarnation: %o', err) })
      },
      emit: (ev: MemberEventName, m: Member) => {
        if (ev === 'member:dead' || ev === 'member:left') transport.peerGone?.(m.id)
        this.events.emit(ev, m)
      },
      learnAddrs: (id, addrs) => { transport.addPeer(id, addrs) }
    })
    await transport.start({
      message: (from, data) => { this.onMessage(from, data) },
      broadcast: (from, data) => { this.onBroadcast(from, data) },
      request: async (from, data) => await this.onRequest(from, data),
      peer: (id) => { this.onPeer(id) },
      peerDown: (id) => { if (this.running) this.membership?.probeNow(id) }
    })
    this.running = true
    this.membership.start()
    await this.write(`member/${this.id}`, {
      name: this.init.nodeName,
      addrs: transport.localAddrs(),
      incarnation,
      labels: this.init.labels ?? {},
      capacity: this.init.capacity ?? defaultCapacity(),
      version: this.init.version ?? '0.1.0',
      startedAtMs: this.clock.now()
    } satisfies MemberRecord)
    this.scheduleAntiEntropy(this.random.int(cfg.antiEntropyIntervalMs))
    if (this.init.join !== undefined && this.init.join.length > 0) this.joinWithBackoff(this.init.join, cfg.joinRetryMinMs)
  }

  async stop (): Promise<void> {
    if (this.stopping !== undefined) return await this.stopping
    if (this.starting !== undefined) await this.starting.catch(() => {})
    if (!this.running) return
    this.stopping = (async () => {
      this.running = false
      if (this.aeTimer !== undefined) this.clock.clearTimeout(this.aeTimer)
      if (this.joinTimer !== undefined) this.clock.clearTimeout(this.joinTimer)
      this.membership?.stop()
      await this.transport?.stop()
      await this.st?.flush()
      await this.incQueue
    })().finally(() => { this.stopping = undefined })
    await this.stopping
  }

  async leave (): Promise<void> {
    if (!this.running || this.membership === undefined) return
    this.membership.leave()
    // memberlist waits for the leave broadcast to go out; a few gossip intervals is enough
    await new Promise<void>(resolve => this.clock.setTimeout(resolve, this.config.gossipIntervalMs * 3))
  }

  async join (addrs: string[], opts: { signal?: AbortSignal } = {}): Promise<number> {
    const transport = this.transport
    const membership = this.membership
    if (!this.running || transport === undefined || membership === undefined) throw new ClusterNotStartedError('join')
    const reasons: string[] = []
    let ok = 0
    await Promise.all(addrs.map(async addr => {
      try {
        const id = await transport.dial(addr, { timeoutMs: this.config.requestTimeoutMs, signal: opts.signal })
        if (id === this.id) throw new Error('that is this node')
        await membership.pushPull(id, true)
        ok++
        // pull the state now rather than at the next anti-entropy tick
        this.antiEntropy(id).catch(err => { log('anti-entropy after join with %s: %o', id, err) })
      } catch (err) {
        reasons.push(`${addr}: ${(err as Error).message}`)
      }
    }))
    if (ok === 0) throw new JoinError(addrs, reasons)
    return ok
  }

  private joinWithBackoff (addrs: string[], delayMs: number): void {
    this.join(addrs).then(n => {
      this.events.emit('join:ok', n)
    }, (err: unknown) => {
      if (!this.running) return
      log('join: %o', err)
      if (err instanceof JoinError) this.events.emit('join:error', err)
      const next = Math.min(delayMs * 2, this.config.joinRetryMaxMs)
      // jitter so a fleet restarted at once does not retry in lockstep
      this.joinTimer = this.clock.setTimeout(() => {
        if (this.running) this.joinWithBackoff(addrs, next)
      }, delayMs / 2 + this.random.int(Math.max(1, delayMs / 2)))
    })
  }

  // ---- writes --------------------------------------------------------------------------------

  private async write (key: string, value: unknown): Promise<void> {
    const st = this.st
    if (!this.running || st === undefined) throw new ClusterNotStartedError(`write ${key}`)
    const bad = checkKey(key)
    if (bad !== undefined) throw new WriteNotAllowedError(key, bad)
    if (value !== undefined) {
      const problem = checkWriter(key, this.id, value)
      if (problem !== undefined) throw new WriteNotAllowedError(key, problem)
    }
    const e = await st.write(key, value)
    if (e !== undefined) this.broadcastEntries([e])
  }

  private broadcastEntries (entries: WireEntry[]): void {
    if (!this.running || this.transport === undefined) return
    const m: Message = { type: MSG.DELTA, entries }
    this.count(this.sent, m.type)
    this.transport.broadcast(encode(m))
  }

  // ---- wire in/out ---------------------------------------------------------------------------

  private count (c: Record<string, number>, type: number): void {
    const name = MSG_NAMES[type] ?? String(type)
    c[name] = (c[name] ?? 0) + 1
  }

  private send (to: PeerId, m: Message): void {
    if (!this.running || this.transport === undefined) return
    this.count(this.sent, m.type)
    this.transport.send(to, encode(m))
  }

  private async request (to: PeerId, m: Message): Promise<Message> {
    const transport = this.transport
    if (!this.running || transport === undefined) throw new ClusterNotStartedError('request')
    this.count(this.sent, m.type)
    const res = await transport.request(to, encode(m), { timeoutMs: this.config.requestTimeoutMs })
    const r = this.decodeOrCount(res, this.config.maxRequestBytes)
    if (r === undefined) throw new Error(`bad answer from ${to}`)
    this.count(this.received, r.type)
    if (r.type === MSG.REFUSED) throw new Error(`${to} refused: ${r.reason}`)
    return r
  }

  private decodeOrCount (data: Uint8Array, maxBytes: number): Message | undefined {
    try {
      return decode(data, { maxBytes, maxRecordBytes: this.config.maxRecordBytes })
    } catch (err) {
      const reason = err instanceof WireError ? err.reason : 'malformed'
      this.dropped[reason]++
      log('dropped a message (%s): %s', reason, (err as Error).message)
      return undefined
    }
  }

  private onMessage (from: PeerId, data: Uint8Array): void {
    if (!this.running) return
    const m = this.decodeOrCount(data, this.config.maxMessageBytes)
    if (m === undefined) return
    if (!DATAGRAMS.has(m.type)) { this.dropped.wrongChannel++; return }
    this.count(this.received, m.type)
    this.membership?.handle(from, m)
  }

  private onBroadcast (from: PeerId, data: Uint8Array): void {
    if (!this.running || this.st === undefined) return
    const m = this.decodeOrCount(data, this.config.maxMessageBytes)
    if (m === undefined) return
    if (m.type !== MSG.DELTA) { this.dropped.wrongChannel++; return }
    this.count(this.received, m.type)
    // a delta is signed by its publisher: every entry in it must be the publisher's own write
    this.st.apply(m.entries, from, from).catch(err => { log('applying a delta from %s: %o', from, err) })
  }

  private async onRequest (from: PeerId, data: Uint8Array): Promise<Uint8Array> {
    const refuse = (reason: string): Uint8Array => encode({ type: MSG.REFUSED, reason })
    const st = this.st
    const membership = this.membership
    if (!this.running || st === undefined || membership === undefined) return refuse('not running')
    const m = this.decodeOrCount(data, this.config.maxRequestBytes)
    if (m === undefined) return refuse('bad request')
    this.count(this.received, m.type)
    let res: Message
    switch (m.type) {
      case MSG.PUSH_PULL:
        res = membership.handlePushPull(from, m)
        break
      case MSG.AE_DIGEST: {
        const differing = st.differingBuckets(m.buckets)
        st.ackEqualBuckets(from, new Set(differing))
        const { buckets, versions } = st.summary(differing, this.config.antiEntropyMaxEntries)
        res = { type: MSG.AE_SUMMARY, differing, covered: buckets, versions }
        break
      }
      case MSG.AE_SYNC: {
        const r = await st.apply(m.push, from)
        st.ackKeys(from, m.push.filter(e => e.value === undefined).map(e => e.key))
        res = { type: MSG.AE_ENTRIES, entries: st.entriesFor(m.pull), gone: r.gone }
        break
      }
      default:
        this.dropped.wrongChannel++
        return refuse(`not a request: ${MSG_NAMES[m.type] ?? m.type}`)
    }
    this.count(this.sent, res.type)
    return encode(res)
  }

  private onPeer (id: PeerId): void {
    // a peer we do not know yet connected or was discovered (mDNS): join through it
    if (!this.running || this.membership === undefined || id === this.id) return
    const m = this.membership.get(id)
    if (m !== undefined && (m.status === 'alive' || m.status === 'suspect')) return
    this.membership.pushPull(id, true).catch(err => { log('join via discovered peer %s: %o', id, err) })
  }

  // ---- anti-entropy --------------------------------------------------------------------------

  private scheduleAntiEntropy (delayMs: number): void {
    this.aeTimer = this.clock.setTimeout(() => {
      this.aeTimer = undefined
      if (!this.running) return
      this.scheduleAntiEntropy(this.config.antiEntropyIntervalMs)
      const membership = this.membership as Membership
      const [peer] = membership.pick(1, m => m.status === 'alive')
      const round = peer === undefined ? Promise.resolve() : this.antiEntropy(peer)
      round.catch(err => { this.ae.failures++; log('anti-entropy with %s: %o', peer, err) })
        .then(async () => { if (this.running) await this.st?.collect(membership.liveIds()) })
        .catch(err => { log('collecting tombstones: %o', err) })
    }, delayMs)
  }

  /**
   * One round, initiator side:
   *   1. → AE_DIGEST (our per-bucket hashes)
   *   2. ← AE_SUMMARY (which buckets differ, the peer's versions of those it could fit)
   *   3. → AE_SYNC (our newer entries: push; keys where theirs is newer: pull)
   *   4. ← AE_ENTRIES (the pulled entries; pushed tombstones it has already collected)
   */
  async antiEntropy (peer: PeerId): Promise<void> {
    const st = this.st
    if (!this.running || st === undefined) throw new ClusterNotStartedError('antiEntropy')
    this.ae.rounds++
    const r1 = await this.request(peer, { type: MSG.AE_DIGEST, buckets: st.bucketDigest() })
    if (r1.type !== MSG.AE_SUMMARY) throw new Error(`anti-entropy with ${peer}: unexpected ${MSG_NAMES[r1.type]}`)
    st.ackEqualBuckets(peer, new Set(r1.differing))
    if (r1.covered.length === 0) return
    const { push, pull } = st.compare(r1.covered, r1.versions, this.config.antiEntropyMaxEntries)
    if (push.length === 0 && pull.length === 0) return
    const r2 = await this.request(peer, { type: MSG.AE_SYNC, push, pull })
    if (r2.type !== MSG.AE_ENTRIES) throw new Error(`anti-entropy with ${peer}: unexpected ${MSG_NAMES[r2.type]}`)
    this.ae.pushed += push.length
    this.ae.pulled += r2.entries.length
    st.ackKeys(peer, push.filter(e => e.value === undefined).map(e => e.key))
    if (r2.entries.length > 0) await st.apply(r2.entries, peer)
    if (r2.gone.length > 0 && this.membership !== undefined) await st.collect(this.membership.liveIds(), r2.gone)
  }

  // ---- views ---------------------------------------------------------------------------------

  members (): MemberInfo[] {
    if (this.membership === undefined || this.st === undefined) return []
    const st = this.st
    return this.membership.list().map(m => {
      const rec = st.get(`member/${m.id}`)?.value as Partial<MemberRecord> | undefined
      return {
        id: m.id, name: m.name, addrs: m.addrs, status: m.status, incarnation: m.incarnation,
        labels: rec?.labels ?? {}, capacity: rec?.capacity, usage: rec?.usage, version: rec?.version, self: m.id === this.id
      }
    }).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1)
  }

  digest (): string {
    return this.st?.digest() ?? ''
  }

  stats (): ClusterStats {
    const st = this.st
    const mm = this.membership
    return {
      id: this.id,
      incarnation: mm?.incarnation() ?? 0,
      health: mm?.health() ?? 0,
      received: { ...this.received },
      sent: { ...this.sent },
      // unauthorized/clock-skewed entries are found inside messages, by the state: counted with the drops
      dropped: { ...this.dropped, unauthorized: this.dropped.unauthorized + (st?.counters.unauthorized ?? 0), clockSkew: this.dropped.clockSkew + (st?.counters.clockSkew ?? 0) },
      membership: { ...(mm?.counters ?? { probes: 0, indirectProbes: 0, failedProbes: 0, suspicionsRaised: 0, refutations: 0, pushPulls: 0 }), queuedUpdates: mm?.queued() ?? 0 },
      state: { ...(st?.counters ?? { unauthorized: 0, clockSkew: 0, invalidRecord: 0, tombstonesCollected: 0 }), ...(st?.size() ?? { live: 0, tombstones: 0, graveyard: 0 }) },
      antiEntropy: { ...this.ae }
    }
  }
}

/** A cluster node over a Transport (simulator, tests) or libp2p (libp2pInit). Call start(). */
export function createClusterNode (init: ClusterNodeInit): ClusterNode {
  return new Node(init)
}
