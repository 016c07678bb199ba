// The proxy namespace's costs (issue 3, "Benchmark"), each figure side by side with its peers
// from the same run:
//   1. throughput, iperf3 (one stream): container → container through the virtual service
//      "iperf" (the client's connect is routed by the supervisor, the data then flows on host
//      sockets) vs host loopback direct vs a userspace relay (socat) in front of the same host
//      server. Target: berth ≥ 0.95 of direct.
//   2. connections per second (bench/native/connrate.c): an in-container client connecting to a
//      service by name, every connect trapped and routed, vs a host client connecting to the same
//      server's host port. Target: ≥ 0.6 of direct; also with CONCURRENCY client threads, which
//      the supervisor must serve in parallel.
//   3. untrapped syscalls (bench/native/sysloop.c): getpid and 1-byte reads of /dev/zero in a
//      container (behind its seccomp filter) vs the same binary on the host. Target: host/container
//      ≥ 0.98. Also open+close untrapped and with `--chaos-calls open`, whose cost the issue asks
//      the benchmark to report, and, as the floor, the host binary under an allow-all seccomp
//      filter (what any filter costs an untrapped call on this kernel).
//
// Each part's repetitions are interleaved (one of each kind per round, the order rotating), so
// the noise of a shared machine falls on all kinds alike, and the median round is reported.
// Everything runs on loopback with a private daemon in a private temp dir; containers, the
// daemon, host servers and the temp dir are removed on exit, on error and on Ctrl-C.
//
// Environment: BENCH_IPERF_ROUNDS (3), BENCH_IPERF_SECONDS (5), BENCH_CONN_ROUNDS (3),
// BENCH_CONN_SECONDS (3), BENCH_CONN_CONCURRENCY (4), BENCH_SYSCALL_ROUNDS (5),
// BENCH_SYSCALL_CALLS (2000000), BENCH_TIMEOUT_S (900).
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCleanup, onInterrupt } from './lib/cleanup.ts'
import { createCli } from './lib/cli.ts'
import type { Cli } from './lib/cli.ts'
import { logTail, startDaemon } from './lib/daemon.ts'
import type { Daemon } from './lib/daemon.ts'
import { createDeadline } from './lib/deadline.ts'
import type { Deadline } from './lib/deadline.ts'
import { BenchError, ERR_BENCH_INTERRUPTED, ERR_BENCH_RUN, ERR_BENCH_SETUP, ERR_BENCH_TIMEOUT } from './lib/errors.ts'
import { intFromEnv, note, reportFailure, runBench, say } from './lib/output.ts'
import { ccVersion, compileC } from './lib/native.ts'
import { freePort, waitForPort } from './lib/net.ts'
import { exitError, killLiveChildren, runTimed, sleep, startTracked } from './lib/proc.ts'
import type { TimedExit } from './lib/proc.ts'
import { summarize } from './lib/stats.ts'
import type { Summary } from './lib/stats.ts'
import { mark, mb, renderTable } from './lib/table.ts'

const REPO_DIR = fileURLToPath(new URL('..', import.meta.url))
const NATIVE_DIR = join(REPO_DIR, 'bench/native')
/** Where the compiled C programs appear inside containers (--mount TMP/bin:BENCH_BIN:ro). */
const BENCH_BIN = '/opt/bench'
/** The built-in image: the host's /usr, so iperf3 is there. */
const IMAGE = 'host'

const IPERF_NAME = 'iperf'
const IPERF_PORT = 5201
const CONN_NAME = 'cr'
const CONN_PORT = 7000
/** berthd's host ports come from a private block of its range, so other daemons on the machine
 * (tests running alongside) do not hand out the same ones. */
const PORT_BLOCK = 100
const NODE_RANGE: [number, number] = [30000, 32767]

