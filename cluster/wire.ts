// The wire layer: msgpackr-encoded envelopes `[schemaVersion, type, body]`, the message-type
// table, and thin decoders that validate everything (sizes, types, string and array lengths)
// before the state machines see it. A decoder throws WireError with the reason it is counted
// under; the caller drops the message. Nothing here touches the store.

import { Packr } from 'msgpackr'
import type { PeerId } from './types.ts'

/**
 * Schema version history (append only):
 *   1 — first: the message types below.
 * A node drops (and counts as `version`) any envelope whose version it does not know.
 */
export const WIRE_VERSION = 1

/**
 * Message types. Append only: the numbers are part of the protocol.
 *   datagrams (Transport.send): PING, PING_REQ, ACK, NACK, GOSSIP
 *   broadcast (gossipsub topic): DELTA
 *   requests (stream protocol, request → response): PUSH_PULL → PUSH_PULL,
 *     AE_DIGEST → AE_SUMMARY, AE_SYNC → AE_ENTRIES; any request may be answered by REFUSED
 */
export const MSG = Object.freeze({
  PING: 1,
  PING_REQ: 2,
  ACK: 3,
  NACK: 4,
  GOSSIP: 5,
  DELTA: 6,
  PUSH_PULL: 7,
  AE_DIGEST: 8,
  AE_SUMMARY: 9,
  AE_SYNC: 10,
  AE_ENTRIES: 11,
  REFUSED: 12
})
export type MsgType = typeof MSG[keyof typeof MSG]
export const MSG_NAMES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(Object.entries(MSG).map(([k, v]) => [v, k.toLowerCase()]))
)

/**
 * Member status numbers on the wire. Append only: the numbers are part of the protocol.
 */
export const STATUS = Object.freeze({ alive: 0, suspect: 1, dead: 2, left: 3 })
export type MemberStatus = keyof typeof STATUS
const STATUS_BY_NUM: readonly MemberStatus[] = ['alive', 'suspect', 'dead', 'left']

/** Limits a decoder enforces (beyond the byte limit checked before decoding). */
export const LIMITS = Object.freeze({
  idChars: 128,
  nameChars: 128,
  addrs: 16,
  addrChars: 256,
  updates: 64,
  members: 8192,
  keyChars: 512,
  entries: 10_000,
  buckets: 4096
})

/** A membership update (piggybacked gossip, push-pull state). */
export interface MemberUpdate {
  status: MemberStatus
  id: PeerId
  incarnation: number
  name: string
  addrs: string[]
  /** who said so (suspect/dead); the subject itself for alive/left */
  from: PeerId
}

/** A replicated-state entry as it travels: `value` is the msgpack of the record, absent for a tombstone. */
export interface WireEntry {
  key: string
  wallMs: number
  counter: number
  writer: PeerId
  value: Uint8Array | undefined
}

/** An entry's version without its value (anti-entropy summaries). */
export interface EntryVersion {
  key: string
  wallMs: number
  counter: number
  writer: PeerId
  deleted: boolean
}

export type Message =
  | { type: typeof MSG.PING; seq: number; target: PeerId; updates: MemberUpdate[] }
  | { type: typeof MSG.PING_REQ; seq: number; target: PeerId; addrs: string[]; updates: MemberUpdate[] }
  | { type: typeof MSG.ACK; seq: number; updates: MemberUpdate[] }
  | { type: typeof MSG.NACK; seq: number }
  | { type: typeof MSG.GOSSIP; updates: MemberUpdate[] }
  | { type: typeof MSG.DELTA; entries: WireEntry[] }
  | { type: typeof MSG.PUSH_PULL; join: boolean; members: MemberUpdate[] }
  | { type: typeof MSG.AE_DIGEST; buckets: Uint8Array }
  | { type: typeof MSG.AE_SUMMARY; differing: number[]; covered: number[]; versions: EntryVersion[] }
  | { type: typeof MSG.AE_SYNC; push: WireEntry[]; pull: string[] }
  | { type: typeof MSG.AE_ENTRIES; entries: WireEntry[]; gone: string[] }
  | { type: typeof MSG.REFUSED; reason: string }

