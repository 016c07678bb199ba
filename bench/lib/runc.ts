// runc, the peer: Debian's `runc run` on an OCI bundle whose root is the benchmark's rootfs.
// The bundle comes from `runc spec` with only what the benchmark needs changed, so runc runs with
// its default namespaces (no user namespace), default capabilities, seccomp off (runc spec has
// none), masked paths and its own cgroup per container.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exitError, runOk, runTimed } from './proc.ts'
import type { TimedExit } from './proc.ts'

export interface Runc {
  bundle: string
  /** `runc --root`: a private state dir, so leftovers are ours to list and delete. */
  stateRoot: string
  version: string
  /** Namespace types in config.json, e.g. ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup']. */
  namespaces: string[]
  /** `runc run` of /bin/true under a fresh id; rejects on a non-zero exit. */
  run: (id: string, timeoutMs: number) => Promise<TimedExit>
  /** `runc delete -f` of every container left in stateRoot. */
  deleteAll: () => Promise<void>
}

interface OciConfig {
  process: { args: string[], terminal: boolean }
  root: { path: string, readonly: boolean }
  linux?: { namespaces?: Array<{ type: string }> }
}

export async function prepareRunc (dir: string, rootfs: string): Promise<Runc> {
  const bundle = join(dir, 'bundle')
  const stateRoot = join(dir, 'state')
  await mkdir(bundle, { recursive: true })
  await mkdir(stateRoot, { recursive: true })
  const versionText = await runOk('runc', ['--version'], { timeoutMs: 10_000 })
  await runOk('runc', ['spec'], { cwd: bundle, timeoutMs: 10_000 })

  const configPath = join(bundle, 'config.json')
  const config = JSON.parse(await readFile(configPath, 'utf8')) as OciConfig
  config.process.args = ['/bin/true']
  config.process.terminal = false
  config.root = { path: rootfs, readonly: false }
  await writeFile(configPath, JSON.stringify(config, null, 2))

  async function run (id: string, timeoutMs: number): Promise<TimedExit> {
    const r = await runTimed('runc', ['--root', stateRoot, 'run', '-b', bundle, id], { timeoutMs })
    if (r.code !== 0) throw exitError(`runc run ${id}`, r)
    return r
  }

  async function deleteAll (): Promise<void> {
    const list = await runTimed('runc', ['--root', stateRoot, 'list', '-q'], { timeoutMs: 10_000, captureStdout: true })
    for (const id of list.stdout.split('\n').map(s => s.trim()).filter(Boolean)) {
      await runTimed('runc', ['--root', stateRoot, 'delete', '-f', id], { timeoutMs: 10_000 })
    }
  }

  return {
    bundle,
    stateRoot,
    version: versionText.split('\n').slice(0, 2).join(', ').trim(),
    namespaces: (config.linux?.namespaces ?? []).map(n => n.type),
    run,
    deleteAll
  }
}
