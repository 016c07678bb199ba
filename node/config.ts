// Daemon configuration. Precedence: flags → environment → config file → defaults; validated
// once, then frozen. The config file is JSON (`/etc/berth/berthd.json`, or --config / BERTH_CONFIG).
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { isAbsolute, resolve } from 'node:path'
import { UsageError } from './errors.ts'
import { parseSize } from './units.ts'

export const DEFAULT_DATA_DIR = '/var/lib/berth'
export const DEFAULT_SOCKET = '/run/berth/berth.sock'
export const DEFAULT_CONFIG_FILE = '/etc/berth/berthd.json'
export const DEFAULT_LOG_MAX_SIZE = '10M'
/**
 * A container's live routed connections. Each holds a host port of the ephemeral range
 * (28,232 by default) towards its target, shared with the host's own clients of that target:
 * the cap keeps one container from taking them all, and is far above what a client pool needs.
 */
export const DEFAULT_ROUTED_MAX = 4096

export interface DaemonConfig {
  readonly dataDir: string
  readonly socketPath: string
  /** Each container's log is rotated past this size; one old file is kept. */
  readonly logMaxBytes: number
  /** Host ports for declared ports (`--port`) come from this range. */
  readonly portRange: [number, number]
  /** Each container's cap on live routed connections (docs/proxy.md); 0 = none. */
  readonly routedMax: number
  readonly configFile?: string
  readonly fleet: FleetConfig
}

/** The fleet layer (cluster/): who this node is and how it finds the others. */
export interface FleetConfig {
  /** false: no --listen/--join/--psk-file — the node runs alone, opening no port */
  readonly enabled: boolean
  readonly listen: string[]
  readonly join: string[]
  readonly pskFile?: string
  readonly nodeName: string
  readonly labels: Record<string, string>
  readonly capacityCpu?: number
  readonly capacityMemoryBytes?: number
  readonly profile: 'lan' | 'local'
  readonly mdns: boolean
}

export interface DaemonFlags {
  dataDir?: string
  socket?: string
  config?: string
  portRange?: string
  listen?: string[]
  join?: string[]
  pskFile?: string
  nodeName?: string
  labels?: string
  capacityCpu?: string
  capacityMemory?: string
  profile?: string
  mdns?: boolean
}

export const DEFAULT_LISTEN = '0.0.0.0:7946'

/** `k=v,k2=v2` */
export function parseLabels (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of text.split(',').map(s => s.trim()).filter(s => s !== '')) {
    const m = /^([a-zA-Z0-9][a-zA-Z0-9_.\/-]{0,62})=([^,]{0,253})$/.exec(part)
    if (m == null) throw new UsageError('BERTH_ERR_BAD_LABELS', `bad label "${part}"`, 'use --labels key=value,key2=value2')
    out[m[1]] = m[2]
  }
  return out
}

function resolveFleet (flags: DaemonFlags, env: NodeJS.ProcessEnv, file: FileConfig): FleetConfig {
  const listen = flags.listen ?? file.listen ?? []
  const join = flags.join ?? file.join ?? []
  const pskFile = flags.pskFile ?? env.BERTH_PSK_FILE ?? file.pskFile
  const enabled = listen.length > 0 || join.length > 0 || pskFile !== undefined
  if (enabled && pskFile === undefined) {
    throw new UsageError('BERTH_ERR_PSK', 'a fleet needs a pre-shared key', 'berth cluster init --psk-file FILE writes one; give it to every node with --psk-file FILE')
  }
  const profile = flags.profile ?? file.profile ?? 'lan'
  if (profile !== 'lan' && profile !== 'local') throw new UsageError('BERTH_ERR_USAGE', `bad --profile "${profile}"`, 'use lan (default) or local')
  let capacityCpu: number | undefined
  if (flags.capacityCpu !== undefined) {
    capacityCpu = Number(flags.capacityCpu)
    if (!Number.isFinite(capacityCpu) || capacityCpu <= 0) throw new UsageError('BERTH_ERR_BAD_CPUS', `bad --capacity-cpu "${flags.capacityCpu}"`, 'a positive number of CPUs, e.g. 4')
  }
  const nodeName = flags.nodeName ?? file.nodeName ?? hostname()
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(nodeName)) throw new UsageError('BERTH_ERR_INVALID_NAME', `bad --node-name "${nodeName}"`, 'letters, digits, "_", "." and "-", at most 63')
  return Object.freeze({
    enabled,
    listen: enabled && listen.length === 0 ? [DEFAULT_LISTEN] : listen,
    join,
    ...(pskFile !== undefined ? { pskFile: isAbsolute(pskFile) ? pskFile : resolve(pskFile) } : {}),
    nodeName,
    labels: parseLabels(flags.labels ?? file.labels ?? ''),
    ...(capacityCpu !== undefined ? { capacityCpu } : {}),
    ...(flags.capacityMemory !== undefined ? { capacityMemoryBytes: parseSize(flags.capacityMemory, '--capacity-memory') } : {}),
    profile,
    mdns: flags.mdns ?? file.mdns ?? false
  })
}

