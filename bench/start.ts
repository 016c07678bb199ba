// Start-to-exit latency of /bin/true through berthd's API, side by side with its peers from the
// same run:
//   floor  `unshare -m -p -n -u -i -f chroot ROOTFS /bin/true`: the namespaces alone, no runtime
//   runc   Debian's `runc run` on an OCI bundle with the same rootfs (runc spec defaults)
//   berth  POST /v1/containers {command: ['/bin/true'], autoRemove: true}, then GET …/wait
// Targets (the issue): berth's p50 below runc's and within 5× the floor's. Then memory: berthd's
// idle RSS (target ≤ 80 MB) and the host memory each running container adds (target ≤ 2 MB).
//
// The three are interleaved, one of each per iteration with the order rotating, so the noise of a
// shared machine falls on all three alike. Everything runs in a private temp dir with a private
// daemon, and is removed on exit, on error and on Ctrl-C.
//
// Environment: BENCH_RUNS (default 200), BENCH_WARMUP (10), BENCH_TIMEOUT_S (600),
// BENCH_MEM_CONTAINERS (20).
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiError } from './lib/api.ts'
import type { ApiClient } from './lib/api.ts'
import { createCleanup, onInterrupt } from './lib/cleanup.ts'
import { startDaemon } from './lib/daemon.ts'
import type { Daemon } from './lib/daemon.ts'
import { createDeadline } from './lib/deadline.ts'
import type { Deadline } from './lib/deadline.ts'
import { BenchError, ERR_BENCH_RUN, ERR_BENCH_SETUP } from './lib/errors.ts'
import { intFromEnv, note, reportFailure, runBench, say } from './lib/output.ts'
import {
  cgroupMemory, exitError, killLiveChildren, machineUsedBytes, memoryCgroupOf, parentPid,
  pssBytes, runOk, runTimed, sleep, startTracked, vmRssBytes
} from './lib/proc.ts'
import type { CgroupMemory } from './lib/proc.ts'
import { buildBusyboxRootfs } from './lib/rootfs.ts'
import { prepareRunc } from './lib/runc.ts'
import type { Runc } from './lib/runc.ts'
import { summarize } from './lib/stats.ts'
import type { Summary } from './lib/stats.ts'
import { mark, mb, ms, renderTable } from './lib/table.ts'

const REPO_DIR = fileURLToPath(new URL('..', import.meta.url))
const IMAGE = 'bench-busybox'

const DEFAULT_RUNS = 200
const DEFAULT_WARMUP = 10
const DEFAULT_TIMEOUT_S = 600
const DEFAULT_MEM_CONTAINERS = 20
/** One start, one request: far above any sane latency, low enough to end a hang. */
const STEP_TIMEOUT_MS = 30_000
/** Idle time before reading the daemon's RSS: lets timers, GC and lazy compilation settle. */
const IDLE_SETTLE_MS = 5_000
/** After starting the memory containers: lets shims finish their setup and free what it used. */
const MEM_SETTLE_MS = 3_000

/** sizeof(sockaddr_un.sun_path) − 1 on Linux. */
const SUN_PATH_MAX = 107

const TARGET_P50_VS_RUNC = 1
const TARGET_P50_VS_FLOOR = 5
const TARGET_IDLE_RSS_BYTES = 80e6
const TARGET_PER_CONTAINER_BYTES = 2e6

interface Config {
  runs: number
  warmup: number
  timeoutMs: number
  memContainers: number
}

interface Container {
  id: string
  name: string
  pid?: number
  state?: string
  net?: string
  userns?: string
  init?: boolean
}

interface WaitResult {
  exitCode: number | null
  signal?: string | number | null
  reason?: string
}

type Kind = 'berth' | 'runc' | 'floor'
const KINDS: readonly Kind[] = ['berth', 'runc', 'floor']

