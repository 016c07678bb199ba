// An in-memory stand-in for the node's Store (storage/), with the two methods the cluster uses:
// typed sublevels and atomic batches. For the simulator (a thousand level databases would not
// fit a test run) and unit tests. A batch is applied all at once, like level's.

import type { ListOptions, ListResult, Table, Transaction } from '../storage/index.ts'
import type { ClusterStore } from './state.ts'

class MemoryTable<T> implements Table<T> {
  readonly name: string
  readonly data = new Map<string, T>()
  constructor (name: string) { this.name = name }
  async get (key: string): Promise<T | undefined> { return this.data.get(key) }
  async has (key: string): Promise<boolean> { return this.data.has(key) }
  async put (key: string, value: T): Promise<void> { this.data.set(key, value) }
  async del (key: string): Promise<void> { this.data.delete(key) }
  private select (opts: ListOptions): string[] {
    let keys = [...this.data.keys()].sort()
    if (opts.prefix !== undefined) keys = keys.filter(k => k.startsWith(opts.prefix as string))
    if (opts.gte !== undefined) keys = keys.filter(k => k >= (opts.gte as string))
    if (opts.lt !== undefined) keys = keys.filter(k => k < (opts.lt as string))
    if (opts.reverse === true) keys.reverse()
    if (opts.limit !== undefined) keys = keys.slice(0, opts.limit)
    return keys
  }
  async list (opts: ListOptions = {}): Promise<ListResult<T>> {
    return { entries: this.select(opts).map(key => ({ key, value: this.data.get(key) as T })), skipped: [] }
  }
  async keys (opts: ListOptions = {}): Promise<string[]> { return this.select(opts) }
}

export interface MemoryStore extends ClusterStore {
  /** batches written so far */
  readonly batches: number
}

export function createMemoryStore (): MemoryStore {
  const tables = new Map<string, MemoryTable<unknown>>()
  let batches = 0
  return {
    get batches () { return batches },
    sublevel<T> (name: string): Table<T> {
      let t = tables.get(name)
      if (t === undefined) tables.set(name, t = new MemoryTable<unknown>(name))
      return t as Table<T>
    },
    async write (fn: (tx: Transaction) => void | Promise<void>): Promise<void> {
      const ops: Array<() => void> = []
      const tx: Transaction = {
        put (table, key, value) { ops.push(() => { (table as MemoryTable<unknown>).data.set(key, value) }); return tx },
        del (table, key) { ops.push(() => { (table as MemoryTable<unknown>).data.delete(key) }); return tx }
      }
      await fn(tx)
      for (const op of ops) op()
      batches++
    }
  }
}
