// Shared by the integration tests: a real berthd in a temp data dir with its own socket, the
// real CLI, and a busybox rootfs. Everything made here is removed by t.teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, mkdirSync, symlinkSync, copyFileSync, existsSync, rmSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..')
// The CLI as users run it: the build output of node/ (npm test builds it first).
export const CLI = join(ROOT_DIR, 'dist', 'node', 'cli', 'main.js')
export const IS_ROOT = process.getuid?.() === 0
export const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find(p => existsSync(p))

/** Why a container test cannot run here, or undefined when it can. */
export function skipReason (): string | undefined {
  if (!IS_ROOT) return 'needs root: the tests create namespaces, cgroups and mounts'
  if (BUSYBOX === undefined) return 'needs busybox-static (scripts/system-deps.sh installs it)'
  if (!existsSync(join(ROOT_DIR, 'addon', 'build', 'Release', 'berth-shim'))) return 'the shim is not built (npm ci builds it)'
  return undefined
}

export interface CliResult { code: number, stdout: string, stderr: string }

interface Teardown { teardown: (fn: () => unknown) => void }

/** A busybox rootfs with the applets as symlinks, like a minimal distribution image. */
export function makeBusyboxRootfs (dir: string): string {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev', 'var', 'srv']) {
    mkdirSync(join(dir, d), { recursive: true })
  }
  chmodSync(join(dir, 'tmp'), 0o1777)
  copyFileSync(BUSYBOX as string, join(dir, 'bin', 'busybox'))
  chmodSync(join(dir, 'bin', 'busybox'), 0o755)
  const list = spawnSync(BUSYBOX as string, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
  for (const applet of list) {
    if (applet === 'busybox') continue
    const p = join(dir, 'bin', applet)
    if (!existsSync(p)) symlinkSync('busybox', p)
  }
  spawnSync('sh', ['-c', `printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/:/bin/false\\n' > ${dir}/etc/passwd; printf 'root:x:0:\\n' > ${dir}/etc/group; echo image-file > ${dir}/etc/berth-image-file`])
  return dir
}

export class TestDaemon {
  readonly dir: string
  readonly dataDir: string
  readonly socket: string
  proc?: ChildProcess
  stderr = ''

  constructor (dir: string) {
    this.dir = dir
    this.dataDir = join(dir, 'data')
    this.socket = join(dir, 'berth.sock')
  }

  async start (): Promise<void> {
    const proc = spawn(process.execPath, [CLI, 'up', '--data-dir', this.dataDir, '--socket', this.socket], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, BERTH_DEBUG: process.env.BERTH_DEBUG ?? '' }
    })
    this.proc = proc
    proc.stderr?.on('data', (b: Buffer) => { this.stderr += b.toString() })
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`berthd exited ${proc.exitCode}: ${this.stderr}`)
      const r = await this.cli(['ps'])
      if (r.code === 0) return
      await sleep(100)
    }
    throw new Error(`berthd did not come up in 30 s: ${this.stderr}`)
  }

  /** SIGTERM: a graceful stop (containers keep running). */
  async stop (): Promise<void> {
    const p = this.proc
    if (p === undefined || p.exitCode !== null) return
    p.kill('SIGTERM')
    await new Promise(resolve => p.once('exit', resolve))
  }

  /** kill -9: a crash. */
  async crash (): Promise<void> {
    const p = this.proc
    if (p === undefined || p.exitCode !== null) return
    p.kill('SIGKILL')
    await new Promise(resolve => p.once('exit', resolve))
  }

  async cli (args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
    return await runCli(['--socket', this.socket, ...args], opts)
  }

  /** Runs the CLI and fails the test's expectations loudly when it does not exit 0. */
  async ok (args: string[]): Promise<string> {
    const r = await this.cli(args)
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
}

export async function runCli (args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`berth ${args.join(' ')} timed out; stderr: ${stderr}`)) }, opts.timeoutMs ?? 60_000)
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }) })
  })
}

/**
 * A daemon with a busybox image imported as "bb". Containers left running are force-removed,
 * then the daemon is stopped and the temp dir removed.
 */
export async function daemonWithBusybox (t: Teardown, name = 'berth-test'): Promise<TestDaemon> {
  const dir = mkdtempSync(join(tmpdir(), `${name}-`))
  const d = new TestDaemon(dir)
  t.teardown(async () => {
    if (d.proc?.exitCode === null) {
      const ps = await d.cli(['ps', '-a', '--json']).catch(() => undefined)
      if (ps?.code === 0) {
        for (const c of JSON.parse(ps.stdout)) await d.cli(['rm', '-f', c.name]).catch(() => {})
      }
    }
    await d.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  await d.start()
  makeBusyboxRootfs(join(dir, 'bb-rootfs'))
  await d.ok(['image', 'import', 'bb', join(dir, 'bb-rootfs')])
  return d
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Polls fn until it returns a truthy value or the time runs out (bounded). */
export async function until<T> (fn: () => Promise<T> | T, timeoutMs = 20_000, stepMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T = await fn()
  while (!last && Date.now() < deadline) {
    await sleep(stepMs)
    last = await fn()
  }
  return last
}

export async function inspect (d: TestDaemon, name: string): Promise<any> {
  return JSON.parse(await d.ok(['inspect', name]))
}