function readConfig (): Config {
  return {
    runs: intFromEnv('BENCH_RUNS', DEFAULT_RUNS, 1),
    warmup: intFromEnv('BENCH_WARMUP', DEFAULT_WARMUP, 0),
    timeoutMs: intFromEnv('BENCH_TIMEOUT_S', DEFAULT_TIMEOUT_S, 10) * 1000,
    memContainers: intFromEnv('BENCH_MEM_CONTAINERS', DEFAULT_MEM_CONTAINERS, 1)
  }
}

async function checkPrerequisites (): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new BenchError(ERR_BENCH_SETUP, 'the benchmark needs root (namespaces, cgroups, runc)', 'run it as root')
  }
  for (const [cmd, args] of [['unshare', ['--version']], ['chroot', ['--version']], ['runc', ['--version']]] as const) {
    const r = await runTimed(cmd, args, { timeoutMs: 10_000 }).catch(() => undefined)
    if (r?.code !== 0) {
      throw new BenchError(ERR_BENCH_SETUP, `\`${cmd}\` is missing or broken`, 'sh scripts/system-deps.sh bench installs it')
    }
  }
}

/** One measured start of each kind. berth also reports the POST→201 part of its time. */
interface Runners {
  berth: () => Promise<{ ms: number, createMs: number, goneBeforeWait: boolean, first: Container }>
  runc: (seq: number) => Promise<number>
  floor: () => Promise<number>
}

function makeRunners (api: ApiClient, runc: Runc, rootfs: string): Runners {
  const runcIdPrefix = `berth-bench-${process.pid}`
  return {
    async berth () {
      const t0 = performance.now()
      const c = await api.json<Container>('POST', '/v1/containers', {
        body: { image: IMAGE, command: ['/bin/true'], autoRemove: true },
        timeoutMs: STEP_TIMEOUT_MS
      })
      const createMs = performance.now() - t0
      const ref = encodeURIComponent(c.name ?? c.id)
      let goneBeforeWait = false
      try {
        const w = await api.json<WaitResult>('GET', `/v1/containers/${ref}/wait`, { timeoutMs: STEP_TIMEOUT_MS })
        if (w.exitCode !== 0) {
          throw new BenchError(ERR_BENCH_RUN, `berth container ${c.name} ran /bin/true and ended with ${JSON.stringify(w)}`,
            'see the daemon log')
        }
      } catch (err) {
        // /bin/true may exit, and autoRemove remove it, before the wait request arrives. The time
        // to that 404 still bounds start-to-exit from above; such runs are counted and reported.
        if (!(err instanceof ApiError && err.status === 404)) throw err
        goneBeforeWait = true
      }
      return { ms: performance.now() - t0, createMs, goneBeforeWait, first: c }
    },
    async runc (seq) {
      const r = await runc.run(`${runcIdPrefix}-${seq}`, STEP_TIMEOUT_MS)
      return r.ms
    },
    async floor () {
      const args = ['-m', '-p', '-n', '-u', '-i', '-f', 'chroot', rootfs, '/bin/true']
      const r = await runTimed('unshare', args, { timeoutMs: STEP_TIMEOUT_MS })
      if (r.code !== 0) throw exitError(`unshare ${args.join(' ')}`, r)
      return r.ms
    }
  }
}

interface Samples {
  berth: number[]
  berthCreate: number[]
  runc: number[]
  floor: number[]
  goneBeforeWait: number
  berthContainer?: Container
}