/** sizeof(sockaddr_un.sun_path) − 1 on Linux. */
const SUN_PATH_MAX = 107
/** Starting a container, binding, being routed: far above normal, low enough to end a hang. */
const STEP_TIMEOUT_MS = 30_000
/** iperf3's first second (slow start, the container's start) is left out of its figure. */
const IPERF_OMIT_S = 1
/** connrate stops at this many connects even if its time is not up. */
const CONN_MAX = 5_000_000
/** sysloop stops each loop after this long even if its count is not reached. */
const SYSCALL_MAX_MS = 3000

const TARGET_THROUGHPUT = 0.95
const TARGET_CONN_RATE = 0.6
const TARGET_SYSCALL = 0.98
/** What the issue measured for the peers on this machine, printed next to the figures. */
const SOCAT_REFERENCE = 0.3
const NAIVE_CONN_REFERENCE = 0.3

interface Config {
  iperfRounds: number
  iperfSeconds: number
  connRounds: number
  connSeconds: number
  connConcurrency: number
  syscallRounds: number
  syscallCalls: number
  timeoutMs: number
}

function readConfig (): Config {
  return {
    iperfRounds: intFromEnv('BENCH_IPERF_ROUNDS', 3, 1),
    iperfSeconds: intFromEnv('BENCH_IPERF_SECONDS', 5, 1),
    connRounds: intFromEnv('BENCH_CONN_ROUNDS', 3, 1),
    connSeconds: intFromEnv('BENCH_CONN_SECONDS', 3, 1),
    connConcurrency: intFromEnv('BENCH_CONN_CONCURRENCY', 4, 2),
    syscallRounds: intFromEnv('BENCH_SYSCALL_ROUNDS', 5, 1),
    syscallCalls: intFromEnv('BENCH_SYSCALL_CALLS', 2_000_000, 1000),
    timeoutMs: intFromEnv('BENCH_TIMEOUT_S', 900, 30) * 1000
  }
}

async function checkPrerequisites (): Promise<{ iperf3: string, socat: string, cc: string }> {
  if (process.getuid?.() !== 0) {
    throw new BenchError(ERR_BENCH_SETUP, 'the benchmark needs root (namespaces, cgroups)', 'run it as root')
  }
  const version = async (cmd: string, args: string[], line: number): Promise<string> => {
    const r = await runTimed(cmd, args, { timeoutMs: 10_000, captureStdout: true }).catch(() => undefined)
    if (r?.code !== 0) {
      throw new BenchError(ERR_BENCH_SETUP, `\`${cmd}\` is missing or broken`, 'sh scripts/system-deps.sh bench installs it')
    }
    return (r.stdout.split('\n')[line] ?? '').trim()
  }
  return {
    iperf3: await version('iperf3', ['--version'], 0),
    socat: await version('socat', ['-V'], 1),
    cc: await ccVersion()
  }
}

/**
 * One kind per round in a rotating order: no kind always runs first, or right after the same
 * peer. A kind that fails (its setup, or a run) is recorded in FAILED with the reason and skipped
 * from then on, so its peers are still measured; a timeout or an interrupt ends the run.
 */
async function interleave<K extends string> (kinds: readonly K[], rounds: number, deadline: Deadline, what: string,
  failed: Map<K, string>, measure: (kind: K) => Promise<void>): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(i + k) % kinds.length]
      if (failed.has(kind)) continue
      deadline.check(`${what} round ${i + 1}/${rounds} (${kind})`)
      try {
        await measure(kind)
      } catch (err) {
        if (!isPartFailure(err)) throw err
        failed.set(kind, `round ${i + 1}: ${err.toLine()}`)
      }
    }
  }
}

/** A BenchError that ends one kind or part, not the run (timeouts and interrupts end the run). */
function isPartFailure (err: unknown): err is BenchError {
  return err instanceof BenchError && err.code !== ERR_BENCH_TIMEOUT && err.code !== ERR_BENCH_INTERRUPTED
}