export type DropReason = 'malformed' | 'oversized' | 'version' | 'unknownType' | 'unauthorized' | 'clockSkew'

export class WireError extends Error {
  readonly reason: DropReason
  constructor (reason: DropReason, message: string) {
    super(message)
    this.name = 'WireError'
    this.reason = reason
  }
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' })

export function packValue (value: unknown): Uint8Array {
  return packr.pack(value)
}

export function unpackValue (bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

// ---- encoding --------------------------------------------------------------------------------

const upd = (u: MemberUpdate): unknown[] => [STATUS[u.status], u.id, u.incarnation, u.name, u.addrs, u.from]
const ent = (e: WireEntry): unknown[] => [e.key, e.wallMs, e.counter, e.writer, e.value ?? null]

export function encode (m: Message): Uint8Array {
  let body: Record<string, unknown>
  switch (m.type) {
    case MSG.PING: body = { q: m.seq, t: m.target, g: m.updates.map(upd) }; break
    case MSG.PING_REQ: body = { q: m.seq, t: m.target, a: m.addrs, g: m.updates.map(upd) }; break
    case MSG.ACK: body = { q: m.seq, g: m.updates.map(upd) }; break
    case MSG.NACK: body = { q: m.seq }; break
    case MSG.GOSSIP: body = { g: m.updates.map(upd) }; break
    case MSG.DELTA: body = { e: m.entries.map(ent) }; break
    case MSG.PUSH_PULL: body = { j: m.join, m: m.members.map(upd) }; break
    case MSG.AE_DIGEST: body = { b: m.buckets }; break
    case MSG.AE_SUMMARY: body = { d: m.differing, c: m.covered, s: m.versions.map(v => [v.key, v.wallMs, v.counter, v.writer, v.deleted]) }; break
    case MSG.AE_SYNC: body = { p: m.push.map(ent), k: m.pull }; break
    case MSG.AE_ENTRIES: body = { e: m.entries.map(ent), x: m.gone }; break
    case MSG.REFUSED: body = { r: m.reason }; break
  }
  return packr.pack([WIRE_VERSION, m.type, body])
}

// ---- decoding --------------------------------------------------------------------------------

function fail (what: string): never {
  throw new WireError('malformed', what)
}

function isObj (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)
}

function str (x: unknown, max: number, what: string, allowEmpty = false): string {
  if (typeof x !== 'string' || x.length > max || (!allowEmpty && x.length === 0)) fail(`${what}: expected a string of 1..${max} chars`)
  return x
}

function uint (x: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > max) fail(`${what}: expected an integer 0..${max}`)
  return x
}

function arr (x: unknown, max: number, what: string): unknown[] {
  if (!Array.isArray(x)) fail(`${what}: expected an array`)
  if (x.length > max) throw new WireError('oversized', `${what}: ${x.length} items, at most ${max}`)
  return x
}

function bytes (x: unknown, max: number, what: string): Uint8Array {
  if (!(x instanceof Uint8Array)) fail(`${what}: expected bytes`)
  if (x.length > max) throw new WireError('oversized', `${what}: ${x.length} bytes, at most ${max}`)
  return x
}

function decodeUpdate (x: unknown): MemberUpdate {
  const a = arr(x, 6, 'update')
  if (a.length !== 6) fail('update: expected 6 fields')
  const st = uint(a[0], 'update.status', 255)
  const status = STATUS_BY_NUM[st]
  if (status === undefined) fail(`update.status: unknown ${st}`)
  return {
    status,
    id: str(a[1], LIMITS.idChars, 'update.id'),
    incarnation: uint(a[2], 'update.incarnation', 0xffffffff),
    name: str(a[3], LIMITS.nameChars, 'update.name', true),
    addrs: arr(a[4], LIMITS.addrs, 'update.addrs').map(s => str(s, LIMITS.addrChars, 'update.addr')),
    from: str(a[5], LIMITS.idChars, 'update.from')
  }
}

function decodeEntry (x: unknown, maxRecordBytes: number): WireEntry {
  const a = arr(x, 5, 'entry')
  if (a.length !== 5) fail('entry: expected 5 fields')
  return {
    key: str(a[0], LIMITS.keyChars, 'entry.key'),
    wallMs: uint(a[1], 'entry.wallMs'),
    counter: uint(a[2], 'entry.counter', 0xffffffff),
    writer: str(a[3], LIMITS.idChars, 'entry.writer'),
    value: a[4] === null ? undefined : bytes(a[4], maxRecordBytes, 'entry.value')
  }
}

