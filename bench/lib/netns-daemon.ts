// A berthd in a network namespace: `ip netns exec NS node dist/node/cli/main.js up …`, its own
// data dir, socket and log under the run's temp dir (the socket is a file, so the bench reaches
// it from the host namespace). `ip netns exec` execs the command after entering the namespace,
// without forking, so the spawned pid is berthd's own: kill9() is a real crash of the daemon.
// Unlike daemon.ts's startDaemon, it can be crashed and started again on the same data dir.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { createApiClient } from './api.ts'
import type { ApiClient } from './api.ts'
import { waitForInfo } from './daemon.ts'
import { sleep } from './proc.ts'

export interface NsDaemonInit {
  repoDir: string
  ns: string
  dataDir: string
  socketPath: string
  logPath: string
  /** flags for `berth up` after --data-dir and --socket */
  args: readonly string[]
  startTimeoutMs?: number
}

export interface NsDaemon {
  readonly api: ApiClient
  readonly pid: number
  readonly logPath: string
  running: () => boolean
  /** SIGKILL (a crash); resolves once the process is gone */
  kill9: () => Promise<void>
  /** SIGTERM (graceful leave), SIGKILL after graceMs; safe to call twice */
  stop: (graceMs?: number) => Promise<void>
}

const DEFAULT_START_TIMEOUT_MS = 60_000
const DEFAULT_STOP_GRACE_MS = 5_000

/** Daemons still running, so that an interrupted run can kill them all. */
const live = new Set<ChildProcess>()

export function killLiveDaemons (): void {
  for (const c of live) c.kill('SIGKILL')
}

export async function startNsDaemon (init: NsDaemonInit): Promise<NsDaemon> {
  const startTimeoutMs = init.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
  const logFd = openSync(init.logPath, 'a')
  let child: ChildProcess
  try {
    child = spawn('ip', ['netns', 'exec', init.ns, process.execPath, 'dist/node/cli/main.js', 'up',
      '--data-dir', init.dataDir, '--socket', init.socketPath, ...init.args],
    { cwd: init.repoDir, stdio: ['ignore', logFd, logFd] })
  } finally {
    closeSync(logFd)
  }
  live.add(child)
  let exited: string | undefined
  const gone = new Promise<void>(resolve => {
    child.on('exit', (code, signal) => { exited = signal ?? String(code); live.delete(child); resolve() })
    child.on('error', (err) => { exited = err.message; live.delete(child); resolve() })
  })

  const api = createApiClient(init.socketPath)
  const info = await waitForInfo(api, {
    exited: () => exited,
    kill: () => child.kill('SIGKILL'),
    logPath: init.logPath,
    startTimeoutMs,
    what: `berthd in ${init.ns}`,
    hint: `run \`ip netns exec ${init.ns} node dist/node/cli/main.js up …\` by hand to see why`
  })

  async function stop (graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    if (exited !== undefined) return
    child.kill('SIGTERM')
    const t = performance.now()
    while (exited === undefined && performance.now() - t < graceMs) await sleep(50)
    if (exited === undefined) child.kill('SIGKILL')
    await gone
  }

  return {
    api,
    pid: child.pid ?? (typeof info.pid === 'number' ? info.pid : 0),
    logPath: init.logPath,
    running: () => exited === undefined,
    async kill9 () {
      if (exited !== undefined) return
      child.kill('SIGKILL')
      await gone
    },
    stop
  }
}
