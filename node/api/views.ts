// What the API shows of records, and the validation of what it accepts. The CLI validates the
// same things earlier (for exit code 2), but the API never trusts its client.
import type { ContainerRecord, ImageRecord } from '../../storage/index.ts'
import { UsageError } from '../errors.ts'
import type { MountSpec, RunSpec } from '../runtime/runtime.ts'
import { parseEgress, parsePortFlag, parsePublishFlag } from '../proxy/net.ts'

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
    autoRemove: r.autoRemove,
    ports: r.proxy?.ports,
    egress: r.proxy?.egress,
    unameRelease: r.proxy?.unameRelease,
    mounts: r.proxy?.mounts,
    chaosCalls: r.proxy?.chaosCalls
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

/**
 * `--mount HOSTPATH:CONTAINERPATH[:OPTS]`, OPTS a comma list of `ro` (the default), `rw` and
 * `idmap`. A bind is the host's own directory or file, not a copy: read-only unless `rw` is asked
 * for, and shown with the host's owners unless `idmap` is (then host root's files are the
 * container root's, and with `rw` the container writes them as host root). Which host paths
 * may be bound at all is the daemon's call (node/runtime/mounts.ts): only it knows its data dir.
 */
export function parseMountFlag (text: string): MountSpec {
  const parts = text.split(':')
  const usage = 'use HOSTPATH:CONTAINERPATH[:ro|rw[,idmap]], e.g. --mount /opt/libssl1.1:/usr/lib/legacy'
  if (parts.length < 2 || parts.length > 3) {
    throw new UsageError('BERTH_ERR_BAD_MOUNT', `bad --mount "${text}"`, usage)
  }
  const [src, dst] = parts
  const opts = parts.length === 3 ? parts[2].split(',') : []
  for (const o of opts) {
    if (!['ro', 'rw', 'idmap'].includes(o)) throw new UsageError('BERTH_ERR_BAD_MOUNT', `bad --mount "${text}": unknown option "${o}"`, usage)
  }
  if (opts.includes('ro') && opts.includes('rw')) {
    throw new UsageError('BERTH_ERR_BAD_MOUNT', `bad --mount "${text}": both ro and rw`, 'a bind is read-only unless :rw is given')
  }
  if (!src.startsWith('/') || !dst.startsWith('/') || dst.split('/').includes('..') || src.split('/').includes('..')) {
    throw new UsageError('BERTH_ERR_BAD_MOUNT', `bad --mount "${text}": both paths must be absolute, without ".."`, 'e.g. --mount /opt/libssl1.1:/usr/lib/legacy')
  }
  return { src, dst, ro: !opts.includes('rw'), ...(opts.includes('idmap') ? { idmap: true } : {}) }
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
    autoRemove: optBool(b.autoRemove, 'autoRemove'),
    // The API takes the CLI's spellings ("http:8080", "8080:80", "all"), parsed the same way.
    ports: optStrings(b.ports, 'ports')?.map(parsePortFlag),
    publish: optStrings(b.publish, 'publish')?.map(parsePublishFlag),
    egress: b.egress === undefined ? undefined : typeof b.egress === 'string' ? parseEgress(b.egress) : bad('egress', 'all, none or CIDR[,CIDR...]'),
    unameRelease: b.unameRelease === undefined ? undefined : typeof b.unameRelease === 'string' && /^[\x20-\x7e]{1,64}$/.test(b.unameRelease) ? b.unameRelease : bad('unameRelease', 'printable text of at most 64 characters'),
    mounts: optStrings(b.mounts, 'mounts')?.map(parseMountFlag),
    chaosCalls: optStrings(b.chaosCalls, 'chaosCalls')
  }
  for (const c of spec.chaosCalls ?? []) {
    if (c !== 'open') throw new UsageError('BERTH_ERR_BAD_CALL', `bad --chaos-calls "${c}"`, 'only open needs opting in: connect, bind and sendto are always trapped')
  }
  if (spec.autoRemove === true && spec.restart !== undefined && spec.restart !== 'no') {
    throw new UsageError('BERTH_ERR_CONFLICTING_OPTIONS', '--rm and --restart cannot be used together', 'drop one of them: a container with a restart policy is kept')
  }
  return spec
}