/** Runs SETUP; if it fails, marks KINDS failed with the reason and returns undefined. */
async function setUp<K extends string, T> (failed: Map<K, string>, kinds: readonly K[], setup: () => Promise<T>): Promise<T | undefined> {
  try {
    return await setup()
  } catch (err) {
    if (!isPartFailure(err)) throw err
    for (const k of kinds) if (!failed.has(k)) failed.set(k, `setup: ${err.toLine()}`)
    return undefined
  }
}

/** Lines saying which kinds could not be measured and why (kinds with the same reason on one
 * line); each kind counts as a failure of the run. */
function reportFailures (ctx: Context, failed: Map<string, string>): void {
  const byReason = new Map<string, string[]>()
  for (const [kind, why] of failed) byReason.set(why, [...(byReason.get(why) ?? []), kind])
  for (const [why, kinds] of byReason) say(`  not measured: ${kinds.join(', ')}: ${why}`)
  ctx.failures += failed.size
}

function ratio (a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : 'n/a'
}

function atLeast (a: number, b: number, target: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? mark(a / b >= target) : 'n/a'
}

/** Parses the last line of a program's stdout as JSON, or says what came instead. */
function lastJson<T> (what: string, r: TimedExit): T {
  const line = r.stdout.trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(line) as T
  } catch {
    throw new BenchError(ERR_BENCH_RUN, `${what}: no JSON on stdout (exit ${String(r.code)}): ${(line || r.stderr.trim()).slice(0, 300)}`,
      'run the command by hand to see why')
  }
}

interface Context {
  cfg: Config
  cli: Cli
  deadline: Deadline
  tmp: string
  bin: string
  /** Tracks host processes (iperf3 -s, socat) for cleanup. */
  track: (cmd: string, args: readonly string[]) => void
  /** Kinds that could not be measured, over all parts: the run then exits 1. */
  failures: number
}

/** `berth run --rm host …` with the C programs mounted at BENCH_BIN. */
function runInContainer (ctx: Context, flags: readonly string[], command: readonly string[], timeoutMs: number): Promise<TimedExit> {
  return ctx.cli.run(['run', '--rm', '--mount', `${ctx.bin}:${BENCH_BIN}:ro`, ...flags, IMAGE, ...command], timeoutMs)
}

interface PortEntry { workload: string, name: string, port: number, hostAddress: string, hostPort: number, bound?: boolean }

/** The host port berthd gave WORKLOAD's port NAME, once the workload has bound it and it accepts. */
async function hostPortOf (ctx: Context, workload: string, name: string): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    ctx.deadline.check(`waiting for ${workload}'s port ${name}`)
    const list = JSON.parse(await ctx.cli.ok(['port', 'ls', '--json'], STEP_TIMEOUT_MS)) as PortEntry[]
    const p = list.find(e => e.workload === workload && e.name === name)
    if (p !== undefined && p.bound !== false && p.hostPort > 0) {
      await waitForPort('127.0.0.1', p.hostPort, STEP_TIMEOUT_MS, `${workload}'s port ${name} (host port ${p.hostPort})`)
      return p.hostPort
    }
    if (performance.now() - t0 > STEP_TIMEOUT_MS) {
      const logs = await ctx.cli.run(['logs', workload], STEP_TIMEOUT_MS).catch(() => undefined)
      throw new BenchError(ERR_BENCH_RUN, `${workload} has not bound its port ${name} within ${STEP_TIMEOUT_MS} ms (berth port ls: ${JSON.stringify(list)}; its log: ${(logs?.stdout ?? '').trim().slice(-300)})`,
        'see the daemon log; is the proxy supervisor in this build?')
    }
    await sleep(100)
  }
}

async function removeContainer (ctx: Context, name: string): Promise<void> {
  await ctx.cli.run(['rm', '-f', name], STEP_TIMEOUT_MS)
}

// ---- 1. throughput ----

type IperfKind = 'berth' | 'direct' | 'socat' | 'published'
const IPERF_KINDS: readonly IperfKind[] = ['berth', 'direct', 'socat', 'published']

interface IperfJson {
  error?: string
  end?: { sum_received?: { bits_per_second?: number }, sum_sent?: { retransmits?: number } }
}

