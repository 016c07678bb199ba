// The daemon's side of docs/shim.md: write a bundle's config, start `berth-shim create`, talk to
// a running shim over its control socket, run `berth-shim exec`. Nothing here knows about the
// store; runtime.ts decides what to do with what the shim reports.
import { spawn, type ChildProcess } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { readFile } from 'node:fs/promises'
import { closeSync, constants as fsConstants, openSync } from 'node:fs'
import { join } from 'node:path'
import { EventEmitter } from 'node:events'
import { BerthError, berthError } from '../errors.ts'

export interface BindEntry { src: string, dst: string, opts: string[] }

export interface ShimConfig {
  id: string
  name: string
  image: string
  binds: BindEntry[]
  uidBase?: number
  uidCount?: number
  net: 'private' | 'host'
  init: boolean
  args: string[]
  env: string[]
  cwd: string
  cgroup: string
  /** docs/proxy.md */
  rulesFile?: string
  hostsFile?: string
  /** a file the shim keeps as the container's /proc/meminfo (with a memory limit) */
  meminfoFile?: string
  unameRelease?: string
  chaosCalls: string[]
  cpuQuotaUs?: number
  cpuPeriodUs?: number
  memoryBytes?: number
  pidsMax?: number
  logMaxBytes: number
  /** the cap on live routed connections (0 = none) */
  routedMax?: number
}

export interface ShimStarted { pid: number, shimPid: number }

export interface ExitStatus {
  exitCode: number
  signal: number
  oomKilled: boolean
  finishedAt: number
  reason: string
}

export interface ShimState { pid: number, shimPid: number, startedAt: number, pidStartTime: number }

const SEP = '\x1f'

/**
 * The longest line read from a shim. Its events are bounded (at most 256 targets in a `calls`
 * event, about 20 KiB), so a longer line is a bug or garbage: it is skipped up to its newline,
 * never taken for the shim being gone, and never held in memory whole.
 */
export const MAX_SHIM_LINE = 1024 * 1024

/** Encodes the NUL-separated `key\0value\0` config (docs/shim.md). */
export function encodeShimConfig (c: ShimConfig): Buffer {
  const pairs: Array<[string, string | number | undefined]> = [
    ['version', 1], ['id', c.id], ['name', c.name], ['image', c.image]
  ]
  for (const b of c.binds) pairs.push(['bind', [b.src, b.dst, b.opts.join(',')].join(SEP)])
  if (c.uidBase !== undefined) pairs.push(['uid_base', c.uidBase], ['uid_count', c.uidCount ?? 65536])
  pairs.push(['net', c.net], ['init', c.init ? 1 : 0])
  for (const a of c.args) pairs.push(['arg', a])
  for (const e of c.env) pairs.push(['env', e])
  pairs.push(['cwd', c.cwd], ['cgroup', c.cgroup])
  pairs.push(['rules_file', c.rulesFile], ['hosts_file', c.hostsFile], ['meminfo_file', c.meminfoFile], ['uname_release', c.unameRelease])
  if (c.chaosCalls.length > 0) pairs.push(['chaos_calls', c.chaosCalls.join(',')])
  pairs.push(['cpu_quota_us', c.cpuQuotaUs], ['cpu_period_us', c.cpuPeriodUs])
  pairs.push(['memory_bytes', c.memoryBytes], ['pids_max', c.pidsMax], ['log_max_bytes', c.logMaxBytes], ['routed_max', c.routedMax])
  const parts: string[] = []
  for (const [k, v] of pairs) {
    if (v === undefined) continue
    const s = String(v)
    if (s.includes('\0')) throw berthError('BERTH_ERR_BAD_VALUE', `${k} contains a NUL byte`, 'remove NUL bytes from arguments, environment and paths')
    parts.push(k, s)
  }
  return Buffer.from(parts.join('\0') + '\0')
}

