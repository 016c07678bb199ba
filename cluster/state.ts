// The replicated state: a last-writer-wins map `kind/id → record` with HLC versions and the
// writer's id as tie-break, tombstones for deletes, incremental digests for anti-entropy.
//
// Every change (local write, remote delta, anti-entropy repair, tombstone collection) runs in one
// serial queue: it decides against the in-memory map, writes all its entries plus the HLC
// high-water mark in ONE store batch, and only then applies them in memory and tells watchers.
// So the store is never behind what a peer was told, and a restart never goes back in time.

import type { Table, Transaction } from '../storage/index.ts'
import { compareVersions, Hlc } from './hlc.ts'
import type { HlcVersion, Versioned } from './hlc.ts'
import { hash64, hex32 } from './hash.ts'
import { checkWriter } from './rules.ts'
import { packValue, unpackValue } from './wire.ts'
import { InvalidRecordError, WriteNotAllowedError } from './errors.ts'
import type { EntryVersion, WireEntry } from './wire.ts'
import type { Clock, PeerId } from './types.ts'

/** What the cluster needs of the node's Store (storage/): a typed sublevel and atomic batches. */
export interface ClusterStore {
  sublevel: <T>(name: string) => Table<T>
  write: (fn: (tx: Transaction) => void | Promise<void>) => Promise<void>
}

/** An entry as persisted in the `cluster-state` sublevel (key = the entry's key). */
interface StoredEntry {
  w: number
  c: number
  by: string
  /** msgpack of the record; absent for a tombstone */
  v?: Uint8Array
}

export interface StateEntry<T = unknown> {
  key: string
  value: T
  version: HlcVersion
  writer: PeerId
}

export interface WatchEvent<T = unknown> {
  key: string
  /** undefined when deleted */
  value: T | undefined
  deleted: boolean
  version: HlcVersion
  writer: PeerId
}

interface Entry extends Versioned {
  key: string
  value: unknown
  bytes: Uint8Array | undefined
  deleted: boolean
  bucket: number
  h0: number
  h1: number
  /** tombstones only: members known to hold this tombstone (or something newer) */
  acks: Set<PeerId> | undefined
}

export interface ApplyResult {
  applied: number
  stale: number
  rejected: number
  /** keys of incoming tombstones this node has already collected */
  gone: string[]
}

export interface StateCounters {
  unauthorized: number
  clockSkew: number
  invalidRecord: number
  tombstonesCollected: number
}

const META_HLC = 'hlc'

export class ReplicatedState {
  readonly localId: PeerId
  readonly hlc: Hlc
  readonly clock: Clock
  private readonly table: Table<StoredEntry>
  private readonly meta: Table<unknown>
  private readonly store: ClusterStore
  private readonly entries = new Map<string, Entry>()
  private readonly tombstones = new Set<string>()
  /** keys by anti-entropy bucket */
  private readonly bucketKeys: Array<Set<string>>
  /** collected tombstones: key → version and when to forget it */
  private readonly graveyard = new Map<string, Versioned & { untilMs: number }>()
  private readonly buckets: Uint32Array
  readonly bucketCount: number
  private liveH0 = 0
  private liveH1 = 0
  private liveCount = 0
  private queue: Promise<unknown> = Promise.resolve()
  private readonly watchers = new Set<{ prefix: string; cb: (e: WatchEvent) => void }>()
  readonly maxClockDriftMs: number
  readonly maxRecordBytes: number
  readonly tombstoneGraveMs: number
  readonly counters: StateCounters = { unauthorized: 0, clockSkew: 0, invalidRecord: 0, tombstonesCollected: 0 }

  constructor (init: { store: ClusterStore; clock: Clock; localId: PeerId; buckets: number; maxClockDriftMs: number; maxRecordBytes: number; tombstoneGraveMs: number }) {
    this.store = init.store
    this.clock = init.clock
    this.localId = init.localId
    this.table = init.store.sublevel<StoredEntry>('cluster-state')
    this.meta = init.store.sublevel<unknown>('cluster-meta')
    this.bucketCount = init.buckets
    this.buckets = new Uint32Array(init.buckets * 2)
    this.bucketKeys = Array.from({ length: init.buckets }, () => new Set<string>())
    this.maxClockDriftMs = init.maxClockDriftMs
    this.maxRecordBytes = init.maxRecordBytes
    this.tombstoneGraveMs = init.tombstoneGraveMs
    this.hlc = new Hlc(init.clock)
  }

