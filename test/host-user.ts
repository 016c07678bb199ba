// For the escape tests that play a hostile local user or need a host disk to aim at: run a
// command as `nobody` on the host, and a loop device with a known marker on it. Everything made
// here is undone by t.teardown.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

interface Teardown { teardown: (fn: () => unknown) => void }

export const NOBODY = 65534

export interface Ran { code: number, stdout: string, stderr: string }

/**
 * Runs argv as uid/gid 65534 (nobody) with no supplementary groups and no capabilities. setpriv
 * still holds root's capabilities when it execs, so its own exec would resolve the path with
 * CAP_DAC_OVERRIDE: a shell, already plain nobody, makes the exec that counts.
 */
export function asNobody (argv: string[]): Ran {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', '--',
    '/bin/sh', '-c', 'exec "$@"', 'sh', ...argv], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' }
}

/** Why asNobody cannot run here, or undefined. */
export function hostUserSkipReason (): string | undefined {
  if (spawnSync('setpriv', ['--version']).status !== 0) return 'needs setpriv (util-linux) to act as a local user'
  return undefined
}

export interface LoopDisk { dev: string, major: number, minor: number, marker: string }

/**
 * A 1 MiB file with a marker at offset 0, attached to a free loop device: the "host disk" an
 * attacker would aim a device node at. Detached and deleted at teardown.
 */
export function loopDisk (t: Teardown): LoopDisk {
  const dir = mkdtempSync(join(tmpdir(), 'berth-loop-'))
  const file = join(dir, 'disk.img')
  const marker = `berth-host-disk-${process.pid}-${Math.random().toString(16).slice(2)}`
  const buf = Buffer.alloc(1 << 20)
  buf.write(marker, 0)
  writeFileSync(file, buf)
  const r = spawnSync('losetup', ['--find', '--show', file], { encoding: 'utf8' })
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`losetup failed: ${r.stderr}`)
  }
  const dev = r.stdout.trim()
  t.teardown(() => {
    spawnSync('losetup', ['-d', dev])
    rmSync(dir, { recursive: true, force: true })
  })
  const rdev = statSync(dev).rdev
  // glibc's gnu_dev_major/minor, for numbers below 2^32
  const major = (rdev >>> 8) & 0xfff
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00)
  return { dev, major, minor, marker }
}

/** mknod PATH as a block node of DISK, mode 0666 (what a hostile image carries). */
export function diskNode (path: string, disk: LoopDisk): void {
  const r = spawnSync('mknod', ['-m', '0666', path, 'b', String(disk.major), String(disk.minor)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`mknod ${path}: ${r.stderr}`)
}
