// Fault-injection rules at the syscall layer (`berth chaos`). A rule names a workload, a call
// class and a target; the proxy controller puts the rules into each matching workload's table.
// Rules are kept in the store (later: the replicated `chaos/<id>` kind) and expire on their own.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:os'
import { isIP } from 'node:net'
import { UsageError } from '../errors.ts'
import { parseDurationMs } from '../units.ts'

export const CHAOS_CALLS = ['connect', 'bind', 'sendto', 'open'] as const
export type ChaosCall = typeof CHAOS_CALLS[number]

export interface ChaosRule {
  id: string
  workload: string
  call: ChaosCall
  /** service name or IP address (connect/bind/sendto), '' for any */
  service: string
  /** 0 = any port */
  port: number
  /** open: absolute path prefix */
  path: string
  errno: number
  errnoName: string
  delayMs: number
  probability: number
  createdAt: number
  /** 0 = never */
  expiresAt: number
}

export interface ChaosInput {
  workload?: string
  call?: string
  target?: string
  errno?: string
  delay?: string
  probability?: string | number
  for?: string
}

export function errnoNumber (name: string): number {
  const errnos = constants.errno as Record<string, number>
  const n = errnos[name.toUpperCase()]
  if (n === undefined) {
    throw new UsageError('BERTH_ERR_BAD_ERRNO', `unknown errno "${name}"`, 'use a name such as ECONNREFUSED, ETIMEDOUT, EIO, EACCES')
  }
  return n
}

/** Validates `berth chaos add` input; `serviceExists` answers whether a service name is known. */
export function parseChaosRule (input: ChaosInput, serviceExists: (name: string) => boolean, now = Date.now()): ChaosRule {
  if (input.workload === undefined || input.workload === '') throw new UsageError('BERTH_ERR_USAGE', 'chaos add needs --workload NAME', 'berth chaos add --workload NAME --call connect --target SERVICE[:PORT]')
  const call = input.call as ChaosCall
  if (!CHAOS_CALLS.includes(call)) throw new UsageError('BERTH_ERR_BAD_CALL', `bad --call "${input.call ?? ''}"`, `use one of ${CHAOS_CALLS.join(', ')}`)
  const target = (input.target ?? '').trim()
  let service = ''
  let port = 0
  let path = ''
  if (call === 'open') {
    if (!target.startsWith('/')) throw new UsageError('BERTH_ERR_BAD_TARGET', `bad --target "${target}" for open`, 'give an absolute path (a prefix), e.g. /var/lib/data')
    path = target
  } else {
    if (target === '') throw new UsageError('BERTH_ERR_BAD_TARGET', `--call ${call} needs --target SERVICE[:PORT]`, 'e.g. --target db:5432, or :8080 for any address')
    const m = /^(.*?)(?::([0-9]{1,5}))?$/.exec(target.startsWith('[') ? target.replace(/^\[(.*)\](?=:|$)/, '$1') : target)
    service = m?.[1] ?? ''
    const portText = m?.[2]
    if (portText !== undefined) {
      port = Number(portText)
      if (port < 1 || port > 65535) throw new UsageError('BERTH_ERR_BAD_TARGET', `bad port in --target "${target}"`, 'ports are 1–65535')
    }
    if (service !== '' && isIP(service) === 0 && !serviceExists(service)) {
      throw new UsageError('BERTH_ERR_UNKNOWN_SERVICE', `unknown service "${service}"`, 'berth port ls lists the services (workloads with --port)')
    }
  }
  const delayMs = input.delay === undefined ? 0 : parseDurationMs(input.delay, 'delay')
  // A delay alone slows the call and then lets it proceed; without a delay the default fault
  // is a refused connection. `--errno none` (or 0) makes a pure delay explicit.
  const errnoName = (input.errno ?? (input.delay !== undefined ? 'NONE' : 'ECONNREFUSED')).toUpperCase()
  const errno = errnoName === 'NONE' || errnoName === '0' ? 0 : errnoNumber(errnoName)
  if (errno === 0 && delayMs === 0) {
    throw new UsageError('BERTH_ERR_USAGE', 'a rule with neither an errno nor a delay does nothing', 'give --errno NAME, --delay DURATION, or both')
  }
  if (delayMs > 600_000) throw new UsageError('BERTH_ERR_BAD_DURATION', `--delay ${input.delay ?? ''} is over 10 minutes`, 'use a shorter delay')
  const probability = input.probability === undefined ? 1 : Number(input.probability)
  if (!Number.isFinite(probability) || probability < 0 || probability > 1 || String(input.probability ?? '1').trim() === '') {
    throw new UsageError('BERTH_ERR_BAD_PROBABILITY', `bad --probability "${String(input.probability)}"`, 'a probability is between 0 and 1, e.g. 0.3')
  }
  const forMs = input.for === undefined ? 0 : parseDurationMs(input.for, '--for duration')
  return {
    id: `c-${randomBytes(4).toString('hex')}`,
    workload: input.workload,
    call,
    service,
    port,
    path,
    errno,
    errnoName: errno === 0 ? 'none' : errnoName,
    delayMs,
    probability,
    createdAt: now,
    expiresAt: forMs === 0 ? 0 : now + forMs
  }
}
