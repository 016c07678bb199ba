// Which host paths `--mount` may bind. A bind hands the container the host's own files, so a
// bind of the daemon's socket (or a directory holding it) lets the container drive the API and
// start a `--userns host` container, i.e. become host root; a bind of the data dir exposes every
// image and container; a bind of `/`, `/etc`, `/proc`, `/sys`, `/dev`, `/run` or `/boot` exposes
// the host itself. The checks run on the real path (symlinks and `..` resolved), and also
// compare inodes, so another name for one of these directories (a symlink, a bind mount of it
// elsewhere) is refused too.
import { realpath, stat } from 'node:fs/promises'
import { dirname, sep } from 'node:path'
import { UsageError } from '../errors.ts'
import type { MountSpec } from './runtime.ts'

/** System directories that may be neither bound nor have an ancestor of theirs bound. */
const SYSTEM_DIRS = ['/', '/etc', '/run', '/boot']
/** Kernel interfaces: no part of them may be bound (a `/proc/PID/root` leads anywhere). */
const SYSTEM_TREES = ['/proc', '/sys', '/dev']

export interface MountPolicy {
  /** the daemon's data dir: refused, with everything inside it and every ancestor */
  dataDir: string
  /** the API socket: refused with its directory and every ancestor */
  socketPath?: string
}

const within = (p: string, dir: string): boolean => p === dir || p.startsWith(dir === '/' ? '/' : dir + sep)

function refused (src: string, real: string, why: string): never {
  const shown = real === src ? src : `${src} (${real})`
  throw new UsageError('BERTH_ERR_MOUNT_REFUSED', `--mount ${shown} refused: ${why}`,
    'bind a directory or file of your own, e.g. --mount /opt/mylib:/usr/lib/mylib (read-only unless :rw)')
}

async function real (p: string): Promise<string> {
  return await realpath(p).catch(() => p)
}

/** `p` and each of its ancestors, up to `/`. */
function chain (p: string): string[] {
  const out = [p]
  while (p !== '/') { p = dirname(p); out.push(p) }
  return out
}

/**
 * Resolves a mount's source to its real path and refuses what must not be bound
 * (BERTH_ERR_MOUNT_REFUSED: a usage error, which the CLI reports with exit 125 as it does every
 * error the daemon answers); a source that does not exist is BERTH_ERR_BAD_MOUNT.
 */
export async function checkMountSource (src: string, policy: MountPolicy): Promise<string> {
  let path: string
  try {
    path = await realpath(src)
  } catch {
    throw new UsageError('BERTH_ERR_BAD_MOUNT', `--mount source ${src} does not exist on this node (or cannot be resolved)`, 'give a host path that exists')
  }
  const dataDir = await real(policy.dataDir)
  if (within(path, dataDir)) refused(src, path, `it is inside berth's data dir ${dataDir}`)
  // [path, why] pairs: binding one of these, or any directory above one, is refused.
  const guarded: Array<[string, string]> = [[dataDir, `it holds berth's data dir ${dataDir}`]]
  if (policy.socketPath !== undefined) {
    if (path === await real(policy.socketPath)) refused(src, path, 'it is berth\'s API socket, which drives the daemon as root')
    const sockDir = await real(dirname(policy.socketPath))
    guarded.push([sockDir, `it holds berth's API socket ${policy.socketPath}, which drives the daemon as root`])
  }
  for (const d of SYSTEM_DIRS) guarded.push([await real(d), `${d} is a system directory of the host`])
  for (const d of SYSTEM_TREES) {
    const rd = await real(d)
    if (within(path, rd)) refused(src, path, `${d} is the host's kernel interface`)
    guarded.push([rd, `${d} is the host's kernel interface`])
  }
  for (const [g, why] of guarded) {
    if (within(g, path)) refused(src, path, why)
  }
  // The same directories under other names: a bind mount of /var/lib elsewhere holds the data
  // dir though no path says so. Compare (device, inode) with every guarded path's ancestors.
  const st = await stat(path)
  if (st.isDirectory()) {
    for (const [g, why] of guarded) {
      for (const a of chain(g)) {
        const ast = await stat(a).catch(() => undefined)
        if (ast !== undefined && ast.dev === st.dev && ast.ino === st.ino) refused(src, path, `it is ${a} under another name, and ${why}`)
      }
    }
  }
  return path
}

/** Checks every mount of a spec; returns them with their sources resolved to real paths. */
export async function checkMounts (mounts: MountSpec[], policy: MountPolicy, userns: 'private' | 'host'): Promise<MountSpec[]> {
  const out: MountSpec[] = []
  for (const m of mounts) {
    if (m.idmap === true && userns === 'host') {
      throw new UsageError('BERTH_ERR_BAD_MOUNT', `--mount ${m.src}:${m.dst}: idmap needs the container's own user namespace`, 'drop :idmap, or --userns host')
    }
    out.push({ ...m, src: await checkMountSource(m.src, policy) })
  }
  return out
}