interface FileConfig {
  dataDir?: string
  socket?: string
  logMaxSize?: string
  portRange?: string
  routedMax?: number
  listen?: string[]
  join?: string[]
  pskFile?: string
  nodeName?: string
  labels?: string
  profile?: string
  mdns?: boolean
}

const FILE_KEYS: Record<string, 'string' | 'strings' | 'boolean' | 'number'> = {
  dataDir: 'string', socket: 'string', logMaxSize: 'string', portRange: 'string', routedMax: 'number', listen: 'strings', join: 'strings',
  pskFile: 'string', nodeName: 'string', labels: 'string', profile: 'string', mdns: 'boolean'
}

export const DEFAULT_PORT_RANGE = '30000-32767'

function parsePortRange (text: string): [number, number] {
  const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(text.trim())
  const lo = Number(m?.[1])
  const hi = Number(m?.[2])
  if (m == null || lo < 1 || hi > 65535 || lo > hi) {
    throw new UsageError('BERTH_ERR_CONFIG', `bad port range "${text}"`, 'use LOW-HIGH, e.g. 30000-32767')
  }
  return [lo, hi]
}

function parseRoutedMax (value: string | number): number {
  const n = typeof value === 'number' ? value : /^[0-9]{1,7}$/.test(value.trim()) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < 0 || n > 1048576) {
    throw new UsageError('BERTH_ERR_CONFIG', `bad routedMax "${value}"`, 'a whole number of connections from 0 (no cap) to 1048576')
  }
  return n
}

function readConfigFile (path: string, required: boolean): FileConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err: any) {
    if (!required && err.code === 'ENOENT') return {}
    throw new UsageError('BERTH_ERR_CONFIG', `cannot read config file ${path}: ${err.code ?? err.message}`, 'check the path given with --config or BERTH_CONFIG')
  }
  let parsed: any
  try { parsed = JSON.parse(text) } catch {
    throw new UsageError('BERTH_ERR_CONFIG', `config file ${path} is not valid JSON`, 'see deploy/berthd.example.json')
  }
  for (const k of Object.keys(parsed)) {
    const want = FILE_KEYS[k]
    if (want === undefined) throw new UsageError('BERTH_ERR_CONFIG', `unknown key "${k}" in ${path}`, `known keys: ${Object.keys(FILE_KEYS).join(', ')}`)
    const v = parsed[k]
    const ok = want === 'strings' ? Array.isArray(v) && v.every((x: unknown) => typeof x === 'string') : typeof v === want
    if (!ok) throw new UsageError('BERTH_ERR_CONFIG', `"${k}" in ${path} must be ${want === 'strings' ? 'an array of strings' : `a ${want}`}`, 'see deploy/berthd.example.json')
  }
  return parsed
}

export function resolveDaemonConfig (flags: DaemonFlags, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const explicit = flags.config ?? env.BERTH_CONFIG
  const file = readConfigFile(explicit ?? DEFAULT_CONFIG_FILE, explicit !== undefined)
  const dataDir = flags.dataDir ?? env.BERTH_DATA_DIR ?? file.dataDir ?? DEFAULT_DATA_DIR
  const socketPath = flags.socket ?? env.BERTH_SOCKET ?? file.socket ?? DEFAULT_SOCKET
  for (const [what, p] of [['data directory', dataDir], ['socket path', socketPath]]) {
    if (p === '') throw new UsageError('BERTH_ERR_CONFIG', `empty ${what}`, 'give a path')
  }
  if (socketPath.length > 100) {
    throw new UsageError('BERTH_ERR_CONFIG', `socket path too long (${socketPath.length} bytes; Unix sockets allow 107)`, 'use a shorter --socket path')
  }
  return Object.freeze({
    dataDir: isAbsolute(dataDir) ? dataDir : resolve(dataDir),
    socketPath: isAbsolute(socketPath) ? socketPath : resolve(socketPath),
    logMaxBytes: parseSize(file.logMaxSize ?? DEFAULT_LOG_MAX_SIZE, 'logMaxSize'),
    portRange: parsePortRange(flags.portRange ?? env.BERTH_PORT_RANGE ?? file.portRange ?? DEFAULT_PORT_RANGE),
    routedMax: parseRoutedMax(env.BERTH_ROUTED_MAX ?? file.routedMax ?? DEFAULT_ROUTED_MAX),
    fleet: resolveFleet(flags, env, file),
    ...(explicit !== undefined ? { configFile: explicit } : {})
  })
}

/** The socket a client uses: --socket, else $BERTH_SOCKET, else the default. */
export function clientSocket (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.BERTH_SOCKET ?? DEFAULT_SOCKET
}
