// Child processes used by storage: GNU tar, du, rm. Every failure names what was run and ends
// with the tool's own last words (stderr).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import type { Writable } from 'node:stream'

export class ToolError extends Error {
  readonly tool: string
  readonly exitCode: number | null
  readonly stderr: string
  constructor (tool: string, args: string[], exitCode: number | null, signal: string | null, stderr: string) {
    const how = signal !== null ? `killed by ${signal}` : `exit status ${exitCode}`
    const tail = stderr.trim().split('\n').slice(-3).join('; ')
    super(`${tool} ${args.join(' ')}: ${how}${tail === '' ? '' : `: ${tail}`}`)
    this.tool = tool
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

export interface Spawned {
  child: ChildProcess
  stdin: Writable
  /** resolves with stdout when the tool exits with a status in `okStatus`; rejects with ToolError */
  done: Promise<string>
}

const STDERR_KEEP = 8192

/**
 * `stdout: 'stream'` leaves the tool's stdout raw and unread for the caller to pipe (a tar
 * stream): collecting it would set an encoding on the stream and corrupt the bytes.
 */
export function spawnTool (tool: string, args: string[], opts: { signal?: AbortSignal; okStatus?: number[]; stdin?: boolean; stdout?: 'collect' | 'stream' } = {}): Spawned {
  const child = spawn(tool, args, {
    stdio: [opts.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' }
  })
  const ok = opts.okStatus ?? [0]
  let stdout = ''
  let stderr = ''
  if (opts.stdout !== 'stream') {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { if (stdout.length < 1 << 20) stdout += s })
  }
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-STDERR_KEEP) })
  const onAbort = (): void => { child.kill('SIGKILL') }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  const done = new Promise<string>((resolve, reject) => {
    child.once('error', (err) => { opts.signal?.removeEventListener('abort', onAbort); reject(err) })
    child.once('close', (code, signal) => {
      opts.signal?.removeEventListener('abort', onAbort)
      if (signal === null && code !== null && ok.includes(code)) resolve(stdout)
      else reject(new ToolError(tool, args, code, signal, stderr))
    })
  })
  // stdin errors (EPIPE when the tool exits early) are reported through `done`
  child.stdin?.on('error', () => {})
  return { child, stdin: child.stdin!, done }
}

export async function runTool (tool: string, args: string[], opts: { signal?: AbortSignal; okStatus?: number[] } = {}): Promise<string> {
  return await spawnTool(tool, args, opts).done
}

/**
 * `rm -rf --one-file-system`: never descends into something mounted inside (a leftover bind
 * of a host directory must fail the removal, not be emptied).
 */
export async function removeTree (path: string): Promise<void> {
  await runTool('rm', ['-rf', '--one-file-system', '--', path])
}

/** Apparent size in bytes of everything under `path` (hard links counted once). */
export async function apparentSize (path: string): Promise<number> {
  const out = await runTool('du', ['-s', '-b', '-x', '--', path], { okStatus: [0, 1] })
  const n = parseInt(out, 10)
  return Number.isFinite(n) ? n : 0
}