export interface DecodeLimits {
  maxBytes: number
  maxRecordBytes: number
}

/** Decodes and validates one envelope; throws WireError (never anything else) on bad input. */
export function decode (data: Uint8Array, limits: DecodeLimits): Message {
  if (!(data instanceof Uint8Array)) throw new WireError('malformed', 'not bytes')
  if (data.length > limits.maxBytes) throw new WireError('oversized', `${data.length} bytes, at most ${limits.maxBytes}`)
  let env: unknown
  try {
    env = packr.unpack(data)
  } catch (err) {
    throw new WireError('malformed', `cannot decode: ${(err as Error).message}`)
  }
  if (!Array.isArray(env) || env.length !== 3) fail('envelope: expected [version, type, body]')
  const [version, type, body] = env as [unknown, unknown, unknown]
  if (version !== WIRE_VERSION) throw new WireError('version', `schema version ${String(version)}, this node speaks ${WIRE_VERSION}`)
  if (!isObj(body)) fail('body: expected a map')
  const updates = (): MemberUpdate[] => arr(body.g ?? [], LIMITS.updates, 'updates').map(decodeUpdate)
  const entries = (x: unknown): WireEntry[] => arr(x, LIMITS.entries, 'entries').map(e => decodeEntry(e, limits.maxRecordBytes))
  const keys = (x: unknown): string[] => arr(x, LIMITS.entries, 'keys').map(k => str(k, LIMITS.keyChars, 'key'))
  switch (type) {
    case MSG.PING: return { type, seq: uint(body.q, 'seq'), target: str(body.t, LIMITS.idChars, 'target'), updates: updates() }
    case MSG.PING_REQ: return {
      type,
      seq: uint(body.q, 'seq'),
      target: str(body.t, LIMITS.idChars, 'target'),
      addrs: arr(body.a, LIMITS.addrs, 'addrs').map(s => str(s, LIMITS.addrChars, 'addr')),
      updates: updates()
    }
    case MSG.ACK: return { type, seq: uint(body.q, 'seq'), updates: updates() }
    case MSG.NACK: return { type, seq: uint(body.q, 'seq') }
    case MSG.GOSSIP: return { type, updates: updates() }
    case MSG.DELTA: return { type, entries: entries(body.e) }
    case MSG.PUSH_PULL: {
      if (typeof body.j !== 'boolean') fail('join: expected a boolean')
      return { type, join: body.j, members: arr(body.m, LIMITS.members, 'members').map(decodeUpdate) }
    }
    case MSG.AE_DIGEST: return { type, buckets: bytes(body.b, LIMITS.buckets * 8, 'buckets') }
    case MSG.AE_SUMMARY: return {
      type,
      differing: arr(body.d, LIMITS.buckets, 'differing').map(b => uint(b, 'bucket', LIMITS.buckets)),
      covered: arr(body.c, LIMITS.buckets, 'covered').map(b => uint(b, 'bucket', LIMITS.buckets)),
      versions: arr(body.s, LIMITS.entries, 'summary').map(x => {
        const a = arr(x, 5, 'version')
        if (a.length !== 5 || typeof a[4] !== 'boolean') fail('version: expected [key, wallMs, counter, writer, deleted]')
        return {
          key: str(a[0], LIMITS.keyChars, 'version.key'),
          wallMs: uint(a[1], 'version.wallMs'),
          counter: uint(a[2], 'version.counter', 0xffffffff),
          writer: str(a[3], LIMITS.idChars, 'version.writer'),
          deleted: a[4]
        }
      })
    }
    case MSG.AE_SYNC: return { type, push: entries(body.p), pull: keys(body.k) }
    case MSG.AE_ENTRIES: return { type, entries: entries(body.e), gone: keys(body.x) }
    case MSG.REFUSED: return { type, reason: str(body.r, 256, 'reason', true) }
    default: throw new WireError('unknownType', `message type ${String(type)}`)
  }
}
