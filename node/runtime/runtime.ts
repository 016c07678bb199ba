// The local container runtime: turns a RunSpec into a bundle and a running shim, keeps the
// container records in the store, applies restart policies, and re-adopts running containers
// after a daemon restart. Containers never depend on this process staying alive: the shim owns
// them, and everything the runtime needs to pick them up again is in the store and the bundle.
import { randomBytes } from 'node:crypto'
import { chmod, chown, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { EventEmitter } from 'node:events'
import { setTimeout as sleepMs } from 'node:timers/promises'
import type { ChildProcess } from 'node:child_process'
import type { ContainerRecord, ImageRecord, ProxySpec } from '../../storage/index.ts'
import { berthError, ConflictError, NotFoundError, UsageError } from '../errors.ts'
import { logger } from '../log.ts'
import { UidAllocator, UID_RANGE_SIZE } from './uid-ranges.ts'
import {
  encodeShimConfig, readExitFile, readShimState, shimCreate, shimExec, ShimConnection,
  type ExitStatus, type ShimConfig
} from './shim.ts'
import { readLog } from './logs.ts'
import { checkMounts, type MountPolicy } from './mounts.ts'

const log = logger('berth:node:runtime')

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
/**
 * The pids limit (processes and threads) of a container started without --pids: Podman's
 * default. Without one a container could fork until the host's pid_max (32768 by default) is
 * used up and nothing else on the host could fork; RLIMIT_NPROC does not help, since each
 * container's uids are its own.
 */
export const DEFAULT_PIDS_LIMIT = 2048
const CPU_PERIOD_US = 100_000
/** Restart backoff: 100 ms doubling to 30 s; a run of 10 s or more resets it (as Docker does). */
const RESTART_BACKOFF_MIN_MS = 100
const RESTART_BACKOFF_MAX_MS = 30_000
const RESTART_RESET_AFTER_MS = 10_000
const REMOVED_EXIT_TTL_MS = 60_000
const REATTACH_RESET_AFTER_MS = 10_000
const REATTACH_BACKOFF_MAX_MS = 1_000
const TERMINATING_SIGNALS = new Set([1, 2, 3, 9, 15])
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/

export interface RunSpec {
  image: string
  command?: string[]
  name?: string
  env?: string[]
  cwd?: string
  cpus?: number
  memoryBytes?: number
  pids?: number
  restart?: 'no' | 'on-failure' | 'always'
  net?: 'private' | 'host'
  userns?: 'private' | 'host'
  init?: boolean
  autoRemove?: boolean
  /** the proxy namespace (docs/proxy.md) */
  ports?: Array<{ name: string, port: number, proto: 'tcp' | 'udp' | 'any' }>
  publish?: Array<{ hostPort: number, port: number, proto: 'tcp' | 'udp' | 'any' }>
  egress?: { mode: 'all' | 'none' | 'cidrs', cidrs: string[] }
  unameRelease?: string
  mounts?: MountSpec[]
  chaosCalls?: string[]
}

/**
 * `--mount HOST:CONTAINER[:ro|rw[,idmap]]`: the host's own files, bound read-only unless `ro` is
 * false, never with setuid bits or device nodes that work, idmapped only when asked for.
 */
export interface MountSpec { src: string, dst: string, ro: boolean, idmap?: boolean }

/**
 * What the proxy namespace needs from a container's life: its ports allocated before it is
 * recorded, its rule table and hosts file written before its shim starts, and the shim's events.
 * The runtime knows nothing of rules; node/proxy implements this.
 */
export interface ProxyHooks {
  /** Host ports etc. for a new container; throws (e.g. a published port in use) before anything is made. */
  allocate (name: string, spec: RunSpec): ProxySpec
  /** A stored container's allocations, at daemon start. */
  claim (rec: ContainerRecord): void
  /** Frees what allocate() or claim() took for this container name. */
  release (name: string): void
  /** Writes the bundle's initial rules and hosts file; returns their paths. */
  prepare (rec: ContainerRecord, bundle: string): Promise<{ rulesFile: string, hostsFile: string }>
  onShimEvent (rec: ContainerRecord, event: Record<string, unknown>): void
}

/** What the runtime needs from storage: the records, written atomically with the name index. */
export interface RuntimeStore {
  loadContainers (): Promise<ContainerRecord[]>
  saveContainer (rec: ContainerRecord): Promise<void>
  deleteContainer (rec: ContainerRecord): Promise<void>
}

export interface RuntimeImages {
  get (name: string): Promise<ImageRecord>
}

export interface RuntimeComponents {
  store: RuntimeStore
  images: RuntimeImages
  proxy?: ProxyHooks
}

export interface RuntimeInit {
  dataDir: string
  shimPath: string
  logMaxBytes?: number
  /** each container's cap on live routed connections (docs/proxy.md); undefined = the shim's default */
  routedMax?: number
  /** false when the host has no pids cgroup controller: containers then get no default pids limit */
  pidsController?: boolean
  /** the API socket: `--mount` refuses it and every directory holding it */
  socketPath?: string
}

interface Entry {
  rec: ContainerRecord
  conn?: ShimConnection
  waiters: Array<(exit: ExitStatus) => void>
  restartTimer?: NodeJS.Timeout
  /** Set while stop/kill/rm is in progress: the exit is the user's doing, no restart. */
  stopping: boolean
  /** Serialises state changes of one container. */
  busy: Promise<unknown>
  /** Attached clients still reading the output: --rm waits for them before removing. */
  holds: number
  purgePending: boolean
  /** Reconnections to a shim that dropped us in a row (see attach). */
  reattaches?: number
}

export interface RuntimeEvents {
  'container:started': [ContainerRecord]
  'container:exited': [ContainerRecord]
  'container:removed': [ContainerRecord]
}

export class Runtime extends EventEmitter<RuntimeEvents> {
  private readonly store: RuntimeStore
  private readonly images: RuntimeImages
  private proxy?: ProxyHooks
  private readonly dataDir: string
  private readonly shimPath: string
  private readonly logMaxBytes: number
  private readonly routedMax?: number
  /** DEFAULT_PIDS_LIMIT where the host has a pids controller; none where it has not (an explicit --pids then fails) */
  private readonly defaultPids?: number
  private readonly mountPolicy: MountPolicy
  private readonly byId = new Map<string, Entry>()
  private readonly byName = new Map<string, string>()
  private readonly uids = new UidAllocator()
  /**
   * How recently removed containers ended, by id and by name, so a client that waits on an
   * auto-removed container after it is gone still learns its exit (docker run --rm does too).
   */
  private readonly removedExits = new Map<string, { exit: ExitStatus, at: number }>()
  private started = false

  constructor (components: RuntimeComponents, init: RuntimeInit) {
    super()
    this.store = components.store
    this.images = components.images
    this.proxy = components.proxy
    this.dataDir = init.dataDir
    this.shimPath = init.shimPath
    this.logMaxBytes = init.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES
    this.routedMax = init.routedMax
    this.defaultPids = init.pidsController === false ? undefined : DEFAULT_PIDS_LIMIT
    this.mountPolicy = { dataDir: init.dataDir, socketPath: init.socketPath }
  }

  get containersDir (): string { return join(this.dataDir, 'containers') }

  /** Set once, before start(): the proxy controller is built on top of the runtime. */
  setProxy (proxy: ProxyHooks): void { this.proxy = proxy }

  bundleOf (id: string): string { return join(this.containersDir, id) }

  /** Loads the records and re-adopts every container whose shim is still there. */
  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    // Only root enters: a bundle holds the container's upper layer (its files, with their
    // setuid bits and owners) and its control socket.
    await mkdir(this.containersDir, { recursive: true, mode: 0o700 })
    await chmod(this.containersDir, 0o700)
    // Bundles made by older versions were 0711 with a 0755 work/: tightened here.
    for (const id of await readdir(this.containersDir).catch(() => [] as string[])) {
      for (const p of [this.bundleOf(id), ...['lower', 'rootfs', 'work'].map(d => join(this.bundleOf(id), d))]) {
        await chmod(p, 0o700).catch(() => {})
      }
    }
    for (const rec of await this.store.loadContainers()) {
      const entry: Entry = { rec, waiters: [], stopping: false, busy: Promise.resolve(), holds: 0, purgePending: false }
      this.byId.set(rec.id, entry)
      this.byName.set(rec.name, rec.id)
      if (rec.uidBase !== undefined) this.uids.claim(rec.uidBase)
      try { this.proxy?.claim(rec) } catch (err: any) { log.error('container %s: %s', rec.name, err.message) }
    }
    for (const entry of this.byId.values()) {
      await this.adopt(entry).catch(err => log.error('re-adopting %s failed: %s', entry.rec.name, err))
    }
  }

  /** Closes the shim connections; containers keep running. */
  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const entry of this.byId.values()) {
      if (entry.restartTimer !== undefined) clearTimeout(entry.restartTimer)
      entry.conn?.removeAllListeners()
      entry.conn?.close()
      entry.conn = undefined
    }
  }

  private async adopt (entry: Entry): Promise<void> {
    const rec = entry.rec
    if (rec.state === 'removing' || (rec.state === 'created' && rec.pid === undefined)) {
      // The daemon died half-way through creating or removing: finish the removal.
      log('cleaning up %s left in state %s', rec.name, rec.state)
      await this.kill9IfOrphaned(rec)
      await this.purge(entry)
      return
    }
    if (rec.state !== 'running') return
    try {
      await this.attach(entry)
      log('re-adopted %s (pid %d)', rec.name, rec.pid)
    } catch {
      // No shim: it exited while we were away. Its exit file says how the container ended.
      const exit = await readExitFile(this.bundleOf(rec.id))
      await this.onExit(entry, exit ?? await this.lostExit(rec))
    }
  }

  /** The shim is gone without an exit file (killed): make sure the container is gone too. */
  private async lostExit (rec: ContainerRecord): Promise<ExitStatus> {
    await this.kill9IfOrphaned(rec)
    return { exitCode: 255, signal: 0, oomKilled: false, finishedAt: Date.now(), reason: 'shim-lost' }
  }

  private async kill9IfOrphaned (rec: ContainerRecord): Promise<void> {
    const state = await readShimState(this.bundleOf(rec.id)).catch(() => undefined)
    const pid = state?.pid ?? rec.pid
    const startTime = state?.pidStartTime ?? rec.pidStartTime
    if (pid === undefined || startTime === undefined) return
    if (await processStartTime(pid) !== startTime) return
    try { process.kill(pid, 'SIGKILL') } catch {}
  }

  private async attach (entry: Entry): Promise<void> {
    const conn = await ShimConnection.open(this.bundleOf(entry.rec.id))
    entry.conn = conn
    conn.once('exit', exit => { this.serial(entry, async () => await this.onExit(entry, exit)) })
    conn.on('event', ev => this.proxy?.onShimEvent(entry.rec, ev))
    // Counters the shim kept while nobody listened (e.g. across a daemon restart).
    conn.state().then(st => this.proxy?.onShimEvent(entry.rec, { ...st, event: 'totals' }), () => {})
    const attachedAt = Date.now()
    conn.once('close', lost => {
      if (entry.conn === conn) entry.conn = undefined
      if (!lost || entry.rec.state !== 'running') return
      this.serial(entry, async () => {
        if (entry.rec.state !== 'running') return
        // The shim drops a client whose socket buffer is full (it will not let one slow reader
        // stall the loop that carries the container's output), so a connection that ends without
        // an exit report does not mean the shim is gone: if shim.sock still answers, attach
        // again. Repeated drops back off (up to 1 s) so a misbehaving shim cannot spin us.
        entry.reattaches = Date.now() - attachedAt >= REATTACH_RESET_AFTER_MS ? 0 : (entry.reattaches ?? 0) + 1
        if (entry.reattaches > 0) await sleepMs(Math.min(REATTACH_BACKOFF_MAX_MS, 10 * 2 ** entry.reattaches))
        if (!this.started || entry.rec.state !== 'running') return
        try {
          await this.attach(entry)
          log('container %s: reattached to its shim', entry.rec.name)
          return
        } catch {}
        const exit = await readExitFile(this.bundleOf(entry.rec.id))
        await this.onExit(entry, exit ?? await this.lostExit(entry.rec))
      })
    })
  }

  private serial (entry: Entry, fn: () => Promise<void>): void {
    const next = entry.busy.then(fn, fn)
    entry.busy = next.catch(err => log.error('container %s: %s', entry.rec.name, err))
  }

  list (all: boolean): ContainerRecord[] {
    const out: ContainerRecord[] = []
    for (const e of this.byId.values()) {
      if (all || e.rec.state === 'running') out.push(e.rec)
    }
    return out.sort((a, b) => b.createdAt - a.createdAt)
  }

  /** By name, full id or unique id prefix (at least 4 characters). */
  get (ref: string): ContainerRecord {
    return this.entry(ref).rec
  }

  private entry (ref: string): Entry {
    const id = this.byName.get(ref) ?? ref
    let entry = this.byId.get(id)
    if (entry === undefined && /^[0-9a-f]{4,63}$/.test(ref)) {
      const matches = [...this.byId.keys()].filter(k => k.startsWith(ref))
      if (matches.length === 1) entry = this.byId.get(matches[0])
    }
    if (entry === undefined) {
      throw new NotFoundError('BERTH_ERR_CONTAINER_NOT_FOUND', `no container "${ref}"`, 'berth ps -a lists them')
    }
    return entry
  }

  /**
   * Creates and starts a container. With `hold`, an auto-removed container is kept after its exit
   * until release() is called, so an attached client reads all of its output first.
   */
  async run (spec: RunSpec, opts: { hold?: boolean } = {}): Promise<ContainerRecord> {
    const image = await this.images.get(spec.image)
    const command = spec.command !== undefined && spec.command.length > 0
      ? spec.command
      : [...(image.config.entrypoint ?? []), ...(image.config.cmd ?? [])]
    if (command.length === 0) {
      throw new UsageError('BERTH_ERR_NO_COMMAND', `image "${image.name}" has no default command`, 'give one: berth run IMAGE COMMAND [ARG...]')
    }
    const id = randomBytes(32).toString('hex')
    const name = spec.name ?? `${image.name.replace(/[^a-zA-Z0-9_.-]/g, '-')}-${id.slice(0, 6)}`
    if (!NAME_RE.test(name)) {
      throw new UsageError('BERTH_ERR_INVALID_NAME', `bad container name "${name}"`, 'use letters, digits, "_", "." and "-", at most 63, starting with a letter or digit')
    }
    if (this.byName.has(name)) {
      throw new ConflictError('BERTH_ERR_NAME_IN_USE', `the name "${name}" is already in use`, `berth rm ${name} removes the old container, or choose another --name`)
    }
    const userns = spec.userns ?? 'private'
    // Bind sources resolved to real paths and checked before anything is made: what is
    // recorded (and bound at every start) is the path that passed the check.
    if (spec.mounts !== undefined) spec = { ...spec, mounts: await checkMounts(spec.mounts, this.mountPolicy, userns) }
    // Ports first: a published port in use fails here, before anything is allocated or made.
    const proxy = this.proxy?.allocate(name, spec)
    let uidBase: number | undefined
    if (userns === 'private') {
      uidBase = this.uids.allocate()
      if (uidBase === undefined) this.proxy?.release(name)
      if (uidBase === undefined) throw berthError('BERTH_ERR_UID_EXHAUSTED', 'no free uid range for another container', 'remove stopped containers (berth ps -a)')
    }
    const env = mergeEnv([`PATH=${DEFAULT_PATH}`, `HOSTNAME=${name}`, 'TERM=xterm', ...(image.config.env ?? [])], spec.env ?? [])
    const rec: ContainerRecord = {
      id,
      name,
      image: image.name,
      command,
      env,
      cwd: spec.cwd ?? image.config.workingDir ?? '/',
      resources: {
        ...(spec.cpus !== undefined ? { cpus: spec.cpus, cpuQuotaUs: Math.round(spec.cpus * CPU_PERIOD_US), cpuPeriodUs: CPU_PERIOD_US } : {}),
        ...(spec.memoryBytes !== undefined ? { memoryBytes: spec.memoryBytes } : {}),
        ...(spec.pids !== undefined || this.defaultPids !== undefined ? { pids: spec.pids ?? this.defaultPids } : {})
      },
      restart: spec.restart ?? 'no',
      net: spec.net ?? 'private',
      userns,
      ...(uidBase !== undefined ? { uidBase, uidCount: UID_RANGE_SIZE } : {}),
      init: spec.init ?? false,
      autoRemove: spec.autoRemove ?? false,
      logMaxBytes: this.logMaxBytes,
      createdAt: Date.now(),
      state: 'created',
      restartCount: 0,
      generation: 1,
      ...(proxy !== undefined ? { proxy } : {})
    }
    const entry: Entry = { rec, waiters: [], stopping: false, busy: Promise.resolve(), holds: opts.hold === true ? 1 : 0, purgePending: false }
    this.byId.set(id, entry)
    this.byName.set(name, id)
    try {
      await this.store.saveContainer(rec)
      await this.makeBundle(rec, image)
      await this.launch(entry, image)
    } catch (err) {
      await this.purge(entry).catch(e => log.error('cleaning up %s failed: %s', name, e))
      throw err
    }
    return rec
  }

  private async makeBundle (rec: ContainerRecord, image: ImageRecord): Promise<void> {
    const bundle = this.bundleOf(rec.id)
    await mkdir(bundle, { mode: 0o700 })
    for (const dir of ['lower', 'rootfs']) await mkdir(join(bundle, dir), { mode: 0o700 })
    // upper/ is the container's "/" (the overlay's root takes its mode), so 0755 like any "/";
    // the 0700 bundle around it keeps host users out. work/ is overlayfs's own.
    for (const [dir, mode] of [['upper', 0o755], ['work', 0o700]] as const) {
      await mkdir(join(bundle, dir), { mode })
      // The container's root owns its writable layer; this is what makes / writable inside.
      if (rec.uidBase !== undefined) await chown(join(bundle, dir), rec.uidBase, rec.uidBase)
    }
    await this.writeShimConfig(rec, image)
  }

  private async writeShimConfig (rec: ContainerRecord, image: ImageRecord): Promise<void> {
    const bundle = this.bundleOf(rec.id)
    const files = await this.proxy?.prepare(rec, bundle)
    // With a memory limit the container gets its own /proc/meminfo, kept by the shim.
    let meminfoFile: string | undefined
    if (rec.resources.memoryBytes !== undefined) {
      meminfoFile = join(bundle, 'meminfo')
      await writeFile(meminfoFile, '', { mode: 0o644 })
    }
    // Checked again at every start: the path may have changed into something refused since
    // (and records from older versions were never checked). The shim then binds the checked
    // path refusing any symlink on it (nofollow), so a swap after the check fails the start.
    const checked = await checkMounts(rec.proxy?.mounts ?? [], this.mountPolicy, rec.userns)
    const mounts = checked.map(m => ({
      src: m.src,
      dst: m.dst,
      opts: [m.ro ? 'ro' : 'rw', 'nosuid', 'nodev', 'nofollow', ...(m.idmap === true && rec.uidBase !== undefined ? ['idmap'] : [])]
    }))
    const cfg: ShimConfig = {
      id: rec.id,
      name: rec.name,
      image: image.rootfs,
      binds: [...image.binds, ...mounts],
      rulesFile: files?.rulesFile,
      hostsFile: files?.hostsFile,
      meminfoFile,
      unameRelease: rec.proxy?.unameRelease,
      chaosCalls: rec.proxy?.chaosCalls ?? [],
      uidBase: rec.uidBase,
      uidCount: rec.uidCount,
      net: rec.net,
      init: rec.init,
      args: rec.command,
      env: rec.env,
      cwd: rec.cwd,
      cgroup: `berth/${rec.id}`,
      cpuQuotaUs: rec.resources.cpuQuotaUs,
      cpuPeriodUs: rec.resources.cpuPeriodUs,
      memoryBytes: rec.resources.memoryBytes,
      // Records made before the default existed have none; they get it at their next start.
      pidsMax: rec.resources.pids ?? this.defaultPids,
      logMaxBytes: rec.logMaxBytes,
      routedMax: this.routedMax
    }
    await writeFile(join(bundle, 'config'), encodeShimConfig(cfg), { mode: 0o600 })
  }

  /** Starts the shim for a bundle that exists, and records the running state. */
  private async launch (entry: Entry, image?: ImageRecord): Promise<void> {
    const rec = entry.rec
    const bundle = this.bundleOf(rec.id)
    if (image === undefined) {
      // A restart: the image record may have changed path since; rewrite the config.
      image = await this.images.get(rec.image)
      await this.writeShimConfig(rec, image)
    }
    await rm(join(bundle, 'exit'), { force: true })
    await rm(join(bundle, 'state'), { force: true })
    const started = await shimCreate(this.shimPath, bundle)
    const state = await readShimState(bundle)
    rec.state = 'running'
    rec.pid = started.pid
    rec.shimPid = started.shimPid
    rec.pidStartTime = state?.pidStartTime
    rec.startedAt = state?.startedAt ?? Date.now()
    delete rec.exitCode
    delete rec.signal
    delete rec.oomKilled
    delete rec.reason
    delete rec.finishedAt
    await this.store.saveContainer(rec)
    try {
      await this.attach(entry)
    } catch {
      // It already exited (a very short command): the exit file is there.
      const exit = await readExitFile(bundle)
      if (exit !== undefined) this.serial(entry, async () => await this.onExit(entry, exit))
      else this.serial(entry, async () => await this.onExit(entry, await this.lostExit(rec)))
    }
    this.emit('container:started', rec)
  }

  private async onExit (entry: Entry, exit: ExitStatus): Promise<void> {
    const rec = entry.rec
    if (rec.state !== 'running') return
    entry.conn?.close()
    entry.conn = undefined
    rec.state = 'exited'
    rec.exitCode = exit.exitCode
    rec.signal = exit.signal
    rec.oomKilled = exit.oomKilled
    rec.reason = entry.stopping ? 'stopped' : exit.reason
    rec.finishedAt = exit.finishedAt
    await this.store.saveContainer(rec)
    log('%s exited: code %d signal %d reason %s', rec.name, exit.exitCode, exit.signal, rec.reason)
    for (const w of entry.waiters.splice(0)) w(exit)
    this.emit('container:exited', rec)
    if (!entry.stopping && this.shouldRestart(rec)) {
      this.scheduleRestart(entry)
    } else if (rec.autoRemove && !entry.stopping) {
      if (entry.holds > 0) entry.purgePending = true
      else await this.purge(entry)
    }
  }

  /** Ends a hold taken by run({ hold: true }). */
  release (id: string): void {
    const entry = this.byId.get(id)
    if (entry === undefined || entry.holds === 0) return
    entry.holds--
    if (entry.holds === 0 && entry.purgePending) {
      entry.purgePending = false
      this.serial(entry, async () => await this.purge(entry))
    }
  }

  private shouldRestart (rec: ContainerRecord): boolean {
    if (rec.restart === 'always') return true
    if (rec.restart === 'on-failure') return rec.exitCode !== 0 || rec.signal !== 0
    return false
  }

  private scheduleRestart (entry: Entry): void {
    const rec = entry.rec
    const ran = (rec.finishedAt ?? Date.now()) - (rec.startedAt ?? 0)
    if (ran >= RESTART_RESET_AFTER_MS) rec.restartCount = 0
    const delay = Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS * 2 ** Math.min(rec.restartCount, 20))
    log('restarting %s in %d ms (policy %s, restart %d)', rec.name, delay, rec.restart, rec.restartCount + 1)
    entry.restartTimer = setTimeout(() => {
      entry.restartTimer = undefined
      this.serial(entry, async () => {
        if (entry.stopping || rec.state !== 'exited' || !this.started) return
        rec.restartCount++
        try {
          await this.launch(entry)
        } catch (err: any) {
          log.error('restart of %s failed: %s', rec.name, err.message)
          rec.reason = `restart failed: ${err.code ?? err.message}`
          await this.store.saveContainer(rec)
          this.scheduleRestart(entry)
        }
      })
    }, delay)
  }

  /** Resolves at the container's next exit (at once with the last one when it is not running). */
  async wait (ref: string, signal?: AbortSignal): Promise<ExitStatus> {
    const removed = this.removedExits.get(ref)
    if (removed !== undefined && !this.byName.has(ref) && !this.byId.has(ref)) return removed.exit
    const entry = this.entry(ref)
    const rec = entry.rec
    if (rec.state !== 'running' && entry.restartTimer === undefined) return exitOf(rec)
    return await new Promise((resolve, reject) => {
      const waiter = (exit: ExitStatus): void => resolve(exit)
      entry.waiters.push(waiter)
      signal?.addEventListener('abort', () => {
        const i = entry.waiters.indexOf(waiter)
        if (i >= 0) entry.waiters.splice(i, 1)
        reject(berthError('BERTH_ERR_ABORTED', 'wait aborted', 'the client went away'))
      }, { once: true })
    })
  }

  async kill (ref: string, signo: number): Promise<ContainerRecord> {
    const entry = this.entry(ref)
    if (entry.rec.state !== 'running' || entry.conn === undefined) {
      if (entry.restartTimer !== undefined) { this.cancelRestart(entry); return entry.rec }
      throw new ConflictError('BERTH_ERR_NOT_RUNNING', `container "${entry.rec.name}" is not running`, 'berth ps -a shows its state')
    }
    // A terminating signal from the user is a manual stop: the restart policy does not apply.
    if (TERMINATING_SIGNALS.has(signo)) entry.stopping = true
    const exited = this.wait(ref)
    await entry.conn.kill(signo)
    if (signo === 9) await exited
    return entry.rec
  }

  async stopContainer (ref: string, timeoutMs: number): Promise<ContainerRecord> {
    const entry = this.entry(ref)
    this.cancelRestart(entry)
    if (entry.rec.state !== 'running' || entry.conn === undefined) return entry.rec
    entry.stopping = true
    const exited = this.wait(ref)
    await entry.conn.kill(15)
    const timer = new Promise<'timeout'>(resolve => setTimeout(() => resolve('timeout'), timeoutMs).unref())
    if (await Promise.race([exited, timer]) === 'timeout') {
      log('%s did not stop within %d ms, sending SIGKILL', entry.rec.name, timeoutMs)
      await entry.conn?.kill(9)
      await exited
    }
    return entry.rec
  }

  private cancelRestart (entry: Entry): void {
    if (entry.restartTimer !== undefined) {
      clearTimeout(entry.restartTimer)
      entry.restartTimer = undefined
      entry.stopping = true
      for (const w of entry.waiters.splice(0)) w(exitOf(entry.rec))
    }
  }

  async remove (ref: string, force: boolean): Promise<void> {
    const entry = this.entry(ref)
    if (entry.rec.state === 'running') {
      if (!force) {
        throw new ConflictError('BERTH_ERR_CONTAINER_RUNNING', `container "${entry.rec.name}" is running`, `berth stop ${entry.rec.name} first, or berth rm -f`)
      }
      await this.kill(ref, 9)
    }
    this.cancelRestart(entry)
    await entry.busy
    await this.purge(entry)
  }

  /** Removes the bundle, the record and the in-memory entry. */
  private async purge (entry: Entry): Promise<void> {
    const rec = entry.rec
    if (rec.state !== 'removing') {
      rec.state = 'removing'
      await this.store.saveContainer(rec)
    }
    entry.conn?.close()
    await rm(this.bundleOf(rec.id), { recursive: true, force: true, maxRetries: 3 })
    await this.store.deleteContainer(rec)
    this.byId.delete(rec.id)
    if (this.byName.get(rec.name) === rec.id) this.byName.delete(rec.name)
    this.uids.release(rec.uidBase)
    this.proxy?.release(rec.name)
    if (rec.state === 'removing' && rec.finishedAt !== undefined) this.rememberExit(rec)
    this.emit('container:removed', rec)
  }

  private rememberExit (rec: ContainerRecord): void {
    const now = Date.now()
    const item = { exit: exitOf(rec), at: now }
    this.removedExits.set(rec.id, item)
    this.removedExits.set(rec.name, item)
    // Bounded in time and count: a minute, and at most 2048 keys (ids and names).
    for (const [k, v] of this.removedExits) {
      if (now - v.at < REMOVED_EXIT_TTL_MS && this.removedExits.size <= 2048) break
      this.removedExits.delete(k)
    }
  }

  /** Sends a running container's shim a new rule table (docs/proxy.md); false if it has no shim. */
  async sendRules (id: string, rulesJson: string): Promise<boolean> {
    const conn = this.byId.get(id)?.conn
    if (conn === undefined) return false
    await conn.rules(rulesJson)
    return true
  }

  exec (ref: string, command: string[], env: string[]): ChildProcess {
    const entry = this.entry(ref)
    if (entry.rec.state !== 'running') {
      throw new ConflictError('BERTH_ERR_NOT_RUNNING', `container "${entry.rec.name}" is not running`, `berth start is not needed: berth run a new one, or check berth logs ${entry.rec.name}`)
    }
    if (command.length === 0) throw new UsageError('BERTH_ERR_NO_COMMAND', 'no command to exec', 'berth exec NAME COMMAND [ARG...]')
    return shimExec(this.shimPath, this.bundleOf(entry.rec.id), command, { env: mergeEnv(entry.rec.env, env) })
  }

  /** The container's log as raw frames; with follow, ends after its exit. */
  logs (ref: string, follow: boolean, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const entry = this.entry(ref)
    const running = entry.rec.state === 'running'
    const done = running && follow ? this.wait(ref, signal).catch(() => undefined) : undefined
    return readLog(this.bundleOf(entry.rec.id), { follow: follow && running, done, signal })
  }
}

export function exitOf (rec: ContainerRecord): ExitStatus {
  return {
    exitCode: rec.exitCode ?? 0,
    signal: rec.signal ?? 0,
    oomKilled: rec.oomKilled ?? false,
    finishedAt: rec.finishedAt ?? 0,
    reason: rec.reason ?? 'exited'
  }
}

/** The exit code `berth run` reports: the code, 128+signal when killed, 137 after an OOM kill. */
export function exitCodeOf (exit: ExitStatus): number {
  if (exit.oomKilled) return 137
  if (exit.signal > 0) return 128 + exit.signal
  return exit.exitCode
}

/** KEY=VALUE lists: later entries override earlier ones with the same key. */
export function mergeEnv (base: string[], overrides: string[]): string[] {
  const map = new Map<string, string>()
  for (const kv of [...base, ...overrides]) {
    const eq = kv.indexOf('=')
    map.set(eq < 0 ? kv : kv.slice(0, eq), kv)
  }
  return [...map.values()]
}

/** Field 22 of /proc/PID/stat, or undefined when the process is gone. */
export async function processStartTime (pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[19])
  } catch {
    return undefined
  }
}
