// The node's durable state: one LevelDB (`level`) with typed sublevels.
//
// Values are msgpackr-encoded (valueEncoding 'view'), keys are utf8. Every read is validated:
// `get` of a corrupt record throws StoreCorruptRecordError naming its key; listings skip
// corrupt records and report them (key + reason) instead of failing as a whole.
//
// Crash safety: every multi-record change goes through ONE `db.batch()` call, and LevelDB
// applies a batch atomically (it is one record in the write-ahead log; a torn tail record is
// dropped on recovery). So a crash at any point leaves either all of a change or none of it,
// and the daemon starts from that state. The schema version is written in the same batch as
// the migration it completes, so a crashed migration simply runs again.

import { debuglog } from 'node:util'
import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import { Packr } from 'msgpackr'
import {
  AbortError, NameInUseError, StoreClosedError, StoreCorruptRecordError, StoreError,
  StoreInvalidRecordError, StoreLockedError, StoreSchemaError
} from './errors.ts'
import {
  validateAny, validateContainerRecord, validateImageRecord, validateString
} from './records.ts'
import type { ContainerRecord, ImageRecord, Validator } from './records.ts'

const log = debuglog('berth:storage:store')

/**
 * Version history (append only):
 *   1 — first: sublevels containers, names, images, meta.
 */
export const STORE_SCHEMA_VERSION = 1

const META_SCHEMA_KEY = 'schema'

/** Sublevel names the store itself defines; `sublevel()` refuses them. */
const BUILTIN_SUBLEVELS = ['containers', 'names', 'images', 'meta'] as const
const SUBLEVEL_NAME = /^[a-z][a-z0-9-]{0,63}$/

export interface OpenStoreInit {
  /** directory of the LevelDB, e.g. `<data-dir>/store` (made if missing) */
  path: string
  signal?: AbortSignal
}

export interface StoreEntry<T> { key: string; value: T }
export interface CorruptRecord { sublevel: string; key: string; reason: string }
export interface ListResult<T> {
  entries: Array<StoreEntry<T>>
  /** records that could not be decoded or failed validation; not in `entries` */
  skipped: CorruptRecord[]
}
export interface ListOptions {
  /** only keys starting with this */
  prefix?: string
  gte?: string
  lt?: string
  limit?: number
  reverse?: boolean
}

/** One sublevel: a typed key → record map. */
export interface Table<T> {
  readonly name: string
  /** undefined if absent; throws StoreCorruptRecordError if present but corrupt */
  get (key: string): Promise<T | undefined>
  has (key: string): Promise<boolean>
  put (key: string, value: T): Promise<void>
  del (key: string): Promise<void>
  list (opts?: ListOptions): Promise<ListResult<T>>
  keys (opts?: ListOptions): Promise<string[]>
}

export interface SublevelOptions<T> {
  /** checked on every write and read; default: accept anything msgpackr decodes */
  validate?: Validator
  /** only for typing; never read */
  _type?: T
}

export interface BuiltinSublevels {
  containers: ContainerRecord
  names: string
  images: ImageRecord
  meta: unknown
}

export type BatchOp =
  | { [K in keyof BuiltinSublevels]: { type: 'put'; sublevel: K; key: string; value: BuiltinSublevels[K] } }[keyof BuiltinSublevels]
  | { type: 'del'; sublevel: keyof BuiltinSublevels; key: string }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | { type: 'put'; sublevel: Table<any>; key: string; value: unknown }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | { type: 'del'; sublevel: Table<any>; key: string }

/** Collects operations for one atomic `db.batch()`. */
export interface Transaction {
  put<T> (table: Table<T>, key: string, value: T): Transaction
  del<T> (table: Table<T>, key: string): Transaction
}

export interface StoreStats {
  /** corrupt records met by reads since open */
  corruptRecords: number
}

export interface Store {
  readonly path: string
  /** the schema version of the data on disk (after migration) */
  readonly schemaVersion: number
  readonly containers: Table<ContainerRecord>
  /** container name → id; the index that keeps names unique */
  readonly names: Table<string>
  readonly images: Table<ImageRecord>
  readonly meta: Table<unknown>
  /** a sublevel for a later layer (cluster state, endpoints, chaos rules…); same name → same table */
  sublevel<T> (name: string, opts?: SublevelOptions<T>): Table<T>
  /** all operations in one atomic `db.batch()` */
  batch (ops: BatchOp[]): Promise<void>
  /** build a batch fluently; it is written atomically when `fn` returns */
  write (fn: (tx: Transaction) => void | Promise<void>): Promise<void>
  /** writes the container and its name index in one batch; NameInUseError if the name is taken by another id */
  putContainer (record: ContainerRecord): Promise<void>
  /** deletes the container and its name index in one batch; no-op if absent */
  deleteContainer (id: string): Promise<void>
  containerByName (name: string): Promise<ContainerRecord | undefined>
  stats (): StoreStats
  /** safe to call twice */
  close (): Promise<void>
}

type Sub = ReturnType<Level<string, Uint8Array>['sublevel']>

// Self-describing encoding: no shared record structures, so any record decodes on its own.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

