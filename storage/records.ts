// Records kept in the node's store, and their validators. A validator returns the first
// problem it finds (a short phrase naming the field) or undefined when the value is well-formed;
// records are checked on every read, so a corrupt or foreign value is reported, never trusted.

export interface ContainerRecord {
  id: string; name: string; image: string; command: string[]; env: string[]; cwd: string
  resources: { cpuQuotaUs?: number; cpuPeriodUs?: number; cpus?: number; memoryBytes?: number; pids?: number }
  restart: 'no' | 'on-failure' | 'always'; net: 'private' | 'host'; userns: 'private' | 'host'
  uidBase?: number; uidCount?: number; init: boolean; autoRemove: boolean; logMaxBytes: number
  createdAt: number; state: 'created' | 'running' | 'exited' | 'removing'
  pid?: number; shimPid?: number; pidStartTime?: number; startedAt?: number; finishedAt?: number
  exitCode?: number; signal?: number; oomKilled?: boolean; reason?: string; restartCount: number
  generation: number
  /** what the proxy namespace does for it (docs/proxy.md); absent on records from before it */
  proxy?: ProxySpec
}

/** A declared port: `--port NAME:PORT` (hostPort from the node's range) or `--publish HOSTPORT:PORT`. */
export interface PortSpec { name: string; port: number; proto: 'tcp' | 'udp' | 'any'; hostPort: number; hostAddress: string; published: boolean }

export interface ProxySpec {
  ports: PortSpec[]
  /** 'all', 'none', or CIDRs */
  egress: { mode: 'all' | 'none' | 'cidrs'; cidrs: string[] }
  unameRelease?: string
  /** `--mount HOSTPATH:CONTAINERPATH[:ro|rw[,idmap]]`; src is the real path the daemon checked */
  mounts: Array<{ src: string; dst: string; ro: boolean; idmap?: boolean }>
  /** call classes trapped from the start for chaos rules beyond connect/bind/sendto, e.g. ['open'] */
  chaosCalls: string[]
}

export interface ImageBind { src: string; dst: string; opts: string[] }

export interface ImageConfig { env?: string[]; cmd?: string[]; entrypoint?: string[]; workingDir?: string; user?: string }

export type ImageFormat = 'host' | 'dir' | 'tar' | 'tar.gz' | 'oci' | 'docker-archive'

export interface ImageRecord {
  name: string
  /** sha256 hex: of the manifest (oci), the config (docker-archive), the source bytes (tar), or of a description of the source */
  id: string
  /** absolute path of the rootfs directory: the overlay's lower layer */
  rootfs: string
  builtIn: boolean
  source: string
  format: ImageFormat
  createdAt: number
  sizeBytes: number
  layers: number
  /** e.g. host image: /usr → /usr ro,rec,idmap; passed to the shim as `bind` entries */
  binds: ImageBind[]
  config: ImageConfig
}

/** Returns the first problem, or undefined if `value` is a T. */
export type Validator = (value: unknown) => string | undefined

export const CONTAINER_STATES: readonly ContainerRecord['state'][] = ['created', 'running', 'exited', 'removing']
export const RESTART_POLICIES: readonly ContainerRecord['restart'][] = ['no', 'on-failure', 'always']
export const IMAGE_FORMATS: readonly ImageFormat[] = ['host', 'dir', 'tar', 'tar.gz', 'oci', 'docker-archive']
export const BIND_OPTS: readonly string[] = ['ro', 'rw', 'rec', 'idmap', 'nosuid', 'nodev', 'nofollow']

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isStrArr = (v: unknown): v is string[] => Array.isArray(v) && v.every(s => typeof s === 'string')
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
const isUint = (v: unknown): v is number => isNum(v) && Number.isInteger(v) && v >= 0

type Check = [field: string, ok: (v: unknown) => boolean, optional?: boolean]

function checkFields (o: Record<string, unknown>, checks: Check[]): string | undefined {
  for (const [field, ok, optional] of checks) {
    const v = o[field]
    if (v === undefined || v === null) {
      if (optional === true) continue
      return `missing ${field}`
    }
    if (!ok(v)) return `bad ${field}`
  }
  return undefined
}