/** An error the shim reported while creating the container, mapped to the CLI's exit codes. */
export class ShimError extends BerthError {
  readonly syscall?: string
  readonly errno?: number
  constructor (report: { code?: string, message?: string, syscall?: string, path?: string, errno?: number }) {
    const code = report.code ?? 'BERTH_ERR_SHIM'
    const exitCode = code === 'BERTH_ERR_EXEC_NOT_FOUND' ? 127 : code === 'BERTH_ERR_EXEC_DENIED' ? 126 : undefined
    super(code, report.message ?? 'the container could not be started', { hint: hintFor(code), exitCode, path: report.path })
    this.syscall = report.syscall
    this.errno = report.errno
  }
}

function hintFor (code: string): string {
  switch (code) {
    case 'BERTH_ERR_EXEC_NOT_FOUND': return 'check the command exists in the image (berth run IMAGE ls /bin)'
    case 'BERTH_ERR_EXEC_DENIED': return 'the command must be an executable file in the image'
    case 'BERTH_ERR_CGROUP': return 'check the cgroup controllers (cpu, memory, pids) are mounted and writable'
    case 'BERTH_ERR_MOUNT': return 'check the kernel supports overlayfs and idmapped mounts, or try --userns host'
    case 'BERTH_ERR_NAMESPACE': return 'check user namespaces are enabled (sysctl user.max_user_namespaces)'
    case 'BERTH_ERR_SOCKGUARD': return 'a container with its own network needs cgroup2 mounted and cgroup BPF (CONFIG_CGROUP_BPF); or run it with --net host'
    default: return 'see the daemon log for details'
  }
}

/**
 * The bundle goes to the shim in its environment (BUNDLE_ENV, with `-` in place of the path):
 * any local user reads a process's command line in /proc/PID/cmdline, only root its environment,
 * and the shim lives as long as its container.
 */
export const BUNDLE_ENV = 'BERTH_SHIM_BUNDLE'

function shimEnv (bundle: string): NodeJS.ProcessEnv {
  return { ...process.env, [BUNDLE_ENV]: bundle }
}

/** Runs `berth-shim create -` for BUNDLE and returns once the command has been execve'd. */
export async function shimCreate (shimPath: string, bundle: string, signal?: AbortSignal): Promise<ShimStarted> {
  const child = spawn(shimPath, ['create', '-'], { stdio: ['ignore', 'pipe', 'pipe'], env: shimEnv(bundle), signal })
  const [out, err, code] = await collect(child)
  const line = out.split('\n').find(l => l.trim() !== '')
  let report: any
  try { report = JSON.parse(line ?? '') } catch {
    throw berthError('BERTH_ERR_SHIM', `berth-shim create exited ${code} without a report${err !== '' ? `: ${err.trim().split('\n')[0]}` : ''}`, 'reinstall berth (npm ci) so the shim matches the daemon')
  }
  if (report.ok !== true) throw new ShimError(report)
  return { pid: report.pid, shimPid: report.shimPid }
}

function collect (child: ChildProcess): Promise<[string, string, number | null]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (b: Buffer) => out.push(b))
    child.stderr?.on('data', (b: Buffer) => err.push(b))
    child.once('error', reject)
    child.once('close', code => resolve([Buffer.concat(out).toString(), Buffer.concat(err).toString(), code]))
  })
}

export async function readShimState (bundle: string): Promise<ShimState | undefined> {
  return await readJson<ShimState>(join(bundle, 'state'))
}

export async function readExitFile (bundle: string): Promise<ExitStatus | undefined> {
  return await readJson<ExitStatus>(join(bundle, 'exit'))
}

async function readJson<T> (path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch (err: any) {
    if (err.code === 'ENOENT' || err instanceof SyntaxError) return undefined
    throw err
  }
}

/**
 * A connection to one shim's control socket. Emits `exit` (ExitStatus) once and `close` when the
 * connection ends; `lost` is true when it ended without an exit report — the shim was killed, or
 * it dropped this client for not keeping up with its events (the caller tells them apart by
 * connecting again).
 */
export class ShimConnection extends EventEmitter<{ exit: [ExitStatus], close: [boolean], event: [Record<string, unknown>] }> {
  readonly bundle: string
  private readonly socket: Socket
  private buffered = ''
  /** Inside a line longer than MAX_SHIM_LINE: drop input up to the next newline. */
  private skipping = false
  private exited = false
  private readonly pending: Array<(reply: any) => void> = []

