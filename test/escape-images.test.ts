// Issue #8, finding 3: untrusted image content was reachable by every local user, and an
// image's device node opened a host disk for a --userns host container. Each test makes the
// attack a hostile local user (played by `nobody`) or a hostile image would make.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { daemonWithBusybox, inspect, makeBusyboxRootfs, ROOT_DIR, skipReason, until } from './helpers.ts'
import { asNobody, diskNode, hostUserSkipReason, loopDisk } from './host-user.ts'

const skip = skipReason() ?? hostUserSkipReason() ??
  (spawnSync('losetup', ['--version']).status !== 0 ? 'needs losetup (util-linux) for a host disk to aim at' : undefined)
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-escimg')
  // The daemon's dir stands for /var/lib: traversable by everyone, as on a real host.
  chmodSync(d.dir, 0o755)
  const disk = loopDisk(t)

  // A hostile image: a setuid-root program that reports its euid, and a 0666 node of the disk.
  const evil = makeBusyboxRootfs(join(d.dir, 'evil-rootfs'))
  copyFileSync('/usr/bin/python3.11', join(evil, 'py'))
  chmodSync(join(evil, 'py'), 0o4755)
  diskNode(join(evil, 'disk'), disk)
  await d.ok(['image', 'import', 'evil', evil])
  const rootfs = join(d.dataDir, 'images', 'evil', 'rootfs')

  t.test('a local user cannot enter the data dir, images/ or containers/', async t => {
    await d.ok(['run', '-d', '--name', 'sleeper', 'bb', 'sleep', '60'])
    t.teardown(async () => { await d.cli(['rm', '-f', 'sleeper']) })
    const id = (await inspect(d, 'sleeper')).id
    for (const p of [d.dataDir, join(d.dataDir, 'images'), join(d.dataDir, 'containers'), join(d.dataDir, 'containers', id)]) {
      t.equal(statSync(p).mode & 0o777, 0o700, `${p} is 0700`)
    }
    for (const p of [join(rootfs, 'bin', 'busybox'), join(d.dataDir, 'containers', id, 'config'), join(d.dataDir, 'containers', id, 'upper')]) {
      const r = asNobody(['stat', '-c', '%n', p])
      t.not(r.code, 0, `nobody cannot reach ${p}: ${r.stderr.trim()}`)
    }
  })

  t.test("a local user cannot run an image's setuid-root binary", async t => {
    const r = asNobody([join(rootfs, 'py'), '-c', 'import os; print(os.geteuid())'])
    t.not(r.stdout.trim(), '0', `not run as root (${r.stdout.trim()}${r.stderr.trim()})`)
    t.not(r.code, 0, 'not run at all')
  })

  t.test("a local user cannot open an image's device node", async t => {
    const r = asNobody(['head', '-c', '64', join(rootfs, 'disk')])
    t.notMatch(r.stdout, disk.marker, `the host disk was not read (${r.stderr.trim()})`)
    t.notOk(existsSync(join(rootfs, 'disk')), 'the node was dropped at import')
  })

  t.test('a --userns host container cannot open a block device node that came with its image', async t => {
    const r = await d.cli(['run', '--rm', '--userns', 'host', 'evil', 'sh', '-c', 'head -c 64 /disk; echo; echo done'])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, disk.marker, `the host disk was not read (${r.stderr.trim()})`)
    t.match(r.stdout, /^done$/m)
  })

  t.test('...nor one in an image imported by an older berth (kept its nodes): the overlay is nodev', async t => {
    // What an older version's import left behind, planted straight into the image.
    diskNode(join(rootfs, 'old-disk'), disk)
    t.teardown(() => spawnSync('rm', ['-f', join(rootfs, 'old-disk')]))
    const r = await d.cli(['run', '--rm', '--userns', 'host', 'evil', 'sh', '-c', 'head -c 64 /old-disk; echo; echo done'])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, disk.marker, `the host disk was not read (${r.stderr.trim()})`)
  })

  t.test('the device allow-list fences a --userns host container even where a node opens (v1 devices cgroup, v2 BPF program)', async t => {
    await d.ok(['run', '-d', '--userns', 'host', '--name', 'fenced', 'bb', 'sleep', '60'])
    t.teardown(async () => { await d.cli(['rm', '-f', 'fenced']) })
    const id = (await inspect(d, 'fenced')).id
    const places: Array<[string, string]> = []
    const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    for (const l of mountinfo) {
      const f = l.split(' ')
      const dash = f.indexOf('-')
      if (dash < 0) continue
      if (f[dash + 1] === 'cgroup' && f[dash + 3].split(',').includes('devices')) places.push(['v1', join(f[4], 'berth', id)])
      if (f[dash + 1] === 'cgroup2') places.push(['v2', join(f[4], 'berth', id)])
    }
    t.ok(places.length > 0, 'this machine has a devices cgroup or cgroup2')
    const v1 = places.find(p => p[0] === 'v1')
    if (v1 !== undefined) {
      const list = readFileSync(join(v1[1], 'devices.list'), 'utf8').trim().split('\n').sort()
      t.same(list, ['c 136:* rwm', 'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm'], 'v1: only the safe character devices')
    }
    // A host root process that joins the container's cgroup (in one hierarchy at a time), then
    // opens the host's own node of the disk on the host's devtmpfs: refused by that fence.
    for (const [kind, dir] of places) {
      t.ok(existsSync(join(dir, 'cgroup.procs')), `${kind}: ${dir}`)
      const r = spawnSync('sh', ['-c', `echo $$ > ${join(dir, 'cgroup.procs')} && head -c 64 ${disk.dev}; echo; head -c 1 /dev/zero | wc -c`], { encoding: 'utf8' })
      t.notMatch(r.stdout, disk.marker, `${kind}: the disk is not opened from inside the container's cgroup (${r.stderr.trim()})`)
      t.match(r.stderr, /Operation not permitted/, `${kind}: refused by the allow-list`)
      t.match(r.stdout, /^1$/m, `${kind}: /dev/zero still opens`)
    }
  })

  t.test('no process shows a bundle path on its command line', async t => {
    await d.ok(['run', '-d', '--name', 'quiet', 'bb', 'sleep', '60'])
    t.teardown(async () => { await d.cli(['rm', '-f', 'quiet']) })
    const exec = d.cli(['exec', 'quiet', 'sleep', '3'])
    // This daemon's shims (the container's, the exec's): what any local user reads in ps.
    const shim = join(ROOT_DIR, 'addon', 'build', 'Release', 'berth-shim')
    const seen = await until(() => {
      const found: string[] = []
      for (const pid of readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
        let cmd = ''
        try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') } catch { continue }
        if (cmd.startsWith(shim + ' ')) found.push(cmd)
      }
      return found.some(c => c.includes(' create ')) && found.some(c => c.includes(' exec ')) ? found : undefined
    }, 10_000, 50)
    await exec
    t.ok(seen !== undefined, `saw the shim and the exec: ${JSON.stringify(seen)}`)
    for (const cmd of seen ?? []) t.notMatch(cmd, join(d.dataDir, 'containers'), `no bundle path in "${cmd}"`)
  })

  t.test('a data dir left 0711/0755 by an older version is tightened when the daemon starts', async t => {
    await d.stop()
    for (const p of [d.dataDir, join(d.dataDir, 'images'), join(d.dataDir, 'containers')]) chmodSync(p, 0o711)
    chmodSync(join(d.dataDir, 'images', 'evil'), 0o755)
    t.equal(asNobody(['stat', '-c', '%n', join(rootfs, 'bin', 'busybox')]).code, 0, 'as an older version left it, nobody gets in')
    await d.start()
    for (const p of [d.dataDir, join(d.dataDir, 'images'), join(d.dataDir, 'containers'), join(d.dataDir, 'images', 'evil')]) {
      t.equal(statSync(p).mode & 0o777, 0o700, `${p} is 0700 again`)
    }
    t.not(asNobody(['stat', '-c', '%n', join(rootfs, 'bin', 'busybox')]).code, 0, 'nobody is kept out')
  })
}
