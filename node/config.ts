// Daemon configuration. Precedence: flags → environment → config file → defaults; validated
// once, then frozen. The config file is JSON (`/etc/berth/berthd.json`, or --config / BERTH_CONFIG).
import { readFileSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { UsageError } from './errors.ts'
import { parseSize } from './units.ts'

export const DEFAULT_DATA_DIR = '/var/lib/berth'
export const DEFAULT_SOCKET = '/run/berth/berth.sock'
export const DEFAULT_CONFIG_FILE = '/etc/berth/berthd.json'
export const DEFAULT_LOG_MAX_SIZE = '10M'

export interface DaemonConfig {
  readonly dataDir: string
  readonly socketPath: string
  /** Each container's log is rotated past this size; one old file is kept. */
  readonly logMaxBytes: number
  /** Host ports for declared ports (`--port`) come from this range. */
  readonly portRange: [number, number]
  readonly configFile?: string
}

export interface DaemonFlags {
  dataDir?: string
  socket?: string
  config?: string
  portRange?: string
}

interface FileConfig { dataDir?: string, socket?: string, logMaxSize?: string, portRange?: string }

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
  const known = new Set(['dataDir', 'socket', 'logMaxSize', 'portRange'])
  for (const k of Object.keys(parsed)) {
    if (!known.has(k)) throw new UsageError('BERTH_ERR_CONFIG', `unknown key "${k}" in ${path}`, `known keys: ${[...known].join(', ')}`)
    if (typeof parsed[k] !== 'string') throw new UsageError('BERTH_ERR_CONFIG', `"${k}" in ${path} must be a string`, 'see deploy/berthd.example.json')
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
    ...(explicit !== undefined ? { configFile: explicit } : {})
  })
}

/** The socket a client uses: --socket, else $BERTH_SOCKET, else the default. */
export function clientSocket (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.BERTH_SOCKET ?? DEFAULT_SOCKET
}
