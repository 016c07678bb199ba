// The escape list: each attempt is made from inside a default (unprivileged) container and each
// must fail. Raw syscalls go through the host image's python3 (ctypes), so the kernel — not a
// missing tool — is what says no.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, existsSync } from 'node:fs'
import { daemonWithBusybox, inspect, skipReason } from './helpers.ts'

const PROBE = String.raw`
import ctypes, json, os, stat
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return [r, ctypes.get_errno()]
buf = ctypes.create_string_buffer(256)
out = {}
out['init_module'] = sc(175, buf, 16, b"")
out['finit_module'] = sc(313, 0, b"", 0)
out['delete_module'] = sc(176, b"loop", 0)
out['kexec_load'] = sc(246, 0, 0, 0, 0)
out['keyctl'] = sc(250, 0, -3, 1)
out['add_key'] = sc(248, b"user", b"berth", b"x", 1, -3)
out['request_key'] = sc(249, b"user", b"berth", 0, 0)
out['bpf'] = sc(321, 0, buf, 64)
out['io_uring_setup'] = sc(425, 4, buf)
out['open_by_handle_at'] = sc(304, 3, buf, 0)
out['unshare_userns'] = sc(272, 0x10000000)
out['unshare_mountns'] = sc(272, 0x00020000)
out['mount_block'] = sc(165, b"/dev/vda", b"/mnt", b"ext4", 0, 0)
out['mount_proc_sysfs'] = sc(165, b"none", b"/mnt", b"sysfs", 0, 0)
out['mount_bind_root'] = sc(165, b"/", b"/mnt", 0, 4096, 0)
out['ptrace_attach_1'] = sc(101, 16, 1, 0, 0)
out['perf_event_open'] = sc(298, buf, 0, -1, -1, 0)
out['reboot'] = sc(169, 0xfee1dead, 672274793, 0x1234567, 0)
out['swapoff'] = sc(168, b"/dev/vda")
out['settimeofday'] = sc(164, buf, 0)
try:
    os.mknod('/tmp/disk', 0o600 | stat.S_IFBLK, os.makedev(8, 0))
    out['mknod_block'] = [0, 0]
except OSError as e:
    out['mknod_block'] = [-1, e.errno]
try:
    os.mknod('/tmp/mem', 0o600 | stat.S_IFCHR, os.makedev(1, 1))
    out['mknod_mem'] = [0, 0]
except OSError as e:
    out['mknod_mem'] = [-1, e.errno]
print(json.dumps(out))
`

const skip = skipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-escape')

  for (const userns of ['private', 'host']) {
    t.test(`privileged syscalls fail (userns ${userns}): modules, kexec, keyring, bpf, io_uring, handles, namespaces, mount, ptrace, mknod`, async t => {
      const r = await d.cli(['run', '--rm', ...(userns === 'host' ? ['--userns', 'host'] : []), 'host', 'python3', '-c', PROBE])
      t.equal(r.code, 0, r.stderr)
      const out = JSON.parse(r.stdout)
      t.ok(Object.keys(out).length >= 20)
      for (const [name, [ret, errno]] of Object.entries(out) as Array<[string, [number, number]]>) {
        t.equal(ret, -1, `${name} fails (errno ${errno})`)
        t.ok(errno > 0, `${name} sets errno`)
      }
    })
  }

  t.test('/proc/sysrq-trigger and /proc/sys are read-only; /proc/kcore and /proc/keys are masked; /sys is read-only', async t => {
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c', [
      'echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-written',
      'echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo procsys-written',
      'echo kcore=$(head -c 64 /proc/kcore 2>/dev/null | wc -c)',
      'echo keys=$(cat /proc/keys 2>/dev/null | wc -c)',
      'echo x > /sys/kernel/uevent_helper 2>/dev/null && echo sys-written',
      'ls /sys/firmware 2>/dev/null | wc -l',
      'echo done'
    ].join('; ')])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, /written/)
    t.match(r.stdout, /kcore=0/)
    t.match(r.stdout, /keys=0/)
    t.match(r.stdout, /^0\ndone/m)
  })

  t.test('host files cannot be written through the rootfs', async t => {
    const before = createHash('sha256').update(readFileSync('/etc/passwd')).digest('hex')
    const r = await d.cli(['run', '--rm', 'host', 'sh', '-c', [
      'echo pwned >> /etc/passwd',
      'touch /usr/bin/berth-escape 2>/dev/null && echo usr-written',
      'ls /var/lib/berth 2>/dev/null && echo data-dir-visible',
      'ls /root | wc -l',
      'echo done'
    ].join('; ')])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, /usr-written|data-dir-visible/)
    t.equal(createHash('sha256').update(readFileSync('/etc/passwd')).digest('hex'), before, 'the host\'s /etc/passwd is untouched')
    t.notOk(existsSync('/usr/bin/berth-escape'))
  })

  t.test('the minimal /dev has no disks', async t => {
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c', 'ls /dev'])
    const devs = r.stdout.trim().split(/\s+/)
    for (const want of ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'pts', 'shm', 'mqueue']) t.ok(devs.includes(want), `/dev/${want}`)
    t.notOk(devs.some(x => /^(sd|vd|nvme|loop|mem|kmem|port)/.test(x)), `no disk or memory devices (${devs.join(' ')})`)
  })

  t.test('host processes can be neither signalled nor traced', async t => {
    const victim = spawn('sleep', ['120'], { stdio: 'ignore' })
    t.teardown(() => { victim.kill('SIGKILL') })
    const pid = victim.pid as number
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c', `kill -9 ${pid} 2>/dev/null && echo killed; ls /proc | grep -c '^[0-9]'`])
    t.notMatch(r.stdout, /killed/)
    t.ok(Number(r.stdout.trim().split('\n').at(-1)) < 5, 'only its own processes are in /proc')
    t.equal(victim.exitCode, null, 'the host process lives')
    t.ok(existsSync(`/proc/${pid}`))
  })

  t.test('another container\'s files are out of reach', async t => {
    await d.ok(['run', '-d', '--name', 'victim', 'bb', 'sh', '-c', 'echo s3cret > /root/secret; sleep 60'])
    const v = await inspect(d, 'victim')
    const r = await d.cli(['run', '--rm', 'host', 'sh', '-c', `cat /proc/*/root/root/secret 2>/dev/null; ls /var/lib/berth 2>/dev/null; find / -xdev -name secret -path '*root*' 2>/dev/null | head -3; echo done`])
    t.notMatch(r.stdout, /s3cret/)
    t.match(r.stdout, /^done$/m)
    t.ok(v.uidBase !== undefined)
    await d.ok(['rm', '-f', 'victim'])
  })

  t.test('no path back to a host binary the runtime runs', async t => {
    await d.ok(['run', '-d', '--name', 'exe', 'bb', 'sleep', '60'])
    const r = await d.cli(['exec', 'exe', 'sh', '-c', 'for p in /proc/[0-9]*; do readlink $p/exe; done'])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, /berth-shim|node/, `no shim or node binary visible: ${r.stdout.replace(/\n/g, ' ')}`)
    await d.ok(['rm', '-f', 'exe'])
  })
}