  /** loads persisted entries and the HLC high-water mark */
  async load (): Promise<void> {
    const hwm = await this.meta.get(META_HLC) as HlcVersion | undefined
    if (hwm !== undefined) this.hlc.observe(hwm)
    const { entries } = await this.table.list()
    for (const { key, value: s } of entries) {
      let value: unknown
      try {
        value = s.v === undefined ? undefined : unpackValue(s.v)
      } catch {
        continue
      }
      const e = this.makeEntry(key, s.w, s.c, s.by, value, s.v)
      this.setEntry(e)
      this.hlc.observe(e)
    }
  }

  private makeEntry (key: string, wallMs: number, counter: number, writer: string, value: unknown, bytes: Uint8Array | undefined): Entry {
    const deleted = bytes === undefined
    const [k0] = hash64(key)
    const [h0, h1] = hash64(`${key}\0${wallMs}\0${counter}\0${writer}\0${deleted ? 1 : 0}`)
    return {
      key, wallMs, counter, writer, value: deleted ? undefined : value, bytes, deleted,
      bucket: k0 % this.bucketCount, h0, h1, acks: deleted ? new Set([this.localId, writer]) : undefined
    }
  }

  private setEntry (e: Entry): void {
    const old = this.entries.get(e.key)
    if (old !== undefined) this.unhash(old)
    this.entries.set(e.key, e)
    ;(this.bucketKeys[e.bucket] as Set<string>).add(e.key)
    this.buckets[e.bucket * 2] ^= e.h0
    this.buckets[e.bucket * 2 + 1] ^= e.h1
    if (e.deleted) {
      this.tombstones.add(e.key)
    } else {
      this.liveH0 ^= e.h0; this.liveH1 ^= e.h1; this.liveCount++
    }
  }

  private unhash (old: Entry): void {
    this.buckets[old.bucket * 2] ^= old.h0
    this.buckets[old.bucket * 2 + 1] ^= old.h1
    if (old.deleted) {
      this.tombstones.delete(old.key)
    } else {
      this.liveH0 ^= old.h0; this.liveH1 ^= old.h1; this.liveCount--
    }
  }

  private serial<R> (fn: () => Promise<R>): Promise<R> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  /** waits for every queued change to be persisted and applied */
  async flush (): Promise<void> {
    await this.serial(async () => {})
  }

  // ---- local writes --------------------------------------------------------------------------

  /** Writes (value) or deletes (undefined) a key as this node; resolves to the wire entry to broadcast, or undefined for a no-op delete. */
  async write (key: string, value: unknown): Promise<WireEntry | undefined> {
    let bytes: Uint8Array | undefined
    if (value !== undefined) {
      bytes = packValue(value)
      if (bytes.length > this.maxRecordBytes) throw new InvalidRecordError(key, `${bytes.length} bytes, at most ${this.maxRecordBytes}`)
      value = unpackValue(bytes) // the stored copy is what peers will see: no shared mutable object
      const bad = checkRecord(value)
      if (bad !== undefined) throw new InvalidRecordError(key, bad)
    }
    return await this.serial(async () => {
      const current = this.entries.get(key)
      if (value === undefined && (current === undefined || current.deleted)) return undefined
      const problem = checkWriter(key, this.localId, value, current)
      if (problem !== undefined) throw new WriteNotAllowedError(key, problem)
      const v = this.hlc.now()
      const e = this.makeEntry(key, v.wallMs, v.counter, this.localId, value, bytes)
      await this.persist([e], [])
      this.setEntry(e)
      this.notify(e)
      return toWire(e)
    })
  }

  // ---- remote entries ------------------------------------------------------------------------

