// Processes: timing a command from spawn to exit, running setup commands, and reading the memory
// figures of /proc and the memory cgroup.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { BenchError, ERR_BENCH_RUN } from './errors.ts'

export interface TimedExit {
  /** From just before spawn() to the child's exit (not to its stdio closing). */
  ms: number
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface RunOptions {
  timeoutMs: number
  cwd?: string
  /** Keep stdout (setup commands); measured commands send it to /dev/null. */
  captureStdout?: boolean
}

/** Children still running, so that an interrupted run can kill them. */
const live = new Set<ChildProcess>()

export function killLiveChildren (): void {
  for (const c of live) c.kill('SIGKILL')
}

export function runTimed (cmd: string, args: readonly string[], opts: RunOptions): Promise<TimedExit> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let child: ChildProcess
    try {
      child = spawn(cmd, args, {
        cwd: opts.cwd,
        stdio: ['ignore', opts.captureStdout === true ? 'pipe' : 'ignore', 'pipe'],
        timeout: opts.timeoutMs,
        killSignal: 'SIGKILL'
      })
    } catch (err) {
      reject(err)
      return
    }
    live.add(child)
    let ms = Number.NaN
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (c: Buffer) => out.push(c))
    child.stderr?.on('data', (c: Buffer) => { if (err.length < 64) err.push(c) })
    child.on('exit', () => { ms = performance.now() - t0 })
    child.on('error', (e) => {
      live.delete(child)
      reject(new BenchError(ERR_BENCH_RUN, `spawn ${cmd}: ${e.message}`, 'is it installed? sh scripts/system-deps.sh bench', { cause: e }))
    })
    child.on('close', (code, signal) => {
      live.delete(child)
      resolve({
        ms,
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8')
      })
    })
  })
}

/**
 * Starts a long-running helper (a peer process to compare against); it is killed by stop() or,
 * on an interrupted run, by killLiveChildren().
 */
export function startTracked (cmd: string, args: readonly string[]): { pid: number | undefined, stop: () => void } {
  const child = spawn(cmd, args, { stdio: 'ignore' })
  live.add(child)
  child.on('error', () => live.delete(child))
  child.on('exit', () => live.delete(child))
  return { pid: child.pid, stop: () => { child.kill('SIGKILL') } }
}

/** Runs a setup command and returns its stdout; a non-zero exit rejects with its stderr. */
export async function runOk (cmd: string, args: readonly string[], opts: Omit<RunOptions, 'captureStdout'>): Promise<string> {
  const r = await runTimed(cmd, args, { ...opts, captureStdout: true })
  if (r.code !== 0) throw exitError(`${cmd} ${args.join(' ')}`, r)
  return r.stdout
}

export function exitError (what: string, r: TimedExit): BenchError {
  const how = r.signal !== null ? `was killed by ${r.signal}` : `exited ${String(r.code)}`
  const tail = r.stderr.trim().split('\n').slice(-3).join(' | ')
  return new BenchError(ERR_BENCH_RUN, `\`${what}\` ${how}${tail === '' ? '' : `: ${tail}`}`,
    'run the command by hand to see why')
}

async function readText (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    return undefined
  }
}

/** `Key:   N kB` from /proc/PID/status or smaps_rollup, in bytes. */
async function procKiB (path: string, key: string): Promise<number | undefined> {
  const text = await readText(path)
  const m = text === undefined ? null : new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text)
  return m === null ? undefined : Number(m[1]) * 1024
}

/** Resident set size: every page mapped, shared ones counted whole. */
export function vmRssBytes (pid: number): Promise<number | undefined> {
  return procKiB(`/proc/${pid}/status`, 'VmRSS')
}

/** Proportional set size: shared pages divided among the processes mapping them. */
export function pssBytes (pid: number): Promise<number | undefined> {
  return procKiB(`/proc/${pid}/smaps_rollup`, 'Pss')
}

/** Field 22 of /proc/PID/stat (start time in clock ticks): tells a reused pid from the original. */
export async function pidStartTime (pid: number): Promise<number | undefined> {
  const text = await readText(`/proc/${pid}/stat`)
  if (text === undefined) return undefined
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return Number(rest[22 - 3])
}

export async function parentPid (pid: number): Promise<number | undefined> {
  const text = await readText(`/proc/${pid}/stat`)
  if (text === undefined) return undefined
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[4 - 3])
}

/** The process's path in the memory controller's hierarchy (v1), or its v2 path. */
export async function memoryCgroupOf (pid: number): Promise<string | undefined> {
  const text = await readText(`/proc/${pid}/cgroup`)
  if (text === undefined) return undefined
  let v2: string | undefined
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':')
    if (controllers === undefined) continue
    if (controllers.split(',').includes('memory')) return path
    if (controllers === '') v2 = path
  }
  return v2
}

export interface CgroupMemory {
  dir: string
  /** v1 memory.usage_in_bytes (includes kernel memory on v1 since Linux 5.x), v2 memory.current. */
  usageBytes: number
  /** Anonymous memory (v1 `rss`, v2 `anon`). */
  anonBytes?: number
  /** Page cache charged to the group (v1 `cache`, v2 `file`). */
  fileBytes?: number
  /** Kernel memory (v1 memory.kmem.usage_in_bytes, v2 `kernel`). */
  kernelBytes?: number
}

/** The memory use of cgroup REL (e.g. `berth/<id>`), v1 first, then v2. */
export async function cgroupMemory (rel: string): Promise<CgroupMemory | undefined> {
  const v1 = `/sys/fs/cgroup/memory/${rel}`
  const usage1 = await readText(`${v1}/memory.usage_in_bytes`)
  if (usage1 !== undefined) {
    const stat = parseStat(await readText(`${v1}/memory.stat`))
    const kmem = await readText(`${v1}/memory.kmem.usage_in_bytes`)
    return {
      dir: v1,
      usageBytes: Number(usage1),
      anonBytes: stat.get('rss'),
      fileBytes: stat.get('cache'),
      kernelBytes: kmem === undefined ? undefined : Number(kmem)
    }
  }
  for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    const current = await readText(`${root}/${rel}/memory.current`)
    if (current === undefined) continue
    const stat = parseStat(await readText(`${root}/${rel}/memory.stat`))
    return {
      dir: `${root}/${rel}`,
      usageBytes: Number(current),
      anonBytes: stat.get('anon'),
      fileBytes: stat.get('file'),
      kernelBytes: stat.get('kernel')
    }
  }
  return undefined
}

function parseStat (text: string | undefined): Map<string, number> {
  const m = new Map<string, number>()
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.split(' ')
    if (k !== '' && v !== undefined) m.set(k, Number(v))
  }
  return m
}

/** MemTotal − MemAvailable from /proc/meminfo: the whole machine's memory in use. */
export async function machineUsedBytes (): Promise<number | undefined> {
  const total = await procKiB('/proc/meminfo', 'MemTotal')
  const avail = await procKiB('/proc/meminfo', 'MemAvailable')
  return total === undefined || avail === undefined ? undefined : total - avail
}

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}
