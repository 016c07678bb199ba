// A private berthd for the benchmark: its own data dir and socket under the run's temp dir, so the
// bench never touches a daemon (or containers) that someone else is running on the machine.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { readdir, readFile, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ApiError, createApiClient } from './api.ts'
import type { ApiClient } from './api.ts'
import { BenchError, ERR_BENCH_DAEMON } from './errors.ts'
import { pidStartTime, sleep } from './proc.ts'

export interface DaemonInfo {
  version?: string
  pid?: number
  features?: unknown
}

export interface Daemon {
  api: ApiClient
  /** The daemon's process id: `pid` of GET /v1/info, else the spawned child's. */
  pid: number
  info: DaemonInfo
  logPath: string
  /** Force-removes every container through the API, then stops the daemon (SIGTERM, then SIGKILL). */
  stop: () => Promise<void>
}

export interface DaemonInit {
  repoDir: string
  dataDir: string
  socketPath: string
  logPath: string
  startTimeoutMs?: number
  /** More flags for `berth up`, e.g. `--port-range 31200-31299`. */
  extraArgs?: readonly string[]
}

const DEFAULT_START_TIMEOUT_MS = 60_000
const STOP_GRACE_MS = 10_000

export async function startDaemon (init: DaemonInit): Promise<Daemon> {
  const startTimeoutMs = init.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
  const logFd = openSync(init.logPath, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath,
      ['dist/node/cli/main.js', 'up', '--data-dir', init.dataDir, '--socket', init.socketPath, ...(init.extraArgs ?? [])],
      { cwd: init.repoDir, stdio: ['ignore', logFd, logFd] })
  } finally {
    closeSync(logFd)
  }
  let exited: string | undefined
  child.on('exit', (code, signal) => { exited = signal ?? String(code) })
  child.on('error', (err) => { exited = err.message })

  const api = createApiClient(init.socketPath)
  const info = await waitForInfo(api, {
    exited: () => exited,
    kill: () => child.kill('SIGKILL'),
    logPath: init.logPath,
    startTimeoutMs,
    what: 'berthd',
    hint: 'run `node dist/node/cli/main.js up` by hand to see why'
  })

  let stopped = false
  async function stop (): Promise<void> {
    if (stopped) return
    stopped = true
    if (exited === undefined) {
      await removeAllContainers(api).catch(() => {})
      child.kill('SIGTERM')
      const t = performance.now()
      while (exited === undefined && performance.now() - t < STOP_GRACE_MS) await sleep(50)
      if (exited === undefined) child.kill('SIGKILL')
    }
    // Containers outlive the daemon by design; whatever the API did not remove, remove here.
    await killLeftovers(init.dataDir)
  }

  return {
    api,
    pid: typeof info.pid === 'number' ? info.pid : child.pid ?? 0,
    info,
    logPath: init.logPath,
    stop
  }
}

export interface WaitForInfoInit {
  /** how the daemon process ended, once it has */
  exited: () => string | undefined
  kill: () => void
  logPath: string
  startTimeoutMs: number
  /** names the daemon in errors, e.g. "berthd in berth-bench-3" */
  what: string
  hint: string
}

/** Polls GET /v1/info until the daemon answers; fails with its log when it exits or is too slow. */
export async function waitForInfo (api: ApiClient, w: WaitForInfoInit): Promise<DaemonInfo> {
  const t0 = performance.now()
  let lastErr: unknown
  for (;;) {
    const exited = w.exited()
    if (exited !== undefined) {
      throw new BenchError(ERR_BENCH_DAEMON, `${w.what} exited (${exited}) before answering GET /v1/info:\n${logTail(w.logPath)}`, w.hint)
    }
    if (performance.now() - t0 > w.startTimeoutMs) {
      w.kill()
      throw new BenchError(ERR_BENCH_DAEMON, `${w.what} did not answer GET /v1/info within ${w.startTimeoutMs} ms (last: ${String(lastErr)}):\n${logTail(w.logPath)}`, w.hint)
    }
    try {
      return await api.json<DaemonInfo>('GET', '/v1/info', { timeoutMs: 2000 })
    } catch (err) {
      lastErr = err instanceof Error ? err.message : err
      await sleep(100)
    }
  }
}

export function logTail (path: string, lines = 20): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8').trimEnd()
  } catch {
    text = ''
  }
  return text === '' ? '  | (nothing logged)' : text.split('\n').slice(-lines).map(l => `  | ${l}`).join('\n')
}

interface ContainerRef { id: string, name: string }

export async function removeAllContainers (api: ApiClient): Promise<void> {
  const list = await api.json<ContainerRef[]>('GET', '/v1/containers?all=1', { timeoutMs: 10_000 })
  await Promise.all(list.map(async (c) => {
    try {
      await api.json('DELETE', `/v1/containers/${encodeURIComponent(c.id)}?force=1`, { timeoutMs: 20_000 })
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err
    }
  }))
}

interface ShimState { pid?: number, shimPid?: number, pidStartTime?: number }

/**
 * Kills the container and shim of every bundle still in DATA_DIR (state file, docs/shim.md) and
 * removes their cgroups. A pid may have been reused since the state file was written: the
 * container's pid is checked against its pidStartTime, and the state has no start time for the
 * shim, so a shim is killed only while its command line still names the bundle.
 */
export async function killLeftovers (dataDir: string): Promise<void> {
  let ids: string[]
  try {
    ids = await readdir(join(dataDir, 'containers'))
  } catch {
    return
  }
  for (const id of ids) {
    let st: ShimState
    try {
      st = JSON.parse(await readFile(join(dataDir, 'containers', id, 'state'), 'utf8')) as ShimState
    } catch {
      continue
    }
    if (st.pid !== undefined && st.pidStartTime !== undefined && (await pidStartTime(st.pid)) === st.pidStartTime) {
      try { process.kill(st.pid, 'SIGKILL') } catch {}
    }
    if (st.shimPid !== undefined && (await isShimOf(st.shimPid, id))) {
      try { process.kill(st.shimPid, 'SIGKILL') } catch {}
    }
  }
  await sleep(200)
  for (const id of ids) await removeCgroups(`berth/${id}`)
}

async function isShimOf (pid: number, id: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8')
    return cmdline.includes(id)
  } catch {
    return false
  }
}

async function removeCgroups (rel: string): Promise<void> {
  let roots: string[]
  try {
    roots = (await readdir('/sys/fs/cgroup')).map(d => join('/sys/fs/cgroup', d))
  } catch {
    return
  }
  for (const dir of [...roots.map(r => join(r, rel)), join('/sys/fs/cgroup', rel)]) {
    try { await rmdir(dir) } catch {}
  }
}