function iperfArgs (host: string, port: number, cfg: Config): string[] {
  return ['-c', host, '-p', String(port), '-t', String(cfg.iperfSeconds), '-O', String(IPERF_OMIT_S), '-J']
}

function iperfBitsPerSecond (what: string, r: TimedExit): number {
  let j: IperfJson
  try {
    j = JSON.parse(r.stdout) as IperfJson
  } catch {
    throw new BenchError(ERR_BENCH_RUN, `${what}: iperf3 printed no JSON (exit ${String(r.code)}): ${(r.stdout.trim() || r.stderr.trim()).slice(0, 300)}`,
      'run the command by hand to see why')
  }
  const bps = j.end?.sum_received?.bits_per_second
  if (j.error !== undefined || r.code !== 0 || typeof bps !== 'number') {
    throw new BenchError(ERR_BENCH_RUN, `${what}: iperf3 failed (exit ${String(r.code)}): ${j.error ?? 'no sum_received in its report'}`,
      'run the command by hand to see why')
  }
  return bps
}

async function measureThroughput (ctx: Context): Promise<void> {
  const { cfg } = ctx
  const timeoutMs = (cfg.iperfSeconds + IPERF_OMIT_S) * 1000 + STEP_TIMEOUT_MS
  const failed = new Map<IperfKind, string>()
  // Host side: one iperf3 server, reached directly and through socat.
  const directPort = await setUp(failed, ['direct', 'socat'], async () => {
    const port = await freePort()
    ctx.track('iperf3', ['-s', '-p', String(port), '-B', '127.0.0.1'])
    await waitForPort('127.0.0.1', port, STEP_TIMEOUT_MS, `iperf3 -s -p ${port}`)
    return port
  })
  const socatPort = directPort === undefined
    ? undefined
    : await setUp(failed, ['socat'], async () => {
      const port = await freePort()
      ctx.track('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `TCP:127.0.0.1:${directPort}`])
      await waitForPort('127.0.0.1', port, STEP_TIMEOUT_MS, `socat on ${port}`)
      return port
    })
  // Container side: the server declares its port; the client reaches it by the service name.
  const publishedPort = await setUp(failed, ['berth', 'published'], async () => {
    await ctx.cli.ok(['run', '-d', '--name', IPERF_NAME, '--port', `${IPERF_NAME}:${IPERF_PORT}`, IMAGE,
      'iperf3', '-s', '-p', String(IPERF_PORT)], STEP_TIMEOUT_MS)
    return await hostPortOf(ctx, IPERF_NAME, IPERF_NAME)
  })

  const hostClient = async (port: number | undefined, what: string): Promise<number> => {
    const args = iperfArgs('127.0.0.1', port ?? 0, cfg)
    const r = await runTimed('iperf3', args, { timeoutMs, captureStdout: true })
    return iperfBitsPerSecond(`iperf3 ${args.join(' ')} (${what})`, r)
  }
  const samples: Record<IperfKind, number[]> = { berth: [], direct: [], socat: [], published: [] }
  const run: Record<IperfKind, () => Promise<number>> = {
    async berth () {
      const args = iperfArgs(IPERF_NAME, IPERF_PORT, cfg)
      const r = await ctx.cli.run(['run', '--rm', IMAGE, 'iperf3', ...args], timeoutMs)
      return iperfBitsPerSecond(`berth run --rm host iperf3 ${args.join(' ')}`, r)
    },
    direct: () => hostClient(directPort, 'direct'),
    socat: () => hostClient(socatPort, 'through socat'),
    published: () => hostClient(publishedPort, 'the container\'s host port')
  }
  try {
    await interleave(IPERF_KINDS, cfg.iperfRounds, ctx.deadline, 'throughput', failed, async (kind) => {
      samples[kind].push(await run[kind]())
    })
  } finally {
    await removeContainer(ctx, IPERF_NAME)
  }

  const s = Object.fromEntries(IPERF_KINDS.map(k => [k, summarize(samples[k])])) as Record<IperfKind, Summary>
  const gbit = (bps: number): string => Number.isFinite(bps) ? (bps / 1e9).toFixed(2) : 'n/a'
  const row = (label: string, k: IperfKind): string[] => [label, gbit(s[k].p50), gbit(s[k].min), gbit(s[k].max), ratio(s[k].p50, s.direct.p50)]
  say(`1. Throughput, iperf3 one stream (Gbit/s received, ${cfg.iperfRounds} rounds × ${cfg.iperfSeconds} s after ${IPERF_OMIT_S} s omitted; median round)`)
  say(renderTable(['path', 'median', 'min', 'max', 'vs direct'], [
    row(`berth: container → service "${IPERF_NAME}" → container`, 'berth'),
    row('direct: host loopback, 127.0.0.1', 'direct'),
    row('socat: host → socat relay → same host server', 'socat'),
    row('host → container server\'s host port', 'published')
  ]))
  say()
  say(renderTable(['ratio (median)', 'value', 'target', ''], [
    ['berth / direct', ratio(s.berth.p50, s.direct.p50), `≥ ${TARGET_THROUGHPUT}`, atLeast(s.berth.p50, s.direct.p50, TARGET_THROUGHPUT)],
    ['socat / direct', ratio(s.socat.p50, s.direct.p50), `(issue: ~${SOCAT_REFERENCE})`, ''],
    ['berth / socat', ratio(s.berth.p50, s.socat.p50), '', '']
  ], 'lrll'))
  say('  berth: the client\'s connects (control and data) are trapped and routed once; the bytes then flow on host sockets, with no copy in between.')
  say('  last row: the same container server from a host client, i.e. without interception on the client side.')
  reportFailures(ctx, failed)
  say()
}

// ---- 2. connections per second ----

type ConnKind = 'berth' | 'direct' | 'berth-par' | 'direct-par'
const CONN_KINDS: readonly ConnKind[] = ['berth', 'direct', 'berth-par', 'direct-par']

interface ConnJson { connects: number, errors: number, seconds: number, rate: number, threads: number, firstError: string }

async function measureConnRate (ctx: Context): Promise<void> {
  const { cfg } = ctx
  const serverThreads = Math.min(4, os.availableParallelism())
  const failed = new Map<ConnKind, string>()
  let serverNote: string | undefined
  let hostPort = await setUp(failed, ['berth', 'berth-par'], async () => {
    await ctx.cli.ok(['run', '-d', '--name', CONN_NAME, '--port', `${CONN_NAME}:${CONN_PORT}`, '--mount', `${ctx.bin}:${BENCH_BIN}:ro`,
      IMAGE, `${BENCH_BIN}/connrate`, 'server', String(CONN_PORT), String(serverThreads)], STEP_TIMEOUT_MS)
    return await hostPortOf(ctx, CONN_NAME, CONN_NAME)
  })
  if (hostPort === undefined) {
    // No container server: the direct figures are still worth having, against the same program
    // on the host; the report says so.
    hostPort = await setUp(failed, ['direct', 'direct-par'], async () => {
      const port = await freePort()
      ctx.track(join(ctx.bin, 'connrate'), ['server', String(port), String(serverThreads)])
      await waitForPort('127.0.0.1', port, STEP_TIMEOUT_MS, `connrate server ${port}`)
      return port
    })
    serverNote = 'the container server could not start, so direct ran against the same program on the host'
  }

  const timeoutMs = cfg.connSeconds * 1000 + STEP_TIMEOUT_MS
  const clientArgs = (host: string, port: number, threads: number): string[] =>
    ['client', host, String(port), String(cfg.connSeconds), String(CONN_MAX), String(threads)]
  const samples: Record<ConnKind, number[]> = { berth: [], direct: [], 'berth-par': [], 'direct-par': [] }
  const errors: string[] = []
  const once = async (kind: ConnKind): Promise<number> => {
    const threads = kind.endsWith('-par') ? cfg.connConcurrency : 1
    let r: TimedExit
    let what: string
    if (kind.startsWith('berth')) {
      const args = clientArgs(CONN_NAME, CONN_PORT, threads)
      what = `berth run host ${BENCH_BIN}/connrate ${args.join(' ')}`
      r = await runInContainer(ctx, [], [`${BENCH_BIN}/connrate`, ...args], timeoutMs)
    } else {
      const args = clientArgs('127.0.0.1', hostPort ?? 0, threads)
      what = `connrate ${args.join(' ')}`
      r = await runTimed(join(ctx.bin, 'connrate'), args, { timeoutMs, captureStdout: true })
    }
    if (r.code !== 0) throw exitError(what, r)
    const j = lastJson<ConnJson>(what, r)
    if (j.errors > 0) errors.push(`${kind}: ${j.errors} of ${j.connects} connects failed (first: ${j.firstError})`)
    return j.rate
  }
  try {
    await interleave(CONN_KINDS, cfg.connRounds, ctx.deadline, 'connection rate', failed, async (kind) => {
      samples[kind].push(await once(kind))
    })
  } finally {
    await removeContainer(ctx, CONN_NAME)
  }

  const s = Object.fromEntries(CONN_KINDS.map(k => [k, summarize(samples[k])])) as Record<ConnKind, Summary>
  const rate = (v: number): string => Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a'
  const row = (label: string, k: ConnKind): string[] => [label, rate(s[k].p50), rate(s[k].min), rate(s[k].max)]
  say(`2. Connections per second, connect + close (${cfg.connRounds} rounds × ${cfg.connSeconds} s; median round; server: connrate, ${serverThreads} accept threads, in a container with --port)`)
  say(renderTable(['client', 'median', 'min', 'max'], [
    row(`berth: in a container, to "${CONN_NAME}:${CONN_PORT}" (trapped, routed)`, 'berth'),
    row(`direct: on the host, to 127.0.0.1:${hostPort ?? '?'} (its host port)`, 'direct'),
    row(`berth, ${cfg.connConcurrency} threads`, 'berth-par'),
    row(`direct, ${cfg.connConcurrency} threads`, 'direct-par')
  ]))
  say()
  say(renderTable(['ratio (median)', 'value', 'target', ''], [
    ['berth / direct, 1 thread', ratio(s.berth.p50, s.direct.p50), `≥ ${TARGET_CONN_RATE}`, atLeast(s.berth.p50, s.direct.p50, TARGET_CONN_RATE)],
    [`berth / direct, ${cfg.connConcurrency} threads`, ratio(s['berth-par'].p50, s['direct-par'].p50), `≥ ${TARGET_CONN_RATE}`,
      atLeast(s['berth-par'].p50, s['direct-par'].p50, TARGET_CONN_RATE)]
  ], 'lrll'))
  say(`  (issue: a naive single-threaded supervisor measured ~${NAIVE_CONN_REFERENCE} of direct here)`)
  const perConnUs = (k: ConnKind, d: ConnKind): string => {
    const extra = 1e6 / s[k].p50 - 1e6 / s[d].p50
    return Number.isFinite(extra) ? `${extra.toFixed(1)} µs` : 'n/a'
  }
  say(`  added per connect (1 / rate − 1 / direct rate): ${perConnUs('berth', 'direct')} with 1 thread, ${perConnUs('berth-par', 'direct-par')} per connect with ${cfg.connConcurrency} threads`)
  if (serverNote !== undefined) say(`  note: ${serverNote}`)
  for (const e of errors) say(`  note: ${e}`)
  reportFailures(ctx, failed)
  say()
}

// ---- 3. syscalls ----

type SysKind = 'host' | 'filter' | 'container' | 'trapped'
const SYS_KINDS: readonly SysKind[] = ['host', 'filter', 'container', 'trapped']
type Call = 'getpid' | 'read' | 'open'
const CALLS: readonly Call[] = ['getpid', 'read', 'open']

type SysJson = Record<Call, { calls: number, chunks: number, bestNs: number, medianNs: number }>

async function measureSyscalls (ctx: Context): Promise<void> {
  const { cfg } = ctx
  const timeoutMs = 3 * SYSCALL_MAX_MS + STEP_TIMEOUT_MS
  const none = (): Record<Call, number[]> => ({ getpid: [], read: [], open: [] })
  const best: Record<SysKind, Record<Call, number[]>> = { host: none(), filter: none(), container: none(), trapped: none() }
  const calls: Partial<Record<Call, number>> = {}
  const failed = new Map<SysKind, string>()
  await interleave(SYS_KINDS, cfg.syscallRounds, ctx.deadline, 'syscalls', failed, async (kind) => {
    let r: TimedExit
    let what: string
    if (kind === 'host' || kind === 'filter') {
      const self = join(ctx.bin, 'sysloop')
      const args = [...(kind === 'filter' ? ['--allow-all-filter'] : []), String(cfg.syscallCalls), self, String(SYSCALL_MAX_MS)]
      what = `${self} ${args.join(' ')}`
      r = await runTimed(self, args, { timeoutMs, captureStdout: true })
    } else {
      const self = `${BENCH_BIN}/sysloop`
      const flags = kind === 'trapped' ? ['--chaos-calls', 'open'] : []
      const args = [String(cfg.syscallCalls), self, String(SYSCALL_MAX_MS)]
      what = `berth run ${[...flags, IMAGE, self, ...args].join(' ')}`
      r = await runInContainer(ctx, flags, [self, ...args], timeoutMs)
    }
    if (r.code !== 0) throw exitError(what, r)
    const j = lastJson<SysJson>(what, r)
    for (const c of CALLS) {
      best[kind][c].push(j[c].bestNs)
      calls[c] = Math.min(calls[c] ?? Infinity, j[c].calls)
    }
  })
  const med = (k: SysKind, c: Call): number => summarize(best[k][c]).p50
  const ns = (v: number): string => Number.isFinite(v) ? v.toFixed(1) : 'n/a'
  const row = (label: string, c: Call, inside: SysKind, target: boolean): string[] => [
    label, String(calls[c] ?? 'n/a'), ns(med('host', c)), ns(med('filter', c)), ns(med(inside, c)),
    ratio(med('host', c), med(inside, c)), target ? `≥ ${TARGET_SYSCALL}` : '', target ? atLeast(med('host', c), med(inside, c), TARGET_SYSCALL) : '',
    ratio(med('filter', c), med(inside, c))
  ]
  say(`3. Syscall cost (ns per call; best of 10 chunks per run, median of ${cfg.syscallRounds} runs; the same binary on the host and, bind-mounted, in containers)`)
  say(renderTable(['call', 'calls/run', 'host', 'host+allow-all', 'container', 'host / container', 'target', '', 'allow-all / container'], [
    row('getpid (untrapped)', 'getpid', 'container', true),
    row('read 1 B of /dev/zero (untrapped)', 'read', 'container', true),
    row('open + close (untrapped)', 'open', 'container', false),
    row('open + close, --chaos-calls open', 'open', 'trapped', false)
  ], 'lrrrrrllr'))
  say('  host+allow-all: the same binary on the host under a seccomp filter that allows everything: what any filter costs on this kernel;')
  say('  allow-all / container: what berth\'s filter (and the container) adds beyond that.')
  const trapCost = med('trapped', 'open') - med('container', 'open')
  say(`  cost of trapping open (--chaos-calls open, no rule): ${Number.isFinite(trapCost) ? `${(trapCost / 1000).toFixed(2)} µs` : 'n/a'} more per open + close than untrapped in a container (${ratio(med('trapped', 'open'), med('container', 'open'))})`)
  say(`  with --chaos-calls open, getpid ${ns(med('trapped', 'getpid'))} ns and read ${ns(med('trapped', 'read'))} ns`)
  reportFailures(ctx, failed)
  say()
}

// ---- main ----

async function main (): Promise<number> {
  const cfg = readConfig()
  const deadline = createDeadline(cfg.timeoutMs, 'BENCH_TIMEOUT_S')
  const cleanup = createCleanup(note)
  const offSignals = onInterrupt(cleanup, () => { deadline.abort(); killLiveChildren() }, note)
  let daemon: Daemon | undefined
  try {
    const versions = await checkPrerequisites()
    // Short names: a shim's control socket is DATA_DIR/containers/<64 hex>/shim.sock, and a Unix
    // socket path has at most 107 bytes (sun_path).
    const tmp = await mkdtemp(join(os.tmpdir(), 'bp-'))
    cleanup.add(`removing ${tmp}`, () => rm(tmp, { recursive: true, force: true }))
    const dataDir = join(tmp, 'd')
    const longestSocket = join(dataDir, 'containers', '0'.repeat(64), 'shim.sock')
    if (Buffer.byteLength(longestSocket) > SUN_PATH_MAX) {
      throw new BenchError(ERR_BENCH_SETUP, `the data dir ${dataDir} is too long for the shims' sockets (${longestSocket}: ${Buffer.byteLength(longestSocket)} > ${SUN_PATH_MAX} bytes)`,
        'set TMPDIR=/tmp')
    }
    // The containers' root (an unprivileged uid) must be able to run what is mounted from here.
    const bin = join(tmp, 'bin')
    await mkdir(bin)
    await chmod(bin, 0o755)
    await compileC(join(NATIVE_DIR, 'connrate.c'), join(bin, 'connrate'))
    await compileC(join(NATIVE_DIR, 'sysloop.c'), join(bin, 'sysloop'))

    const blocks = Math.floor((NODE_RANGE[1] - NODE_RANGE[0] + 1) / PORT_BLOCK)
    const lo = NODE_RANGE[0] + PORT_BLOCK * (process.pid % blocks)
    const portRange = `${lo}-${lo + PORT_BLOCK - 1}`
    const socketPath = join(tmp, 'berth.sock')
    const d = await startDaemon({
      repoDir: REPO_DIR,
      dataDir,
      socketPath,
      logPath: join(tmp, 'berthd.log'),
      extraArgs: ['--port-range', portRange]
    })
    daemon = d
    cleanup.add('stopping berthd', () => d.stop())
    const cli = createCli(REPO_DIR, socketPath)
    const ctx: Context = {
      cfg,
      cli,
      deadline,
      tmp,
      bin,
      track (cmd, args) {
        const p = startTracked(cmd, args)
        cleanup.add(`stopping ${cmd}`, () => { p.stop() })
      },
      failures: 0
    }

    const load = os.loadavg().map(l => l.toFixed(2)).join(' ')
    say('berth proxy benchmark: each part\'s kinds interleaved, one of each per round, order rotating')
    say(`machine: ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'}), ${mb(os.totalmem())} RAM, kernel ${os.release()}, load ${load}`)
    say(`berthd: ${d.info.version ?? '?'} (pid ${d.pid}, host ports ${portRange}), node ${process.version}`)
    say(`${versions.iperf3}; ${versions.socat}; ${versions.cc}; C programs from bench/native, mounted at ${BENCH_BIN}`)
    say()

    for (const [what, part] of [
      ['throughput', measureThroughput],
      ['connection rate', measureConnRate],
      ['syscall cost', measureSyscalls]
    ] as const) {
      try {
        await part(ctx)
      } catch (err) {
        if (!isPartFailure(err)) throw err
        ctx.failures++
        say(`${what}: not measured: ${err.toLine()}`)
        say()
      }
    }
    say(`load average at the end: ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`)
    if (ctx.failures > 0) {
      note(`${ctx.failures} figure(s) could not be measured (see "not measured" above); berthd log (last lines):\n${logTail(d.logPath)}`)
      return 1
    }
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