  /**
   * Applies entries from a peer. `signer` is set for broadcast deltas: every entry must then be
   * written by the signer. `via` is the peer that sent them (it holds them: a tombstone ack).
   */
  async apply (incoming: WireEntry[], via: PeerId, signer?: PeerId): Promise<ApplyResult> {
    return await this.serial(async () => {
      const res: ApplyResult = { applied: 0, stale: 0, rejected: 0, gone: [] }
      const now = this.clock.now()
      const winners = new Map<string, Entry>()
      for (const w of incoming) {
        if (signer !== undefined && w.writer !== signer) { this.counters.unauthorized++; res.rejected++; continue }
        if (w.wallMs > now + this.maxClockDriftMs) { this.counters.clockSkew++; res.rejected++; continue }
        const current = winners.get(w.key) ?? this.entries.get(w.key)
        if (current !== undefined && compareVersions(w, current) <= 0) {
          if (current.deleted && compareVersions(w, current) === 0) current.acks?.add(via)
          res.stale++
          continue
        }
        const grave = this.graveyard.get(w.key)
        if (current === undefined && grave !== undefined && compareVersions(w, grave) <= 0) {
          res.gone.push(w.key)
          continue
        }
        let value: unknown
        if (w.value !== undefined) {
          try {
            value = unpackValue(w.value)
          } catch {
            value = undefined
          }
          if (checkRecord(value) !== undefined) { this.counters.invalidRecord++; res.rejected++; continue }
        }
        const problem = checkWriter(w.key, w.writer, value, current)
        if (problem !== undefined) { this.counters.unauthorized++; res.rejected++; continue }
        const e = this.makeEntry(w.key, w.wallMs, w.counter, w.writer, value, w.value)
        e.acks?.add(via)
        winners.set(w.key, e)
      }
      if (winners.size === 0) return res
      const list = [...winners.values()]
      for (const e of list) this.hlc.observe(e)
      await this.persist(list, [])
      for (const e of list) {
        // the serial queue guarantees nothing newer arrived in between
        this.graveyard.delete(e.key)
        this.setEntry(e)
        this.notify(e)
      }
      res.applied = list.length
      return res
    })
  }

  private async persist (puts: Entry[], dels: string[]): Promise<void> {
    const hlc = this.hlc.current()
    await this.store.write(tx => {
      for (const e of puts) {
        const s: StoredEntry = { w: e.wallMs, c: e.counter, by: e.writer }
        if (e.bytes !== undefined) s.v = e.bytes
        tx.put(this.table, e.key, s)
      }
      for (const k of dels) tx.del(this.table, k)
      tx.put(this.meta, META_HLC, hlc)
    })
  }

  private notify (e: Entry): void {
    if (this.watchers.size === 0) return
    const ev: WatchEvent = { key: e.key, value: e.value, deleted: e.deleted, version: { wallMs: e.wallMs, counter: e.counter }, writer: e.writer }
    for (const w of this.watchers) {
      if (!e.key.startsWith(w.prefix)) continue
      try { w.cb(ev) } catch { /* a watcher's bug is not the state's */ }
    }
  }

  // ---- reads ---------------------------------------------------------------------------------

  get (key: string): StateEntry | undefined {
    const e = this.entries.get(key)
    if (e === undefined || e.deleted) return undefined
    return { key, value: e.value, version: { wallMs: e.wallMs, counter: e.counter }, writer: e.writer }
  }

  list (prefix = ''): StateEntry[] {
    const out: StateEntry[] = []
    for (const e of this.entries.values()) {
      if (!e.deleted && e.key.startsWith(prefix)) out.push({ key: e.key, value: e.value, version: { wallMs: e.wallMs, counter: e.counter }, writer: e.writer })
    }
    return out.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  }

  watch (prefix: string, cb: (e: WatchEvent) => void): () => void {
    const w = { prefix, cb }
    this.watchers.add(w)
    return () => { this.watchers.delete(w) }
  }

  /** a hash of every live (non-deleted) entry's key, version and writer; equal digests = same live state */
  digest (): string {
    return `${hex32(this.liveH0)}${hex32(this.liveH1)}-${this.liveCount}`
  }

  size (): { live: number; tombstones: number; graveyard: number } {
    return { live: this.liveCount, tombstones: this.tombstones.size, graveyard: this.graveyard.size }
  }

  // ---- anti-entropy --------------------------------------------------------------------------

  /** per-bucket XOR of entry hashes (tombstones included), 8 bytes a bucket */
  bucketDigest (): Uint8Array {
    return new Uint8Array(this.buckets.buffer.slice(0))
  }

  /** buckets whose hash differs from `remote` (all of them if the bucket counts differ) */
  differingBuckets (remote: Uint8Array): number[] {
    const out: number[] = []
    const mine = new Uint8Array(this.buckets.buffer)
    const same = remote.length === mine.length
    for (let b = 0; b < this.bucketCount; b++) {
      if (!same) { out.push(b); continue }
      for (let i = b * 8; i < b * 8 + 8; i++) {
        if (mine[i] !== remote[i]) { out.push(b); break }
      }
    }
    return out
  }

  /** versions of the entries in `buckets`, at most `max`; and the buckets fully covered */
  summary (buckets: number[], max: number): { buckets: number[]; versions: EntryVersion[] } {
    const covered: number[] = []
    const versions: EntryVersion[] = []
    for (const b of buckets) {
      const keys = this.bucketKeys[b]
      if (keys === undefined) continue
      if (versions.length + keys.size > max && covered.length > 0) break
      covered.push(b)
      for (const k of keys) {
        const e = this.entries.get(k) as Entry
        versions.push({ key: e.key, wallMs: e.wallMs, counter: e.counter, writer: e.writer, deleted: e.deleted })
      }
    }
    return { buckets: covered, versions }
  }