async function measureLatency (runners: Runners, cfg: Config, deadline: Deadline): Promise<Samples> {
  const s: Samples = { berth: [], berthCreate: [], runc: [], floor: [], goneBeforeWait: 0 }
  let runcSeq = 0
  const total = cfg.warmup + cfg.runs
  for (let i = 0; i < total; i++) {
    const measured = i >= cfg.warmup
    // Rotate the order each iteration, so no kind always runs first (or last), and so always
    // right after the same peer's teardown.
    for (let k = 0; k < KINDS.length; k++) {
      const kind = KINDS[(i + k) % KINDS.length]
      deadline.check(`${measured ? 'run' : 'warm-up'} ${i + 1}/${total} (${kind})`)
      if (kind === 'berth') {
        const r = await runners.berth()
        s.berthContainer ??= r.first
        if (measured) {
          s.berth.push(r.ms)
          s.berthCreate.push(r.createMs)
          if (r.goneBeforeWait) s.goneBeforeWait++
        }
      } else if (kind === 'runc') {
        const v = await runners.runc(runcSeq++)
        if (measured) s.runc.push(v)
      } else {
        const v = await runners.floor()
        if (measured) s.floor.push(v)
      }
    }
    if (measured && (i - cfg.warmup + 1) % 50 === 0) note(`${i - cfg.warmup + 1}/${cfg.runs} iterations`)
  }
  return s
}

function reportLatency (s: Samples, runc: Runc): void {
  const sum: Record<string, Summary> = {
    berth: summarize(s.berth),
    berthCreate: summarize(s.berthCreate),
    runc: summarize(s.runc),
    floor: summarize(s.floor)
  }
  const row = (label: string, x: Summary): string[] => [label, String(x.n), ms(x.p50), ms(x.p99), ms(x.mean), ms(x.min), ms(x.max)]
  say('Start-to-exit latency of /bin/true (ms)')
  say(renderTable(['', 'n', 'p50', 'p99', 'mean', 'min', 'max'], [
    row('berth (POST + wait)', sum.berth),
    row('  of which POST→201', sum.berthCreate),
    row('runc run', sum.runc),
    row('floor (unshare+chroot)', sum.floor)
  ]))
  say()
  const vsRunc = sum.berth.p50 / sum.runc.p50
  const vsFloor = sum.berth.p50 / sum.floor.p50
  say(renderTable(['p50 ratio', 'value', 'target', ''], [
    ['berth / runc', `${vsRunc.toFixed(2)}×`, `< ${TARGET_P50_VS_RUNC}×`, mark(vsRunc < TARGET_P50_VS_RUNC)],
    ['berth / floor', `${vsFloor.toFixed(2)}×`, `≤ ${TARGET_P50_VS_FLOOR}×`, mark(vsFloor <= TARGET_P50_VS_FLOOR)]
  ]))
  say(`p99 ratios (no target): berth/runc ${(sum.berth.p99 / sum.runc.p99).toFixed(2)}×, berth/floor ${(sum.berth.p99 / sum.floor.p99).toFixed(2)}×`)
  say()
  const c = s.berthContainer
  say('What each one sets up:')
  say(`  floor: new mount, pid, net, uts and ipc namespaces, chroot; no cgroup, no /proc, no pivot_root`)
  say(`  runc:  namespaces ${runc.namespaces.join(', ')} (runc spec defaults; no user namespace), pivot_root, /proc /dev /sys mounts, a cgroup, capabilities`)
  say(`  berth: ${c === undefined ? '?' : `net=${c.net ?? '?'} userns=${c.userns ?? '?'} init=${String(c.init ?? '?')}`}, overlay rootfs, cgroup, autoRemove; timed over the API (two HTTP requests, one connection each)`)
  if (s.goneBeforeWait > 0) {
    say(`  note: in ${s.goneBeforeWait} of ${s.berth.length} berth runs the container was gone (404) before the wait request; those runs are timed to the 404`)
  }
  say()
}

/**
 * The daemon's VmRSS after IDLE_SETTLE_MS of no requests, and, as its peer, that of a bare
 * `node` (same binary, an empty event loop) idling over the same interval: the difference is
 * what berthd itself holds.
 */