const str = (v: unknown): boolean => typeof v === 'string'
const nonEmpty = (v: unknown): boolean => typeof v === 'string' && v.length > 0
const bool = (v: unknown): boolean => typeof v === 'boolean'
const oneOf = (xs: readonly string[]) => (v: unknown): boolean => typeof v === 'string' && xs.includes(v)

export const validateContainerRecord: Validator = (v) => {
  if (!isObj(v)) return 'not an object'
  const r = v.resources
  if (!isObj(r)) return 'bad resources'
  const rp = checkFields(r, [
    ['cpuQuotaUs', isUint, true], ['cpuPeriodUs', isUint, true], ['cpus', isNum, true],
    ['memoryBytes', isUint, true], ['pids', isUint, true]
  ])
  if (rp !== undefined) return `resources: ${rp}`
  return checkFields(v, [
    ['id', nonEmpty], ['name', nonEmpty], ['image', nonEmpty], ['command', isStrArr], ['env', isStrArr],
    ['cwd', str], ['restart', oneOf(RESTART_POLICIES)], ['net', oneOf(['private', 'host'])],
    ['userns', oneOf(['private', 'host'])], ['uidBase', isUint, true], ['uidCount', isUint, true],
    ['init', bool], ['autoRemove', bool], ['logMaxBytes', isUint], ['createdAt', isNum],
    ['state', oneOf(CONTAINER_STATES)], ['pid', isUint, true], ['shimPid', isUint, true],
    ['pidStartTime', isUint, true], ['startedAt', isNum, true], ['finishedAt', isNum, true],
    ['exitCode', Number.isInteger, true], ['signal', isUint, true], ['oomKilled', bool, true],
    ['reason', str, true], ['restartCount', isUint], ['generation', isUint], ['proxy', isProxySpec, true]
  ])
}

const isPort = (v: unknown): boolean => isObj(v) && nonEmpty(v.name) && isUint(v.port) && v.port <= 65535 &&
  oneOf(['tcp', 'udp', 'any'])(v.proto) && isUint(v.hostPort) && v.hostPort <= 65535 && str(v.hostAddress) && bool(v.published)

const isProxySpec = (v: unknown): boolean => isObj(v) && Array.isArray(v.ports) && v.ports.every(isPort) &&
  isObj(v.egress) && oneOf(['all', 'none', 'cidrs'])(v.egress.mode) && isStrArr(v.egress.cidrs) &&
  (v.unameRelease === undefined || str(v.unameRelease)) && isStrArr(v.chaosCalls) &&
  Array.isArray(v.mounts) && v.mounts.every(m => isObj(m) && nonEmpty(m.src) && nonEmpty(m.dst) && bool(m.ro) && (m.idmap === undefined || bool(m.idmap)))

const isBind = (v: unknown): boolean =>
  isObj(v) && typeof v.src === 'string' && typeof v.dst === 'string' &&
  isStrArr(v.opts) && v.opts.every(o => BIND_OPTS.includes(o))

export const validateImageRecord: Validator = (v) => {
  if (!isObj(v)) return 'not an object'
  const c = v.config
  if (!isObj(c)) return 'bad config'
  const cp = checkFields(c, [
    ['env', isStrArr, true], ['cmd', isStrArr, true], ['entrypoint', isStrArr, true],
    ['workingDir', str, true], ['user', str, true]
  ])
  if (cp !== undefined) return `config: ${cp}`
  return checkFields(v, [
    ['name', nonEmpty], ['id', (x) => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x)],
    ['rootfs', (x) => typeof x === 'string' && x.startsWith('/')], ['builtIn', bool], ['source', str],
    ['format', oneOf(IMAGE_FORMATS)], ['createdAt', isNum], ['sizeBytes', isUint], ['layers', isUint],
    ['binds', (x) => Array.isArray(x) && x.every(isBind)]
  ])
}

export const validateString: Validator = (v) => typeof v === 'string' ? undefined : 'not a string'

/** For sublevels that accept anything msgpackr can decode. */
export const validateAny: Validator = () => undefined
