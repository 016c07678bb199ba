// Parsing of the human units the CLI and API accept: sizes, CPU counts, signals, durations.
// Each parser throws a UsageError (exit 2) with a hint, so bad input never reaches the runtime.
import { constants } from 'node:os'
import { UsageError } from './errors.ts'

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4
}

/** "64M" → 67108864. Binary units, as docker and systemd read them. */
export function parseSize (text: string, what = 'size'): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$/.exec(text.trim())
  const unit = m == null ? undefined : SIZE_UNITS[m[2].toLowerCase()]
  if (m == null || unit === undefined) {
    throw new UsageError('BERTH_ERR_BAD_SIZE', `bad ${what} "${text}"`, 'use a number with an optional unit: 512K, 64M, 2G')
  }
  const bytes = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new UsageError('BERTH_ERR_BAD_SIZE', `bad ${what} "${text}": out of range`, 'use a positive size such as 64M')
  }
  return bytes
}

export function formatSize (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)}${units[i]}`
}

/** "0.5" → 0.5 CPUs; at least 0.01 (a 1 ms quota per 100 ms period). */
export function parseCpus (text: string): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n < 0.01 || n > 1024) {
    throw new UsageError('BERTH_ERR_BAD_CPUS', `bad cpu count "${text}"`, 'use a positive number of CPUs such as 0.5 or 2')
  }
  return n
}

export function parsePositiveInt (text: string, what: string, code = 'BERTH_ERR_BAD_NUMBER'): number {
  if (!/^[0-9]+$/.test(text.trim())) {
    throw new UsageError(code, `bad ${what} "${text}"`, `${what} is a whole number such as 100`)
  }
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(code, `bad ${what} "${text}"`, `${what} is a positive whole number`)
  }
  return n
}

/** "SIGTERM", "TERM", "15" → 15. */
export function parseSignal (text: string | number): number {
  if (typeof text === 'number') text = String(text)
  const t = text.trim().toUpperCase()
  const sigs = constants.signals as Record<string, number>
  if (/^[0-9]+$/.test(t)) {
    const n = Number(t)
    if (n >= 1 && n <= 64) return n
  } else {
    const name = t.startsWith('SIG') ? t : `SIG${t}`
    if (sigs[name] !== undefined) return sigs[name]
  }
  throw new UsageError('BERTH_ERR_BAD_SIGNAL', `bad signal "${text}"`, 'use a name like SIGTERM or KILL, or a number like 15')
}

export function signalName (n: number): string {
  const sigs = constants.signals as Record<string, number>
  for (const [name, v] of Object.entries(sigs)) if (v === n) return name
  return `SIG${n}`
}

/** "200ms", "10s", "2m", "10" (seconds) → milliseconds. */
export function parseDurationMs (text: string, what = 'duration'): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (m == null) {
    throw new UsageError('BERTH_ERR_BAD_DURATION', `bad ${what} "${text}"`, 'use seconds (10) or a unit: 200ms, 10s, 2m')
  }
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h']
  return Math.round(Number(m[1]) * mult)
}
