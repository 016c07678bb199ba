// The benchmark's root filesystem: Debian's static busybox and one symlink per applet, so that
// /bin/true, /bin/sh and /bin/sleep exist with no shared libraries to load. The same directory is
// the floor's chroot, runc's bundle root and the source of berth's image, so all three start
// the same binary.
import { access, chmod, copyFile, mkdir, open, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BenchError, ERR_BENCH_SETUP } from './errors.ts'
import { runOk } from './proc.ts'

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox']
const REQUIRED_APPLETS = ['true', 'sh', 'sleep']
const PT_INTERP = 3

/** Builds the rootfs in DIR (which must not exist yet) and returns the applets linked. */
export async function buildBusyboxRootfs (dir: string): Promise<string[]> {
  const busybox = await findStaticBusybox()
  await mkdir(dir, { recursive: false })
  for (const d of ['bin', 'dev', 'etc', 'proc', 'root', 'run', 'sys', 'tmp', 'var']) {
    await mkdir(join(dir, d))
  }
  await chmod(join(dir, 'tmp'), 0o1777)
  await copyFile(busybox, join(dir, 'bin/busybox'))
  await chmod(join(dir, 'bin/busybox'), 0o755)

  const list = await runOk(busybox, ['--list'], { timeoutMs: 10_000 })
  const applets = list.split('\n').map(s => s.trim()).filter(s => /^[a-z0-9._[\]-]+$/i.test(s) && s !== 'busybox')
  for (const a of REQUIRED_APPLETS) {
    if (!applets.includes(a)) {
      throw new BenchError(ERR_BENCH_SETUP, `${busybox} has no \`${a}\` applet`, 'install Debian\'s busybox-static')
    }
  }
  for (const a of applets) await symlink('busybox', join(dir, 'bin', a))

  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\n')
  await writeFile(join(dir, 'etc/hostname'), 'bench\n')
  return applets
}

async function findStaticBusybox (): Promise<string> {
  for (const p of BUSYBOX_CANDIDATES) {
    try {
      await access(p)
    } catch {
      continue
    }
    if (!(await hasInterpreter(p))) return p
  }
  throw new BenchError(ERR_BENCH_SETUP, `no statically linked busybox at ${BUSYBOX_CANDIDATES.join(' or ')}`,
    'sh scripts/system-deps.sh bench installs busybox-static')
}

/** True when the ELF file has a PT_INTERP header, i.e. is dynamically linked (64-bit LE only). */
async function hasInterpreter (path: string): Promise<boolean> {
  const fh = await open(path, 'r')
  try {
    const head = Buffer.alloc(64)
    await fh.read(head, 0, 64, 0)
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return true
    const phoff = Number(head.readBigUInt64LE(0x20))
    const phentsize = head.readUInt16LE(0x36)
    const phnum = head.readUInt16LE(0x38)
    const ph = Buffer.alloc(phentsize * phnum)
    await fh.read(ph, 0, ph.length, phoff)
    for (let i = 0; i < phnum; i++) {
      if (ph.readUInt32LE(i * phentsize) === PT_INTERP) return true
    }
    return false
  } finally {
    await fh.close()
  }
}