class LevelTable<T> implements Table<T> {
  readonly name: string
  readonly sub: Sub
  readonly validate: Validator
  readonly onCorrupt: (c: CorruptRecord) => void

  constructor (name: string, sub: Sub, validate: Validator, onCorrupt: (c: CorruptRecord) => void) {
    this.name = name
    this.sub = sub
    this.validate = validate
    this.onCorrupt = onCorrupt
  }

  encode (key: string, value: unknown): Uint8Array {
    const problem = this.validate(value)
    if (problem !== undefined) throw new StoreInvalidRecordError(this.name, key, problem)
    return packr.pack(value)
  }

  decode (key: string, bytes: Uint8Array): { value: T } | { reason: string } {
    let value: unknown
    try {
      value = packr.unpack(bytes)
    } catch (err) {
      return { reason: `cannot decode: ${(err as Error).message}` }
    }
    const problem = this.validate(value)
    if (problem !== undefined) return { reason: problem }
    return { value: value as T }
  }

  async get (key: string): Promise<T | undefined> {
    const bytes = await this.sub.get(key) as Uint8Array | undefined
    if (bytes === undefined) return undefined
    const d = this.decode(key, bytes)
    if ('reason' in d) {
      this.onCorrupt({ sublevel: this.name, key, reason: d.reason })
      throw new StoreCorruptRecordError(this.name, key, d.reason)
    }
    return d.value
  }

  async has (key: string): Promise<boolean> {
    return (await this.sub.get(key)) !== undefined
  }

  async put (key: string, value: T): Promise<void> {
    await this.sub.put(key, this.encode(key, value) as never)
  }

  async del (key: string): Promise<void> {
    await this.sub.del(key)
  }

  async list (opts: ListOptions = {}): Promise<ListResult<T>> {
    const entries: Array<StoreEntry<T>> = []
    const skipped: CorruptRecord[] = []
    for await (const [key, bytes] of this.sub.iterator(rangeOf(opts)) as AsyncIterable<[string, Uint8Array]>) {
      const d = this.decode(key, bytes)
      if ('reason' in d) {
        const c = { sublevel: this.name, key, reason: d.reason }
        this.onCorrupt(c)
        skipped.push(c)
      } else {
        entries.push({ key, value: d.value })
      }
    }
    return { entries, skipped }
  }

  async keys (opts: ListOptions = {}): Promise<string[]> {
    return await this.sub.keys(rangeOf(opts)).all() as string[]
  }
}

function rangeOf (opts: ListOptions): Record<string, unknown> {
  const r: Record<string, unknown> = {}
  if (opts.prefix !== undefined && opts.prefix !== '') {
    r.gte = opts.prefix
    r.lt = opts.prefix + '\uffff'
  }
  if (opts.gte !== undefined) r.gte = opts.gte
  if (opts.lt !== undefined) r.lt = opts.lt
  if (opts.limit !== undefined) r.limit = opts.limit
  if (opts.reverse !== undefined) r.reverse = opts.reverse
  return r
}

class LevelStore implements Store {
  readonly path: string
  schemaVersion = 0
  readonly db: Level<string, Uint8Array>
  readonly containers: LevelTable<ContainerRecord>
  readonly names: LevelTable<string>
  readonly images: LevelTable<ImageRecord>
  readonly meta: LevelTable<unknown>
  readonly tables = new Map<string, LevelTable<unknown>>()
  corruptRecords = 0
  closed = false
  /** serializes putContainer/deleteContainer: level has no compare-and-set */
  containerLock: Promise<unknown> = Promise.resolve()

  constructor (path: string) {
    this.path = path
    this.db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.containers = this.table('containers', validateContainerRecord)
    this.names = this.table('names', validateString)
    this.images = this.table('images', validateImageRecord)
    this.meta = this.table('meta', validateAny)
  }

  private table<T> (name: string, validate: Validator): LevelTable<T> {
    const sub = this.db.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as Sub
    const t = new LevelTable<T>(name, sub, validate, (c) => {
      this.corruptRecords++
      log('corrupt record %s/%s: %s', c.sublevel, c.key, c.reason)
    })
    this.tables.set(name, t as LevelTable<unknown>)
    return t
  }

  sublevel<T> (name: string, opts: SublevelOptions<T> = {}): Table<T> {
    if (!SUBLEVEL_NAME.test(name)) throw new StoreError(`invalid sublevel name ${JSON.stringify(name)}`, { hint: 'use [a-z][a-z0-9-]*' })
    if ((BUILTIN_SUBLEVELS as readonly string[]).includes(name)) {
      throw new StoreError(`sublevel ${name} is the store's own; use store.${name}`)
    }
    const existing = this.tables.get(name)
    if (existing !== undefined) return existing as Table<T>
    return this.table<T>(name, opts.validate ?? validateAny)
  }

  private resolve (sublevel: string | Table<unknown>): LevelTable<unknown> {
    if (typeof sublevel === 'string') {
      const t = this.tables.get(sublevel)
      if (t === undefined) throw new StoreError(`no sublevel ${JSON.stringify(sublevel)} in this store`)
      return t
    }
    if (!(sublevel instanceof LevelTable) || this.tables.get(sublevel.name) !== sublevel) {
      throw new StoreError(`sublevel ${sublevel.name} does not belong to this store`)
    }
    return sublevel
  }

