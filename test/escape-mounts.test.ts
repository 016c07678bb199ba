// Issue #8, finding 2: `--mount` gave container root host-root power over the path. Each test
// makes the attack a hostile workload (or a local user it conspires with) would make.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { daemonWithBusybox, skipReason, type TestDaemon } from './helpers.ts'
import { asNobody, diskNode, hostUserSkipReason, loopDisk } from './host-user.ts'

// Drives berthd's API through a socket reached at /b/berth.sock: starts a `--userns host`
// container, i.e. host root, and prints the status line of the answer.
const DRIVE_API = String.raw`
import json, socket
body = json.dumps({"image": "bb", "name": "pwned", "command": ["true"], "userns": "host"})
s = socket.socket(socket.AF_UNIX)
s.connect("/b/berth.sock")
s.sendall(("POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body).encode())
print(s.recv(200).decode().split("\r\n")[0])
`

const skip = skipReason() ?? hostUserSkipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-escmnt')

  /** A host directory for binds, outside the daemon's dir, removed at teardown. */
  const hostDir = (tt: { teardown: (fn: () => unknown) => void }, mode = 0o755): string => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-bindsrc-'))
    chmodSync(dir, mode)
    tt.teardown(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  const names = async (dm: TestDaemon): Promise<string[]> => JSON.parse(await dm.ok(['ps', '-a', '--json'])).map((c: any) => c.name)

  t.test('a bind is read-only unless :rw is asked for', async t => {
    const src = hostDir(t)
    writeFileSync(join(src, 'f'), 'host\n')
    const r = await d.cli(['run', '--rm', '--mount', `${src}:/m`, 'bb', 'sh', '-c', 'echo pwned > /m/f; echo pwned > /m/new; cat /m/f'])
    t.equal(r.code, 0, r.stderr)
    t.equal(readFileSync(join(src, 'f'), 'utf8'), 'host\n', 'the host file is unchanged')
    t.notOk(existsSync(join(src, 'new')), 'nothing was created on the host')
    t.match(r.stdout, /^host$/m, 'the container reads it')
  })

  t.test(':rw writes as the container\'s own host uid, not as host root (no idmap unless :idmap)', async t => {
    const src = hostDir(t, 0o777)
    const r = await d.cli(['run', '--rm', '--mount', `${src}:/m:rw`, 'bb', 'sh', '-c', 'echo made > /m/new && id -u'])
    t.equal(r.code, 0, r.stderr)
    t.equal(r.stdout.trim(), '0', 'container root wrote it')
    const st = statSync(join(src, 'new'))
    t.not(st.uid, 0, `the file belongs to the container's unprivileged host uid (${st.uid}), not to host root`)
  })

  t.test('a container cannot plant a setuid-root binary that a host user runs as root', async t => {
    const src = hostDir(t, 0o777)
    // Container root copies a program that reports its euid, makes it root's and setuid.
    const r = await d.cli(['run', '--rm', '--mount', `${src}:/m:rw`, 'host', 'sh', '-c',
      'cp /usr/bin/python3.11 /m/py && chown 0:0 /m/py; chmod 4755 /m/py; ls -ln /m/py'])
    t.equal(r.code, 0, r.stderr)
    t.ok(existsSync(join(src, 'py')), 'the workload wrote its file (the bind is :rw)')
    const st = statSync(join(src, 'py'))
    t.not(st.uid, 0, `the file is not host root's (uid ${st.uid})`)
    const run = asNobody([join(src, 'py'), '-c', 'import os; print(os.geteuid())'])
    t.not(run.stdout.trim(), '0', `a host user running it does not become root (euid ${run.stdout.trim()}, ${run.stderr.trim()})`)
  })

  for (const [what, mount] of [['its directory', (dm: TestDaemon) => `${dm.dir}:/b:ro`], ['the socket itself', (dm: TestDaemon) => `${dm.socket}:/b/berth.sock:ro`]] as const) {
    t.test(`a container cannot drive the API through a bind of the socket (${what}), even :ro`, async t => {
      const before = await names(d)
      const r = await d.cli(['run', '--rm', '--mount', mount(d), 'host', 'python3', '-c', DRIVE_API])
      t.teardown(async () => { await d.cli(['rm', '-f', 'pwned']) })
      t.notMatch(r.stdout, /HTTP\/1\.1 201/, `the API did not start a container for it: ${r.stdout.trim()}`)
      // 125: the daemon refused it (the CLI cannot know the daemon's data dir and socket).
      t.equal(r.code, 125, `refused before anything is made: ${r.stderr.trim()}`)
      t.match(r.stderr, /^berth: BERTH_ERR_MOUNT_REFUSED: .*(API socket|data dir).*; hint: /m)
      t.notOk((await names(d)).includes('pwned'), 'no --userns host container was started')
      t.same(await names(d), before, 'no container was made')
    })
  }

  t.test('refused sources: the socket, the data dir, system dirs, their ancestors, through symlinks and aliases', async t => {
    const scratch = hostDir(t)
    const link = join(scratch, 'link-to-socket-dir')
    symlinkSync(d.dir, link)
    const dotdot = join(scratch, 'sub')
    mkdirSync(dotdot)
    // The same directory under another name: a bind mount of the daemon's dir elsewhere.
    const alias = join(scratch, 'alias')
    mkdirSync(alias)
    const bound = spawnSync('mount', ['--bind', d.dir, alias]).status === 0
    t.teardown(() => { if (bound) spawnSync('umount', ['-l', alias]) })
    t.ok(bound, 'made a bind-mount alias of the daemon dir')
    const refused = [
      d.socket, d.dir, link, join(link, 'berth.sock'), alias, join(alias, 'data'),
      d.dataDir, join(d.dataDir, 'images'), join(d.dataDir, 'containers'), join(d.dir, '..'),
      '/', '/etc', '/proc', '/proc/1/root', '/proc/self/root/etc', '/sys', '/sys/kernel', '/dev', '/dev/null',
      '/run', '/boot', '/usr/..'
    ]
    const before = await names(d)
    for (const src of refused) {
      const r = await d.cli(['run', '--rm', '--mount', `${src}:/x`, 'bb', 'true'])
      t.ok(r.code === 125 || r.code === 2, `${src} is refused: ${r.stderr.trim()}`)
      t.match(r.stderr, /^berth: BERTH_ERR_(MOUNT_REFUSED|BAD_MOUNT): .+; hint: /m, `${src}: a one-line error`)
    }
    t.same(await names(d), before, 'nothing was made')
    // What stays allowed: a directory of the host that is none of these.
    const ok = await d.cli(['run', '--rm', '--mount', '/usr/share/zoneinfo:/z', 'bb', 'ls', '/z/UTC'])
    t.equal(ok.code, 0, ok.stderr)
  })

  t.test('a device node in a bound directory opens nothing, even for a --userns host container', async t => {
    const disk = loopDisk(t)
    const src = hostDir(t)
    diskNode(join(src, 'disk'), disk)
    const r = await d.cli(['run', '--rm', '--userns', 'host', '--mount', `${src}:/m`, 'bb', 'sh', '-c', 'head -c 64 /m/disk; echo; echo done'])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, disk.marker, 'the host disk was not read through the bind')
    t.match(r.stdout, /^done$/m)
  })

  t.test('binds are nosuid and nodev inside the container', async t => {
    const src = hostDir(t)
    const r = await d.cli(['run', '--rm', '--mount', `${src}:/m`, '--mount', `${src}:/w:rw`, 'bb', 'sh', '-c', 'grep -E " /(m|w) " /proc/mounts'])
    t.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    t.equal(lines.length, 2, r.stdout)
    for (const l of lines) {
      const opts = l.split(' ')[3].split(',')
      t.ok(opts.includes('nosuid') && opts.includes('nodev'), l)
    }
    t.ok(lines.some(l => l.includes(' /m ') && l.split(' ')[3].split(',').includes('ro')), '/m is ro')
    t.ok(lines.some(l => l.includes(' /w ') && l.split(' ')[3].split(',').includes('rw')), '/w is rw')
  })
}