  private constructor (bundle: string, socket: Socket) {
    super()
    this.bundle = bundle
    this.socket = socket
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      for (const p of this.pending.splice(0)) p({ ok: false, code: 'BERTH_ERR_SHIM_GONE' })
      this.emit('close', !this.exited)
    })
  }

  static async open (bundle: string): Promise<ShimConnection> {
    // sun_path holds 107 bytes; a bundle under a long data dir is reached through a directory fd
    // (/proc/self/fd/N/shim.sock), as the shim binds it.
    let path = join(bundle, 'shim.sock')
    let dirFd: number | undefined
    if (Buffer.byteLength(path) > 100) {
      dirFd = openSync(bundle, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY)
      path = `/proc/self/fd/${dirFd}/shim.sock`
    }
    try {
      return await new Promise((resolve, reject) => {
        const socket = connect(path)
        socket.once('connect', () => { socket.removeAllListeners('error'); resolve(new ShimConnection(bundle, socket)) })
        socket.once('error', reject)
      })
    } finally {
      if (dirFd !== undefined) closeSync(dirFd)
    }
  }

  private onData (chunk: string): void {
    if (this.skipping) {
      const nl = chunk.indexOf('\n')
      if (nl < 0) return
      this.skipping = false
      chunk = chunk.slice(nl + 1)
    }
    this.buffered += chunk
    let nl: number
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl)
      this.buffered = this.buffered.slice(nl + 1)
      if (line.trim() === '' || line.length > MAX_SHIM_LINE) continue
      let msg: any
      try { msg = JSON.parse(line) } catch { continue }
      if (msg.event === 'exit') {
        this.exited = true
        this.emit('exit', msg as ExitStatus)
      } else if (typeof msg.event === 'string' && msg.event !== 'state') {
        // Unprompted events of the proxy namespace (port bound, call counts).
        this.emit('event', msg)
      } else {
        this.pending.shift()?.(msg)
      }
    }
    if (this.buffered.length > MAX_SHIM_LINE) {
      this.buffered = ''
      this.skipping = true
    }
  }

  private async request (line: string): Promise<any> {
    return await new Promise((resolve) => {
      this.pending.push(resolve)
      this.socket.write(line + '\n')
    })
  }

  async kill (signo: number): Promise<void> {
    const reply = await this.request(`kill ${signo}`)
    if (reply.ok !== true && reply.code !== 'BERTH_ERR_SHIM_GONE') {
      throw berthError(reply.code ?? 'BERTH_ERR_SIGNAL', reply.message ?? `could not send signal ${signo}`, 'the container may have exited already')
    }
  }

  /** The shim's view: pid, running, rulesVersion, chaosHits (totals). */
  async state (): Promise<Record<string, unknown>> {
    return await this.request('state')
  }

  /** Swaps in a rule table (docs/proxy.md); the JSON must be one line. */
  async rules (json: string): Promise<void> {
    const reply = await this.request(`rules ${json}`)
    if (reply.ok !== true && reply.code !== 'BERTH_ERR_SHIM_GONE') {
      throw berthError(reply.code ?? 'BERTH_ERR_RULES', reply.message ?? 'the shim refused the rule table', 'see the daemon log')
    }
  }

  close (): void { this.socket.destroy() }
}

export interface ExecOptions { env: string[], cwd?: string }

/** Spawns `berth-shim exec -` for BUNDLE; fd 3 carries the shim's own failure report, if any. */
export function shimExec (shimPath: string, bundle: string, command: string[], opts: ExecOptions): ChildProcess {
  const args = ['exec', '-']
  for (const e of opts.env) args.push('-e', e)
  if (opts.cwd !== undefined) args.push('--cwd', opts.cwd)
  args.push('--', ...command)
  return spawn(shimPath, args, { stdio: ['pipe', 'pipe', 'pipe', 'pipe'], env: shimEnv(bundle) })
}