  /** given the peer's versions of `buckets`: what to push to it and what to pull from it */
  compare (buckets: number[], theirs: EntryVersion[], max: number): { push: WireEntry[]; pull: string[] } {
    const want = new Set(buckets)
    const theirMap = new Map<string, EntryVersion>()
    for (const v of theirs) if (want.has(bucketOf(v.key, this.bucketCount))) theirMap.set(v.key, v)
    const push: WireEntry[] = []
    const pull: string[] = []
    for (const b of want) {
      for (const k of this.bucketKeys[b] ?? []) {
      const e = this.entries.get(k) as Entry
      const t = theirMap.get(e.key)
      if ((t === undefined || compareVersions(e, t) > 0) && push.length < max) push.push(toWire(e))
      }
    }
    for (const t of theirMap.values()) {
      const e = this.entries.get(t.key)
      if (e === undefined || compareVersions(t, e) > 0) {
        if (e === undefined && t.deleted) {
          const g = this.graveyard.get(t.key)
          if (g !== undefined && compareVersions(t, g) <= 0) continue
        }
        if (pull.length < max) pull.push(t.key)
      }
    }
    return { push, pull }
  }

  entriesFor (keys: string[]): WireEntry[] {
    const out: WireEntry[] = []
    for (const k of keys) {
      const e = this.entries.get(k)
      if (e !== undefined) out.push(toWire(e))
    }
    return out
  }

  /** `peer` holds every tombstone in the buckets where its digest equals ours (all but `differing`) */
  ackEqualBuckets (peer: PeerId, differing: ReadonlySet<number>): void {
    if (this.tombstones.size === 0) return
    for (const k of this.tombstones) {
      const e = this.entries.get(k) as Entry
      if (!differing.has(e.bucket)) e.acks?.add(peer)
    }
  }

  /** `peer` holds these tombstones (it was sent them and applied them, or had them) */
  ackKeys (peer: PeerId, keys: Iterable<string>): void {
    for (const k of keys) {
      const e = this.entries.get(k)
      if (e?.deleted === true) e.acks?.add(peer)
    }
  }

  /**
   * Collects tombstones every live member has acknowledged (and `gone` ones a peer has already
   * collected: that peer saw every live member's ack). One batch for all of them.
   */
  async collect (live: ReadonlySet<PeerId>, gone: string[] = []): Promise<number> {
    return await this.serial(async () => {
      const now = this.clock.now()
      for (const [k, g] of this.graveyard) if (g.untilMs <= now) this.graveyard.delete(k)
      const goneSet = new Set(gone)
      const victims: Entry[] = []
      for (const k of this.tombstones) {
        const e = this.entries.get(k) as Entry
        let all = goneSet.has(k)
        if (!all) {
          all = true
          for (const m of live) if (!(e.acks as Set<PeerId>).has(m)) { all = false; break }
        }
        if (all) victims.push(e)
      }
      if (victims.length === 0) return 0
      await this.persist([], victims.map(e => e.key))
      for (const e of victims) {
        this.unhash(e)
        this.entries.delete(e.key)
        this.bucketKeys[e.bucket]?.delete(e.key)
        this.graveyard.set(e.key, { wallMs: e.wallMs, counter: e.counter, writer: e.writer, untilMs: now + this.tombstoneGraveMs })
      }
      this.counters.tombstonesCollected += victims.length
      return victims.length
    })
  }
}

const MAX_DEPTH = 16

/** Why a decoded record is not plain data (null, booleans, finite numbers, strings, bytes, arrays, plain maps), or undefined. */
export function checkRecord (value: unknown, depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH}`
  if (value === null || typeof value === 'boolean' || typeof value === 'string' || value instanceof Uint8Array) return undefined
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : 'a non-finite number'
  if (Array.isArray(value)) {
    for (const v of value) { const bad = checkRecord(v, depth + 1); if (bad !== undefined) return bad }
    return undefined
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const k in value) { const bad = checkRecord((value as Record<string, unknown>)[k], depth + 1); if (bad !== undefined) return bad }
    return undefined
  }
  return `not plain data (${value === undefined ? 'undefined' : typeof value})`
}

function toWire (e: Entry): WireEntry {
  return { key: e.key, wallMs: e.wallMs, counter: e.counter, writer: e.writer, value: e.bytes }
}

export function bucketOf (key: string, buckets: number): number {
  return hash64(key)[0] % buckets
}
