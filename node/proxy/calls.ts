// The per-workload call counters behind `berth calls`, bounded. A workload decides which
// addresses it calls, so counting every distinct target would let it grow berthd's memory at will
// (a connect spray names tens of thousands in seconds). Each call/action pair keeps at most
// MAX_TARGETS targets; when a new one arrives the smallest is folded into that pair's "other"
// row (or the newcomer is, when it is smaller still), so the busiest targets stay named.

/** Targets kept per workload and call/action pair; the rest are counted under OTHER_TARGET. */
export const MAX_TARGETS = 64
/** The target of the row that counts everything past MAX_TARGETS (the shim folds into it too). */
export const OTHER_TARGET = 'other'

export interface CallCount { call: string, action: string, target: string, count: number, lastAt: number }

export class CallCounter {
  /** `call\0action` → target → row; the "other" row is kept apart, outside the bound. */
  private readonly groups = new Map<string, { targets: Map<string, CallCount>, other?: CallCount }>()
  private readonly maxTargets: number

  constructor (maxTargets = MAX_TARGETS) {
    this.maxTargets = maxTargets
  }

  add (call: string, action: string, target: string, n: number, now: number): void {
    if (!Number.isFinite(n) || n <= 0) return
    const key = `${call}\0${action}`
    let g = this.groups.get(key)
    if (g === undefined) {
      g = { targets: new Map() }
      this.groups.set(key, g)
    }
    if (target === OTHER_TARGET) {
      g.other = bump(g.other, call, action, n, now)
      return
    }
    const row = g.targets.get(target)
    if (row !== undefined) {
      row.count += n
      row.lastAt = now
      return
    }
    if (g.targets.size < this.maxTargets) {
      g.targets.set(target, { call, action, target, count: n, lastAt: now })
      return
    }
    // Full: the smallest row (the least recent among equals) gives way, unless the newcomer is
    // no bigger, in which case it goes to "other" itself. A scan of at most maxTargets rows.
    let min: CallCount | undefined
    for (const r of g.targets.values()) {
      if (min === undefined || r.count < min.count || (r.count === min.count && r.lastAt < min.lastAt)) min = r
    }
    if (min !== undefined && min.count < n) {
      g.targets.delete(min.target)
      g.other = bump(g.other, call, action, min.count, Math.max(min.lastAt, g.other?.lastAt ?? 0))
      g.targets.set(target, { call, action, target, count: n, lastAt: now })
    } else {
      g.other = bump(g.other, call, action, n, now)
    }
  }

  /** Copies of every row, "other" rows included. */
  rows (): CallCount[] {
    const out: CallCount[] = []
    for (const g of this.groups.values()) {
      for (const r of g.targets.values()) out.push({ ...r })
      if (g.other !== undefined) out.push({ ...g.other })
    }
    return out
  }

  get size (): number {
    let n = 0
    for (const g of this.groups.values()) n += g.targets.size + (g.other !== undefined ? 1 : 0)
    return n
  }
}

function bump (row: CallCount | undefined, call: string, action: string, n: number, at: number): CallCount {
  if (row === undefined) return { call, action, target: OTHER_TARGET, count: n, lastAt: at }
  row.count += n
  row.lastAt = Math.max(row.lastAt, at)
  return row
}
