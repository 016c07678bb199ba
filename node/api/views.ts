// What the API shows of records, and the validation of what it accepts. The CLI validates the
// same things earlier (for exit code 2), but the API never trusts its client.
import type { ContainerRecord, ImageRecord } from '../../storage/index.ts'
import { UsageError } from '../errors.ts'
import type { RunSpec } from '../runtime/runtime.ts'

export function containerView (r: ContainerRecord): Record<string, unknown> {
  return {
    id: r.id,
    name: r.name,
    image: r.image,
    command: r.command,
    env: r.env,
    cwd: r.cwd,
    state: r.state,
    pid: r.state === 'running' ? r.pid : undefined,
    exitCode: r.exitCode,
    signal: r.signal,
    oomKilled: r.oomKilled,
    reason: r.reason,
    restart: r.restart,
    restartCount: r.restartCount,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    resources: r.resources,
    net: r.net,
    userns: r.userns,
    uidBase: r.uidBase,
    uidCount: r.uidCount,
    init: r.init,
    autoRemove: r.autoRemove
  }
}

export function imageView (i: ImageRecord): Record<string, unknown> {
  return {
    name: i.name,
    id: i.id,
    builtIn: i.builtIn,
    format: i.format,
    source: i.source,
    createdAt: i.createdAt,
    sizeBytes: i.sizeBytes,
    layers: i.layers,
    config: i.config
  }
}

function bad (field: string, want: string): never {
  throw new UsageError('BERTH_ERR_BAD_REQUEST', `"${field}" must be ${want}`, 'see docs/api.md (RunSpec)')
}

function optStrings (v: unknown, field: string): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) bad(field, 'an array of strings')
  return v
}

function optEnum<T extends string> (v: unknown, field: string, values: readonly T[]): T | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) bad(field, `one of ${values.join(', ')}`)
  return v as T
}

function optPositive (v: unknown, field: string, integer: boolean): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isSafeInteger(v))) {
    bad(field, integer ? 'a positive whole number' : 'a positive number')
  }
  return v
}

function optBool (v: unknown, field: string): boolean | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'boolean') bad(field, 'true or false')
  return v
}

export function validateRunSpec (b: any): RunSpec {
  if (typeof b.image !== 'string' || b.image === '') bad('image', 'an image name')
  if (b.name !== undefined && typeof b.name !== 'string') bad('name', 'a string')
  if (b.cwd !== undefined && (typeof b.cwd !== 'string' || !b.cwd.startsWith('/'))) bad('cwd', 'an absolute path')
  const env = optStrings(b.env, 'env')
  for (const kv of env ?? []) {
    if (!/^[^=\0]+=/.test(kv)) {
      throw new UsageError('BERTH_ERR_BAD_ENV', `bad environment entry "${kv}"`, 'use KEY=VALUE')
    }
  }
  const spec: RunSpec = {
    image: b.image,
    command: optStrings(b.command, 'command'),
    name: b.name,
    env,
    cwd: b.cwd,
    cpus: optPositive(b.cpus, 'cpus', false),
    memoryBytes: optPositive(b.memoryBytes, 'memoryBytes', true),
    pids: optPositive(b.pids, 'pids', true),
    restart: optEnum(b.restart, 'restart', ['no', 'on-failure', 'always'] as const),
    net: optEnum(b.net, 'net', ['private', 'host'] as const),
    userns: optEnum(b.userns, 'userns', ['private', 'host'] as const),
    init: optBool(b.init, 'init'),
    autoRemove: optBool(b.autoRemove, 'autoRemove')
  }
  if (spec.autoRemove === true && spec.restart !== undefined && spec.restart !== 'no') {
    throw new UsageError('BERTH_ERR_CONFLICTING_OPTIONS', '--rm and --restart cannot be used together', 'drop one of them: a container with a restart policy is kept')
  }
  return spec
}