  async batch (ops: BatchOp[]): Promise<void> {
    if (this.closed) throw new StoreClosedError(this.path)
    // Encode (and so validate) everything first: an invalid record fails the whole batch
    // before anything is written.
    const raw = ops.map(op => {
      const t = this.resolve(op.sublevel as string | Table<unknown>)
      return op.type === 'put'
        ? { type: 'put' as const, sublevel: t.sub, key: op.key, value: t.encode(op.key, op.value) }
        : { type: 'del' as const, sublevel: t.sub, key: op.key }
    })
    if (raw.length === 0) return
    await this.db.batch(raw as never)
  }

  async write (fn: (tx: Transaction) => void | Promise<void>): Promise<void> {
    const ops: BatchOp[] = []
    const tx: Transaction = {
      put (table, key, value) { ops.push({ type: 'put', sublevel: table, key, value }); return tx },
      del (table, key) { ops.push({ type: 'del', sublevel: table, key }); return tx }
    }
    await fn(tx)
    await this.batch(ops)
  }

  private async withContainerLock<R> (fn: () => Promise<R>): Promise<R> {
    const run = this.containerLock.then(fn, fn)
    this.containerLock = run.catch(() => {})
    return await run
  }

  async putContainer (record: ContainerRecord): Promise<void> {
    await this.withContainerLock(async () => {
      const owner = await this.names.get(record.name)
      if (owner !== undefined && owner !== record.id) {
        // A name index entry whose container is gone (cannot happen through this API, but a
        // foreign writer could leave one) does not block the name.
        if (await this.containers.has(owner)) throw new NameInUseError(record.name, owner)
      }
      const old = await this.containers.get(record.id).catch(() => undefined)
      await this.write(tx => {
        if (old !== undefined && old.name !== record.name) tx.del(this.names, old.name)
        tx.put(this.containers, record.id, record)
        tx.put(this.names, record.name, record.id)
      })
    })
  }

  async deleteContainer (id: string): Promise<void> {
    await this.withContainerLock(async () => {
      let name: string | undefined
      try {
        name = (await this.containers.get(id))?.name
      } catch (err) {
        if (!(err instanceof StoreCorruptRecordError)) throw err
        // corrupt: find the name by the index
        for (const e of (await this.names.list()).entries) if (e.value === id) name = e.key
      }
      await this.write(tx => {
        tx.del(this.containers, id)
        if (name !== undefined) tx.del(this.names, name)
      })
    })
  }

  async containerByName (name: string): Promise<ContainerRecord | undefined> {
    const id = await this.names.get(name)
    return id === undefined ? undefined : await this.containers.get(id)
  }

  stats (): StoreStats {
    return { corruptRecords: this.corruptRecords }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.db.close()
  }

  async open (signal?: AbortSignal): Promise<void> {
    try {
      await this.db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') throw new StoreLockedError(this.path, err)
      throw new StoreError(`cannot open store ${this.path}: ${(err as Error).message}`, { path: this.path, cause: err })
    }
    try {
      if (signal?.aborted === true) throw new AbortError(`opening store ${this.path}`, { cause: signal.reason })
      await this.migrate()
    } catch (err) {
      await this.close().catch(() => {})
      throw err
    }
  }

  private async migrate (): Promise<void> {
    let found: number
    const stored = await this.meta.get(META_SCHEMA_KEY)
    if (stored === undefined) {
      found = 0 // a fresh store, or one whose first open crashed before writing the version
    } else if (typeof stored === 'number' && Number.isInteger(stored) && stored > 0) {
      found = stored
    } else {
      throw new StoreCorruptRecordError('meta', META_SCHEMA_KEY, `schema version is ${JSON.stringify(stored)}`)
    }
    if (found > STORE_SCHEMA_VERSION) throw new StoreSchemaError(this.path, found, STORE_SCHEMA_VERSION)
    for (const m of MIGRATIONS) {
      if (m.to <= found) continue
      const ops = await m.run(this)
      ops.push({ type: 'put', sublevel: 'meta', key: META_SCHEMA_KEY, value: m.to })
      await this.batch(ops)
      log('store %s migrated to schema %d', this.path, m.to)
      found = m.to
    }
    this.schemaVersion = found
  }
}

interface Migration {
  to: number
  /** returns the operations that bring the data to version `to`; written with the version bump */
  run: (store: LevelStore) => Promise<BatchOp[]>
}

/** Append only, in order. */
const MIGRATIONS: Migration[] = [
  { to: 1, run: async () => [{ type: 'put', sublevel: 'meta', key: 'createdAt', value: Date.now() }] }
]

export async function openStore (init: OpenStoreInit): Promise<Store> {
  if (init.signal?.aborted === true) throw new AbortError(`opening store ${init.path}`, { cause: init.signal.reason })
  await mkdir(init.path, { recursive: true, mode: 0o700 })
  const store = new LevelStore(init.path)
  await store.open(init.signal)
  return store
}