async function idleRss (d: Daemon): Promise<{ daemon?: number, bareNode?: number }> {
  const bare = startTracked(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'])
  try {
    await sleep(IDLE_SETTLE_MS)
    return {
      daemon: await vmRssBytes(d.pid),
      bareNode: bare.pid === undefined ? undefined : await vmRssBytes(bare.pid)
    }
  } finally {
    bare.stop()
  }
}

interface ContainerMemory {
  name: string
  shimPid?: number
  shimPss?: number
  shimInContainerCgroup: boolean
  containerPss?: number
  cgroup?: CgroupMemory
}

async function shimPidOf (dataDir: string, c: Container): Promise<number | undefined> {
  try {
    const st = JSON.parse(await readFile(join(dataDir, 'containers', c.id, 'state'), 'utf8')) as { shimPid?: number }
    if (typeof st.shimPid === 'number') return st.shimPid
  } catch {}
  return c.pid === undefined ? undefined : parentPid(c.pid)
}

async function measureContainerMemory (d: Daemon, dataDir: string, cfg: Config, deadline: Deadline): Promise<void> {
  const ownCgroup = await memoryCgroupOf(process.pid)
  const daemonBefore = await vmRssBytes(d.pid)
  const machineBefore = await machineUsedBytes()
  const started: Container[] = []
  try {
    for (let i = 0; i < cfg.memContainers; i++) {
      deadline.check(`starting memory container ${i + 1}/${cfg.memContainers}`)
      started.push(await d.api.json<Container>('POST', '/v1/containers', {
        body: { image: IMAGE, command: ['/bin/sleep', '600'], autoRemove: true },
        timeoutMs: STEP_TIMEOUT_MS
      }))
    }
    await sleep(MEM_SETTLE_MS)
    const daemonAfter = await vmRssBytes(d.pid)
    const machineAfter = await machineUsedBytes()

    const per: ContainerMemory[] = []
    for (const c of started) {
      const shimPid = await shimPidOf(dataDir, c)
      const shimCg = shimPid === undefined ? undefined : await memoryCgroupOf(shimPid)
      const ctrCg = c.pid === undefined ? undefined : await memoryCgroupOf(c.pid)
      // Read the cgroup the container's process is really in; never the root or the bench's own.
      const cgPath = ctrCg !== undefined && ctrCg !== '/' && ctrCg !== ownCgroup ? ctrCg : `/berth/${c.id}`
      per.push({
        name: c.name,
        shimPid,
        shimPss: shimPid === undefined ? undefined : await pssBytes(shimPid),
        shimInContainerCgroup: shimCg !== undefined && shimCg === ctrCg,
        containerPss: c.pid === undefined ? undefined : await pssBytes(c.pid),
        cgroup: await cgroupMemory(cgPath.replace(/^\//, ''))
      })
    }
    const n = started.length
    const avg = (xs: Array<number | undefined>): number | undefined => {
      const ok = xs.filter((x): x is number => x !== undefined)
      return ok.length === 0 ? undefined : ok.reduce((a, b) => a + b, 0) / ok.length
    }
    const shimPss = avg(per.map(p => p.shimPss))
    const shimCounted = per.some(p => p.shimInContainerCgroup) ? 0 : shimPss
    const cgUsage = avg(per.map(p => p.cgroup?.usageBytes))
    const daemonDelta = daemonBefore === undefined || daemonAfter === undefined ? undefined : (daemonAfter - daemonBefore) / n
    const total = (shimCounted ?? 0) + (cgUsage ?? 0) + Math.max(0, daemonDelta ?? 0)
    const missing = [shimPss === undefined ? 'shim Pss' : '', cgUsage === undefined ? 'cgroup usage' : ''].filter(Boolean)

    say(`Memory each running container adds (${n} containers running \`sleep 600\`, averages per container)`)
    say(renderTable(['component', 'per container', 'how'], [
      ['shim', mb(shimPss), per.some(p => p.shimInContainerCgroup)
        ? 'Pss of /proc/SHIM/smaps_rollup; the shim is in the container\'s cgroup, so counted there, not here'
        : 'Pss of /proc/SHIM/smaps_rollup (shared pages split among the shims)'],
      ['container cgroup', mb(cgUsage), `${per[0]?.cgroup?.dir.replace(/[0-9a-f]{12,}$/, '<id>') ?? 'no memory cgroup found'}: usage (v1 usage_in_bytes includes kmem)`],
      ['  of which anon', mb(avg(per.map(p => p.cgroup?.anonBytes))), 'memory.stat rss (v2: anon)'],
      ['  of which page cache', mb(avg(per.map(p => p.cgroup?.fileBytes))), 'memory.stat cache (v2: file); first toucher pays for shared files'],
      ['  of which kernel', mb(avg(per.map(p => p.cgroup?.kernelBytes))), 'memory.kmem.usage_in_bytes (v2: kernel)'],
      ['  container process', mb(avg(per.map(p => p.containerPss))), 'Pss of the container\'s PID 1 (inside the cgroup figure)'],
      ['daemon RSS delta / n', mb(daemonDelta), `berthd VmRSS ${mb(daemonBefore)} → ${mb(daemonAfter)}, divided by ${n}`],
      ['total', mb(total), 'shim + cgroup + max(0, daemon delta)'],
      ['cross-check (noisy)', mb(machineBefore === undefined || machineAfter === undefined ? undefined : (machineAfter - machineBefore) / n),
        'whole machine MemTotal−MemAvailable delta / n; other work on the machine moves it']
    ], 'lrl'))
    if (missing.length > 0) say(`  note: ${missing.join(' and ')} could not be read, so the total leaves it out`)
    say(`per-container total ${mb(total)} vs target ≤ ${mb(TARGET_PER_CONTAINER_BYTES)}: ${mark(missing.length === 0 && total <= TARGET_PER_CONTAINER_BYTES)}`)
    say()
  } finally {
    await Promise.all(started.map(async (c) => {
      const ref = encodeURIComponent(c.name ?? c.id)
      try {
        await d.api.json('POST', `/v1/containers/${ref}/stop?t=1`, { timeoutMs: STEP_TIMEOUT_MS })
      } catch {}
      try {
        await d.api.json('DELETE', `/v1/containers/${ref}?force=1`, { timeoutMs: STEP_TIMEOUT_MS })
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) note(`removing ${c.name}: ${(err as Error).message}`)
      }
    }))
  }
}

/**
 * Imports the rootfs as IMAGE from the directory, as the issue asks. Should the daemon's directory
 * import fail, a tar of the same directory is imported instead and the run says so: how the image
 * got in does not change what is timed, and the latency figures are still worth having.
 */
async function importImage (api: ApiClient, rootfs: string): Promise<string | undefined> {
  try {
    await importFrom(api, rootfs)
    return undefined
  } catch (err) {
    if (!(err instanceof BenchError)) throw err
    const tar = `${rootfs}.tar`
    await runOk('tar', ['-c', '-f', tar, '-C', rootfs, '--numeric-owner', '.'], { timeoutMs: 60_000 })
    await importFrom(api, tar)
    return `importing the directory failed (${err.message}); imported a tar of it instead`
  }
}

async function importFrom (api: ApiClient, source: string): Promise<void> {
  const lines = await api.ndjson('POST', '/v1/images', { body: { name: IMAGE, source }, timeoutMs: 120_000 })
  const last = lines[lines.length - 1] as { image?: unknown, error?: { code?: string, message?: string, hint?: string } } | undefined
  if (last?.image === undefined) {
    const e = last?.error
    throw new BenchError(ERR_BENCH_RUN, `POST /v1/images ${source}: ${e === undefined ? 'no image in the answer' : `${e.code ?? ''}: ${e.message ?? ''}`}`,
      e?.hint ?? 'see the daemon log')
  }
}

async function main (): Promise<number> {
  const cfg = readConfig()
  const deadline = createDeadline(cfg.timeoutMs, 'BENCH_TIMEOUT_S')
  const cleanup = createCleanup(note)
  const offSignals = onInterrupt(cleanup, () => { deadline.abort(); killLiveChildren() }, note)
  let daemon: Daemon | undefined
  try {
    await checkPrerequisites()
    // Short names: a shim's control socket is DATA_DIR/containers/<64 hex>/shim.sock, and a Unix
    // socket path has at most 107 bytes (sun_path), which leaves 21 for the data dir.
    const tmp = await mkdtemp(join(os.tmpdir(), 'bb-'))
    cleanup.add(`removing ${tmp}`, () => rm(tmp, { recursive: true, force: true }))
    const dataDir = join(tmp, 'd')
    const longestSocket = join(dataDir, 'containers', '0'.repeat(64), 'shim.sock')
    if (Buffer.byteLength(longestSocket) > SUN_PATH_MAX) {
      throw new BenchError(ERR_BENCH_SETUP, `the data dir ${dataDir} is too long for the shims' sockets (${longestSocket}: ${Buffer.byteLength(longestSocket)} > ${SUN_PATH_MAX} bytes)`,
        'set TMPDIR=/tmp')
    }
    const rootfs = join(tmp, 'rootfs')
    const applets = await buildBusyboxRootfs(rootfs)
    const runc = await prepareRunc(join(tmp, 'runc'), rootfs)
    cleanup.add('runc delete -f of leftovers', () => runc.deleteAll())

    const d = await startDaemon({
      repoDir: REPO_DIR,
      dataDir,
      socketPath: join(tmp, 'berth.sock'),
      logPath: join(tmp, 'berthd.log')
    })
    daemon = d
    cleanup.add('stopping berthd', () => d.stop())
    const importNote = await importImage(d.api, rootfs)

    const load = os.loadavg().map(l => l.toFixed(2)).join(' ')
    say(`berth start benchmark: ${cfg.runs} runs of each (after ${cfg.warmup} warm-up runs), interleaved`)
    say(`machine: ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'}), ${mb(os.totalmem())} RAM, kernel ${os.release()}, load ${load}`)
    say(`runc: ${runc.version}`)
    say(`berthd: ${d.info.version ?? '?'} (pid ${d.pid}), node ${process.version}; rootfs: static busybox, ${applets.length} applets`)
    if (importNote !== undefined) say(`note: ${importNote}`)
    say()

    const freshIdle = await idleRss(d)
    const samples = await measureLatency(makeRunners(d.api, runc, rootfs), cfg, deadline)
    reportLatency(samples, runc)

    const workedIdle = await idleRss(d)
    const rssRow = (when: string, r: { daemon?: number, bareNode?: number }): string[] => [
      when, mb(r.daemon), mb(r.bareNode),
      r.daemon === undefined || r.bareNode === undefined ? 'n/a' : `${(r.daemon / r.bareNode).toFixed(2)}×`,
      `≤ ${mb(TARGET_IDLE_RSS_BYTES)}`, mark(r.daemon !== undefined && r.daemon <= TARGET_IDLE_RSS_BYTES)
    ]
    say(`berthd idle RSS (VmRSS after ${IDLE_SETTLE_MS / 1000} s idle; peer: a bare \`node -e 'setInterval(…)'\` of the same binary, idle alongside)`)
    say(renderTable(['when', 'berthd', 'bare node', 'ratio', 'target', ''], [
      rssRow('after start + image import', freshIdle),
      rssRow(`after the ${samples.berth.length + cfg.warmup} berth runs`, workedIdle)
    ]))
    say()

    await measureContainerMemory(d, dataDir, cfg, deadline)
    say(`load average at the end: ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`)
    return 0
  } catch (err) {
    reportFailure(err, daemon?.logPath)
    return 1
  } finally {
    await cleanup.run()
    offSignals()
  }
}

await runBench(main)
