// The built-in image `host`: the host's own system, read-only, nothing downloaded.
//
// Its rootfs is a small skeleton; the system itself comes in through binds the shim makes
// (idmapped, read-only, recursive), so the container sees the host's current /usr:
//
//   usr, and bin/sbin/lib* when they are real directories  → bind entries (ro,rec,idmap)
//   bin/sbin/lib* when the host has merged /usr            → the same symlinks (bin → usr/bin)
//   etc                                                     → a FILTERED copy (no secrets)
//   dev proc sys run tmp var/{tmp,log,lib,cache} root home mnt opt srv media → empty
//
// Nothing else of the host is visible: not /home, /root, /srv, /opt, /mnt, /media, nor /var
// (so not berth's data dir), nor any secret of /etc. What counts as a secret: the names in
// ETC_EXCLUDE, private-key-looking names, and every file or directory that is not
// world-readable (a host keeps its secrets 0600/0640/0700; the container's root is the host's
// root through the idmapped mount, so copying them would hand them over).

import { createHash } from 'node:crypto'
import { chmod, chown, copyFile, lchown, lstat, lutimes, mkdir, readFile, readdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { join } from 'node:path'
import type { ImageBind } from './records.ts'

/** Bump when the skeleton's layout changes: it forces a rebuild on the next daemon start. */
export const HOST_SKELETON_VERSION = 1

/** Top-level host dirs that make up "the system": bound read-only, or mirrored as symlinks. */
const SYSTEM_DIRS = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']

/** Empty directories of the skeleton, with their modes. */
const EMPTY_DIRS: Array<[string, number]> = [
  ['dev', 0o755], ['proc', 0o555], ['sys', 0o555], ['run', 0o755], ['run/lock', 0o1777], ['tmp', 0o1777],
  ['var', 0o755], ['var/tmp', 0o1777], ['var/log', 0o755], ['var/lib', 0o755], ['var/cache', 0o755],
  ['root', 0o700], ['home', 0o755], ['mnt', 0o755], ['opt', 0o755], ['srv', 0o755], ['media', 0o755]
]

/** /var entries mirrored when the host has them as symlinks (Debian: var/run → /run). */
const VAR_LINKS = ['var/run', 'var/lock']

/** Paths under /etc never copied (relative to /etc; a directory excludes its whole tree). */
const ETC_EXCLUDE = new Set([
  'shadow', 'shadow-', 'gshadow', 'gshadow-', 'sudoers', 'sudoers.d', 'security/opasswd',
  'ssl/private', 'ssh/ssh_host_rsa_key', 'ssh/ssh_host_ecdsa_key', 'ssh/ssh_host_ed25519_key', 'ssh/ssh_host_dsa_key',
  'krb5.keytab', 'ppp/chap-secrets', 'ppp/pap-secrets', 'ipsec.secrets', 'wireguard', 'NetworkManager/system-connections',
  'letsencrypt', 'libvirt/secrets', 'openvpn', 'iscsi', 'berth', '.pwd.lock',
  // replaced by container-sensible ones below
  'hostname', 'hosts', 'resolv.conf', 'machine-id'
])
const SECRET_NAME = /(\.key|_key|\.p12|\.pfx|\.keytab)$/

const HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n'

export interface HostTopLevel {
  name: string
  kind: 'bind' | 'symlink'
  target?: string
}

export interface EtcEntry {
  rel: string
  st: Stats
  link?: string
}

export interface HostPlan {
  hostRoot: string
  top: HostTopLevel[]
  binds: ImageBind[]
  etc: EtcEntry[]
  resolvConf: string
  /** changes when anything the skeleton is made of changes on the host */
  fingerprint: string
}

function excluded (rel: string, st: Stats): boolean {
  if (ETC_EXCLUDE.has(rel)) return true
  const base = rel.slice(rel.lastIndexOf('/') + 1)
  if (SECRET_NAME.test(base)) return true
  if (st.isSymbolicLink()) return false
  // not world-readable (directories: also not world-searchable) → treated as a secret
  if ((st.mode & 0o004) === 0) return true
  if (st.isDirectory() && (st.mode & 0o001) === 0) return true
  return !(st.isFile() || st.isDirectory())
}

async function walkEtc (etc: string, rel: string, out: EtcEntry[]): Promise<void> {
  const names = (await readdir(rel === '' ? etc : join(etc, rel))).sort()
  for (const name of names) {
    const r = rel === '' ? name : `${rel}/${name}`
    const st = await lstat(join(etc, r)).catch(() => undefined)
    if (st === undefined || excluded(r, st)) continue
    const e: EtcEntry = { rel: r, st }
    if (st.isSymbolicLink()) e.link = await readlink(join(etc, r))
    out.push(e)
    if (st.isDirectory()) await walkEtc(etc, r, out)
  }
}

async function hostResolvConf (hostRoot: string): Promise<string> {
  const read = async (p: string): Promise<string | undefined> => await readFile(join(hostRoot, p), 'utf8').catch(() => undefined)
  const conf = await read('etc/resolv.conf') ?? ''
  // systemd-resolved's local resolver (127.0.0.53) is on the host's loopback, which a container
  // does not share:
  // use the upstream servers resolved itself uses.
  if (/^nameserver\s+127\.0\.0\.53\b/m.test(conf)) {
    const upstream = await read('run/systemd/resolve/resolv.conf')
    if (upstream !== undefined) return upstream
  }
  return conf
}

/** Reads what the skeleton would be made of. Cheap: metadata of /etc, a few lstat/readlink. */
export async function planHostImage (hostRoot = '/'): Promise<HostPlan> {
  const top: HostTopLevel[] = []
  const binds: ImageBind[] = []
  for (const name of SYSTEM_DIRS) {
    const st = await lstat(join(hostRoot, name)).catch(() => undefined)
    if (st === undefined) continue
    if (st.isSymbolicLink()) {
      top.push({ name, kind: 'symlink', target: await readlink(join(hostRoot, name)) })
    } else if (st.isDirectory()) {
      top.push({ name, kind: 'bind' })
      binds.push({ src: join(hostRoot, name), dst: `/${name}`, opts: ['ro', 'rec', 'idmap'] })
    }
  }
  for (const rel of VAR_LINKS) {
    const st = await lstat(join(hostRoot, rel)).catch(() => undefined)
    if (st?.isSymbolicLink() === true) top.push({ name: rel, kind: 'symlink', target: await readlink(join(hostRoot, rel)) })
  }
  const etc: EtcEntry[] = []
  await walkEtc(join(hostRoot, 'etc'), '', etc)
  const resolvConf = await hostResolvConf(hostRoot)
  const h = createHash('sha256')
  h.update(`v${HOST_SKELETON_VERSION}\0${JSON.stringify(top)}\0${resolvConf}\0`)
  for (const e of etc) {
    h.update(`${e.rel}\0${e.st.mode}\0${e.st.uid}\0${e.st.gid}\0${e.st.size}\0${e.st.mtimeMs}\0${e.link ?? ''}\0`)
  }
  return { hostRoot, top, binds, etc, resolvConf, fingerprint: h.digest('hex') }
}

async function mkdirMode (path: string, mode: number): Promise<void> {
  await mkdir(path, { recursive: true })
  await chown(path, 0, 0)
  await chmod(path, mode) // explicit: mkdir's mode is filtered by the umask and never sets sticky
}

/** Makes the skeleton (everything but etc) in `rootfs`; idempotent. */
export async function writeSkeleton (rootfs: string, plan: HostPlan): Promise<void> {
  await mkdirMode(rootfs, 0o755)
  for (const [rel, mode] of EMPTY_DIRS) {
    if (plan.top.some(t => t.name === rel)) continue
    await mkdirMode(join(rootfs, rel), mode)
  }
  for (const t of plan.top) {
    const p = join(rootfs, t.name)
    const st = await lstat(p).catch(() => undefined)
    if (t.kind === 'bind') {
      if (st !== undefined && !st.isDirectory()) await rm(p, { force: true })
      await mkdirMode(p, 0o755) // the mount point of the bind
    } else {
      if (st !== undefined) {
        if (st.isSymbolicLink() && await readlink(p) === t.target) continue
        await rm(p, { recursive: true, force: true })
      }
      await symlink(t.target!, p)
    }
  }
}

/** Writes the filtered copy of the host's /etc into `dst` (which must not exist). */
export async function writeEtc (dst: string, plan: HostPlan): Promise<void> {
  const srcEtc = join(plan.hostRoot, 'etc')
  const etcSt = await lstat(srcEtc)
  await mkdirMode(dst, etcSt.mode & 0o7777)
  const dirs: EtcEntry[] = []
  for (const e of plan.etc) {
    const to = join(dst, e.rel)
    if (e.st.isDirectory()) {
      await mkdir(to)
      await chown(to, e.st.uid, e.st.gid)
      await chmod(to, e.st.mode & 0o7777)
      dirs.push(e)
    } else if (e.st.isSymbolicLink()) {
      await symlink(e.link!, to)
      await lchown(to, e.st.uid, e.st.gid)
      await lutimes(to, e.st.atime, e.st.mtime)
    } else {
      try {
        await copyFile(join(srcEtc, e.rel), to)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue // vanished since the plan
        throw err
      }
      await chown(to, e.st.uid, e.st.gid)
      await chmod(to, e.st.mode & 0o7777)
      await utimes(to, e.st.atime, e.st.mtime)
    }
  }
  const put = async (rel: string, content: string, mode: number): Promise<void> => {
    await writeFile(join(dst, rel), content, { mode })
    await chmod(join(dst, rel), mode)
  }
  await put('hosts', HOSTS, 0o644)
  await put('hostname', 'localhost\n', 0o644)
  await put('resolv.conf', plan.resolvConf, 0o644)
  await put('machine-id', '', 0o444) // empty: systemd in the container makes its own
  // directory times last: writing into them changed them
  for (const e of dirs.reverse()) await utimes(join(dst, e.rel), e.st.atime, e.st.mtime)
}
