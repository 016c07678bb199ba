// berth-shim, for real: a busybox rootfs, a config as berthd writes it (docs/shim.md), and
// `berth-shim create|exec` run as root. Checks the container from inside (its output in
// container.log) and from the host (bundle files, cgroups, processes).
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import {
  chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync,
  rmdirSync, rmSync, statSync, symlinkSync, writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { control } from './fixtures/control.ts'

const SHIM = process.env.BERTH_SHIM ?? fileURLToPath(new URL('./build/Release/berth-shim', import.meta.url))
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find(p => existsSync(p))
const UID_BASE = 300000
const UID_COUNT = 65536
const CGROUP_PARENT = `berth-shim-test-${process.pid}`
const CGROUP_ROOT = '/sys/fs/cgroup'

if (!existsSync(SHIM)) {
  t.plan(0, `the shim is not built (${SHIM}); sh scripts/build-addon.sh builds it`)
  process.exit(0)
}
// `version` and config validation need nothing; everything that makes a container does.
const CONTAINER_SKIP: string | false = process.getuid?.() !== 0
  ? 'needs root: the shim creates namespaces, cgroups and mounts'
  : BUSYBOX === undefined ? 'needs busybox-static for the container image' : false

const tmp = mkdtempSync('/var/tmp/berth-shim-test-')
const image = join(tmp, 'image')
interface Started { bundle: string, pid: number, shimPid: number }
const started: Started[] = []
let seq = 0

t.teardown(async () => {
  for (const s of started) {
    if (existsSync(join(s.bundle, 'shim.sock'))) await control(s.bundle, ['kill 9'], 1).catch(() => {})
  }
  for (const s of started) {
    for (let i = 0; i < 40 && alive(s.shimPid); i++) await sleep(50)
    if (alive(s.shimPid)) process.kill(s.shimPid, 'SIGKILL')
  }
  for (const h of cgroupHierarchies()) {
    const parent = join(h, CGROUP_PARENT)
    if (!existsSync(parent)) continue
    for (const leaf of readdirSync(parent, { withFileTypes: true })) {
      if (leaf.isDirectory()) try { rmdirSync(join(parent, leaf.name)) } catch {}
    }
    try { rmdirSync(parent) } catch {}
  }
  rmSync(tmp, { recursive: true, force: true })
})

// ---- helpers -----------------------------------------------------------------------------

function makeImage (dir: string): void {
  for (const d of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev']) mkdirSync(join(dir, d), { recursive: true })
  chmodSync(join(dir, 'tmp'), 0o1777)
  copyFileSync(BUSYBOX as string, join(dir, 'bin', 'busybox'))
  chmodSync(join(dir, 'bin', 'busybox'), 0o755)
  const applets = spawnSync(BUSYBOX as string, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
  for (const a of applets) if (!existsSync(join(dir, 'bin', a))) symlinkSync('busybox', join(dir, 'bin', a))
  writeFileSync(join(dir, 'etc', 'image-file'), 'from the image\n')
}
if (CONTAINER_SKIP === false) makeImage(image)

type Pairs = Array<[string, string]>

/** A bundle directory as berthd makes it: 0700 root, upper/work owned by the container's root. */
function bundle (args: string[], extra: Pairs = [], opts: { userns?: boolean } = {}): string {
  const n = ++seq
  const dir = join(tmp, `c${n}`)
  mkdirSync(dir, { mode: 0o700 })
  for (const d of ['lower', 'rootfs', 'upper', 'work']) mkdirSync(join(dir, d), { mode: 0o700 })
  const userns = opts.userns ?? true
  if (userns) for (const d of ['upper', 'work']) chownSync(join(dir, d), UID_BASE, UID_BASE)
  const id = (n.toString(16).padStart(4, '0') + process.pid.toString(16).padStart(8, '0') + '0000000000').slice(0, 16)
  const pairs: Pairs = [['version', '1'], ['id', id], ['name', `box${n}`], ['image', image],
    ['env', 'PATH=/bin'], ['cgroup', `${CGROUP_PARENT}/${id}`]]
  if (userns) pairs.push(['uid_base', String(UID_BASE)], ['uid_count', String(UID_COUNT)])
  for (const a of args) pairs.push(['arg', a])
  pairs.push(...extra)
  writeConfig(dir, pairs)
  return dir
}

function configValue (dir: string, key: string): string {
  const f = readFileSync(join(dir, 'config'), 'utf8').split('\0')
  for (let i = 0; i + 1 < f.length; i += 2) if (f[i] === key) return f[i + 1]
  return ''
}

function writeConfig (dir: string, pairs: Pairs): void {
  writeFileSync(join(dir, 'config'), pairs.map(([k, v]) => `${k}\0${v}\0`).join(''))
}

interface CreateResult { status: number | null, json: Record<string, any> }

function create (dir: string): CreateResult {
  const r = spawnSync(SHIM, ['create', dir], { encoding: 'utf8', timeout: 30_000 })
  const lines = r.stdout.trim().split('\n')
  const json = JSON.parse(lines[0] || '{}')
  if (json.ok === true) started.push({ bundle: dir, pid: json.pid, shimPid: json.shimPid })
  return { status: r.status, json }
}

async function waitExit (dir: string, ms = 20_000): Promise<Record<string, any>> {
  const file = join(dir, 'exit')
  for (let waited = 0; waited < ms; waited += 50) {
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'))
    await sleep(50)
  }
  throw new Error(`no exit file in ${dir} after ${ms} ms`)
}

/** Decodes container.log: stream (1 byte), ms (u64 LE), length (u32 LE), bytes. */
function records (file: string): Array<{ stream: number, ms: number, data: string }> {
  const buf = readFileSync(file)
  const out = []
  let i = 0
  while (i < buf.length) {
    if (i + 13 > buf.length) throw new Error(`truncated record header at ${i} in ${file}`)
    const len = buf.readUInt32LE(i + 9)
    if (i + 13 + len > buf.length) throw new Error(`truncated record at ${i} in ${file}`)
    out.push({ stream: buf[i], ms: Number(buf.readBigUInt64LE(i + 1)), data: buf.subarray(i + 13, i + 13 + len).toString() })
    i += 13 + len
  }
  return out
}

function output (dir: string, stream = 1): string {
  return records(join(dir, 'container.log')).filter(r => r.stream === stream).map(r => r.data).join('')
}


function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

function statField (pid: number, field: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[field - 3]
}

function cgroupHierarchies (): string[] {
  const out: string[] = []
  for (const m of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = m.split(' ')
    const sep = f.indexOf('-')
    if (sep > 0 && (f[sep + 1] === 'cgroup' || f[sep + 1] === 'cgroup2') && f[4].startsWith(CGROUP_ROOT)) out.push(f[4])
  }
  return out
}

function exec (dir: string, args: string[]): { status: number | null, stdout: string, stderr: string, fd3: string } {
  const r = spawnSync(SHIM, ['exec', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], timeout: 30_000 })
  return { status: r.status, stdout: String(r.output[1]), stderr: String(r.output[2]), fd3: String(r.output[3] ?? '') }
}

// ---- tests -------------------------------------------------------------------------------

t.test('version prints the protocol version', async t => {
  const r = spawnSync(SHIM, ['version'], { encoding: 'utf8' })
  t.equal(r.stdout, '1\n')
  t.equal(r.status, 0)
})

t.test('config validation: every bad config is BERTH_ERR_CONFIG naming the key', async t => {
  const base: Pairs = [['version', '1'], ['id', '0123456789abcdef'], ['name', 'x'], ['image', image], ['cgroup', `${CGROUP_PARENT}/v`], ['arg', '/bin/true']]
  const without = (k: string): Pairs => base.filter(([key]) => key !== k)
  const cases: Array<[string, Pairs, RegExp]> = [
    ['an unknown key', [...base, ['frobnicate', '1']], /frobnicate/],
    ['version 2', [...without('version'), ['version', '2']], /version/],
    ['short id', [...without('id'), ['id', 'abc']], /id/],
    ['no arg', without('arg'), /arg/],
    ['no image', without('image'), /image/],
    ['relative image', [...without('image'), ['image', 'img']], /image/],
    ['uid_base alone', [...base, ['uid_base', '100000']], /uid_base/],
    ['name twice', [...base, ['name', 'y']], /name/],
    ['bad net', [...base, ['net', 'bridge']], /net/],
    ['bad bind option', [...base, ['bind', '/usr\x1f/usr\x1fexec']], /bind/],
    ['bind with ..', [...base, ['bind', '/usr\x1f/../etc\x1fro']], /bind/],
    ['cgroup escaping', [...without('cgroup'), ['cgroup', '../x']], /cgroup/],
    ['not a number', [...base, ['pids_max', '10k']], /pids_max/]
  ]
  for (const [what, pairs, re] of cases) {
    const dir = join(tmp, `cfg-${++seq}`)
    mkdirSync(dir)
    writeConfig(dir, pairs)
    const r = create(dir)
    t.equal(r.status, 1, what)
    t.match(r.json, { ok: false, code: 'BERTH_ERR_CONFIG' }, what)
    t.match(r.json.message, re, `${what}: ${r.json.message}`)
    t.notOk(existsSync(join(dir, 'shim.sock')), `${what}: nothing made`)
  }
})

t.test('a failed start reports the step and undoes the cgroup', { skip: CONTAINER_SKIP }, async t => {
  const noImage = bundle(['/bin/true'])
  writeConfig(noImage, [['version', '1'], ['id', configValue(noImage, 'id')], ['name', 'x'], ['image', join(tmp, 'missing')],
    ['cgroup', configValue(noImage, 'cgroup')], ['uid_base', String(UID_BASE)], ['uid_count', String(UID_COUNT)], ['arg', '/bin/true']])
  const r1 = create(noImage)
  t.match(r1.json, { ok: false, code: 'BERTH_ERR_MOUNT', syscall: 'open_tree', errno: 2 })
  const badCwd = bundle(['/bin/true'], [['cwd', '/no/such/dir']])
  const r2 = create(badCwd)
  t.match(r2.json, { ok: false, syscall: 'chdir', path: '/no/such/dir', errno: 2 })
  for (const dir of [noImage, badCwd]) {
    t.notOk(existsSync(join(dir, 'shim.sock')), 'no socket left')
    for (const h of cgroupHierarchies()) t.notOk(existsSync(join(h, CGROUP_PARENT, configValue(dir, 'id'))), `no cgroup in ${h}`)
  }
})

t.test('a container: PID 1, hostname, id map, idmapped image, upper owned by uid_base, masks, lo', { skip: CONTAINER_SKIP }, async t => {
  const hostMasked = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].filter(p => existsSync(p))
  const hasSysrq = existsSync('/proc/sysrq-trigger')
  const script = [
    'echo pid=$$',
    'echo host=$(hostname)',
    'echo map=$(cat /proc/self/uid_map)',
    'echo owner=$(stat -c %u:%g /bin/busybox /etc/image-file | sort -u)',
    'echo written > /root/new-file',
    'echo net=$(ls /sys/class/net)',
    'echo cgroup=$(grep -c -v ":/$" /proc/self/cgroup)',
    ...hostMasked.map(p => `[ -c ${p} ] && [ ! -s ${p} ] && echo masked=${p}`),
    hasSysrq ? '(echo 1 > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=writable || echo sysrq=denied' : 'true',
    '(echo evil > /proc/sys/kernel/hostname) 2>/dev/null && echo procsys=writable || echo procsys=denied',
    'echo caps=$(grep CapEff /proc/self/status)',
    'echo sigign=$(grep SigIgn /proc/self/status)',
    'echo to-stderr >&2',
    'exit 3'
  ].join('; ')
  const dir = bundle(['/bin/sh', '-c', script])
  const r = create(dir)
  t.equal(r.status, 0, JSON.stringify(r.json))
  t.equal(r.json.ok, true)
  t.type(r.json.pid, 'number')
  const state = JSON.parse(readFileSync(join(dir, 'state'), 'utf8'))
  t.equal(state.pid, r.json.pid)
  t.equal(state.shimPid, r.json.shimPid)
  t.type(state.pidStartTime, 'number')
  const exit = await waitExit(dir)
  t.match(exit, { exitCode: 3, signal: 0, oomKilled: false, reason: 'exited' })
  t.type(exit.finishedAt, 'number')

  const out = output(dir)
  t.match(out, /^pid=1$/m, 'the command is PID 1')
  t.match(out, new RegExp(`^host=${configValue(dir, 'name')}$`, 'm'), 'hostname is the name')
  t.match(out, new RegExp(`^map= ?0 ${UID_BASE} ${UID_COUNT}$`, 'm'), 'uid_map shows the mapping')
  t.match(out, /^owner=0:0$/m, 'host root\'s image files are root\'s inside (idmapped lower)')
  t.match(out, /^net=lo$/m, 'only lo in a private net namespace')
  t.match(out, /^cgroup=0$/m, 'the container sees its own cgroup as /')
  for (const p of hostMasked) t.match(out, new RegExp(`^masked=${p}$`, 'm'), `${p} masked`)
  if (hasSysrq) t.match(out, /^sysrq=denied$/m, '/proc/sysrq-trigger not writable')
  t.match(out, /^procsys=denied$/m, '/proc/sys is read-only')
  t.notMatch(out, /CapEff:\s*0*3fffffffff/, 'not every capability')
  t.match(out, /^sigign=SigIgn:\s*0+$/m, 'no signal ignored (the shim\'s SIGPIPE does not leak)')
  t.equal(output(dir, 2), 'to-stderr\n', 'stderr framed as stream 2')

  const file = join(dir, 'upper', 'root', 'new-file')
  t.ok(existsSync(file), 'the write landed in upper/')
  t.equal(statSync(file).uid, UID_BASE, 'owned by uid_base on the host')
  t.equal(readFileSync(file, 'utf8'), 'written\n')

  const recs = records(join(dir, 'container.log'))
  t.ok(recs.every(x => (x.stream === 1 || x.stream === 2) && Math.abs(x.ms - Date.now()) < 120_000), 'records have streams and timestamps')
  t.notOk(existsSync(join(dir, 'shim.sock')), 'the socket is gone after exit')
  for (const h of cgroupHierarchies()) {
    t.notOk(existsSync(join(h, CGROUP_PARENT, configValue(dir, 'id'))), `cgroup removed from ${h}`)
  }
})

t.test('a missing command fails create with BERTH_ERR_EXEC_NOT_FOUND and leaves nothing behind', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/nope'])
  const r = create(dir)
  t.equal(r.status, 1)
  t.match(r.json, { ok: false, code: 'BERTH_ERR_EXEC_NOT_FOUND', syscall: 'execve', path: '/bin/nope', errno: 2 })
  t.equal(r.json.message, 'execve `/bin/nope`: No such file or directory')
  t.notOk(existsSync(join(dir, 'shim.sock')))
  t.notOk(existsSync(join(dir, 'state')))
  for (const h of cgroupHierarchies()) {
    t.notOk(existsSync(join(h, CGROUP_PARENT, configValue(dir, 'id'))), `no cgroup left in ${h}`)
  }
})

t.test('control socket: state, kill 9 without init is a signal death', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sleep', '1000'])
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  const st = statSync(join(dir, 'shim.sock'))
  t.equal(st.mode & 0o777, 0o600, 'socket mode 0600')
  const [state] = await control(dir, ['state'], 1)
  t.same(JSON.parse(state), { event: 'state', pid: r.json.pid, running: true, rulesVersion: 0, chaosHits: {} })
  // A second client at the same time sees the exit event too.
  const watcher = control(dir, [], 1)
  const replies = await control(dir, ['kill 9'], 2)
  t.same(JSON.parse(replies[0]), { ok: true })
  const ev = JSON.parse(replies[1])
  t.match(ev, { event: 'exit', exitCode: 137, signal: 9, oomKilled: false, reason: 'signaled' })
  t.match(JSON.parse((await watcher)[0]), { event: 'exit', signal: 9 })
  t.match(await waitExit(dir), { signal: 9, reason: 'signaled' })
})

t.test('init=1: PID 1 is the tiny init, kill 15 reaches the command', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sleep', '1000'], [['init', '1']])
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  const ps = exec(dir, ['--', '/bin/sh', '-c', 'cat /proc/1/comm; cat /proc/2/comm'])
  t.equal(ps.status, 0, ps.stderr)
  t.match(ps.stdout, /^sleep$/m, 'the command runs under PID 1')
  t.equal(ps.stdout.split('\n')[0], 'berth-init', 'PID 1 is the init')
  const cmdline = exec(dir, ['--', '/bin/cat', '/proc/1/cmdline'])
  t.notMatch(cmdline.stdout, /berth-shim|\/var\/tmp/, 'no host paths in PID 1\'s command line')
  const replies = await control(dir, ['kill 15'], 2)
  t.same(JSON.parse(replies[0]), { ok: true })
  t.match(JSON.parse(replies[1]), { event: 'exit', exitCode: 143, signal: 0, reason: 'exited' }, 'SIGTERM forwarded, 128+15')
})

t.test('exec joins the container: hostname, pid namespace, env, cwd, exit status', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sleep', '1000'], [['env', 'BASE=1']])
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  const e = exec(dir, ['-e', 'EXTRA=2', '--cwd', '/etc', '--', '/bin/sh', '-c',
    'hostname; readlink /proc/self/ns/pid; echo $BASE$EXTRA; pwd; cat /proc/1/comm; grep -c -v ":/$" /proc/self/cgroup; exit 7'])
  t.equal(e.status, 7, e.stderr)
  const lines = e.stdout.trim().split('\n')
  t.equal(lines[0], configValue(dir, 'name'), 'the container\'s hostname')
  t.equal(lines[1], readlinkSync(`/proc/${r.json.pid}/ns/pid`), 'the container\'s pid namespace')
  t.equal(lines[2], '12', 'base env plus -e')
  t.equal(lines[3], '/etc', '--cwd')
  t.equal(lines[4], 'sleep', 'sees the container\'s PID 1')
  t.equal(lines[5], '0', 'in the container\'s cgroups (each shows as / in its cgroup namespace)')
  const fds = exec(dir, ['--', '/bin/ls', '/proc/1/fd'])
  t.equal(fds.stdout.trim().split(/\s+/).join(' '), '0 1 2', 'PID 1 holds nothing of the shim\'s but stdio')

  const missing = exec(dir, ['--', 'no-such-binary'])
  t.equal(missing.status, 127, 'exec of a missing binary exits 127')
  t.match(JSON.parse(missing.fd3), { ok: false, code: 'BERTH_ERR_EXEC_NOT_FOUND', path: 'no-such-binary' }, 'reported on fd 3')
  await control(dir, ['kill 9'], 2)
})

t.test('memory_bytes: the OOM killer ends the container with reason oom', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sh', '-c', 'exec tail /dev/zero'], [['memory_bytes', String(32 << 20)]])
  const r = create(dir)
  if (r.json.code === 'BERTH_ERR_CGROUP') return t.skip(`no memory controller here: ${r.json.message}`, async () => {})
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  t.match(await waitExit(dir, 30_000), { signal: 9, oomKilled: true, reason: 'oom' })
})

t.test('pids_max stops a fork bomb', { skip: CONTAINER_SKIP }, async t => {
  // Bounded: 30 tries. busybox ash treats a failed fork as fatal, so the bomb runs in a subshell
  // that reports each success with the echo builtin; `$!` only changes when a fork worked. The
  // parent then kills everything with the kill builtin (an external command could not fork).
  const script = '( n=0; p=; i=0; while [ $i -lt 30 ]; do sleep 30 & if [ "$!" != "$p" ]; then n=$((n+1)); p=$!; ' +
    'echo started=$n; fi; i=$((i+1)); done ) 2>/dev/null; kill -9 -1; exit 0'
  const dir = bundle(['/bin/sh', '-c', script], [['pids_max', '10']])
  const r = create(dir)
  if (r.json.code === 'BERTH_ERR_CGROUP') return t.skip(`no pids controller here: ${r.json.message}`, async () => {})
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  t.match(await waitExit(dir), { exitCode: 0 })
  const counts = [...output(dir).matchAll(/started=(\d+)/g)].map(m => Number(m[1]))
  t.ok(counts.length > 0, 'the loop reported')
  const most = Math.max(...counts)
  t.ok(most <= 8, `at most 8 sleeps next to PID 1 and the subshell (got ${most})`)
})

t.test('the shim is detached and survives its parent being killed', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sleep', '1000'])
  const parent = spawn('/bin/sh', ['-c', `"${SHIM}" create "${dir}"; exec sleep 100`], { stdio: ['ignore', 'pipe', 'ignore'] })
  let line = ''
  for await (const chunk of parent.stdout) {
    line += chunk
    if (line.includes('\n')) break
  }
  const json = JSON.parse(line)
  t.equal(json.ok, true, line)
  started.push({ bundle: dir, pid: json.pid, shimPid: json.shimPid })
  t.not(Number(statField(json.shimPid, 4)), parent.pid, 'not the caller\'s child')
  t.not(statField(json.shimPid, 6), statField(process.pid, 6), 'its own session')
  const gone = new Promise(resolve => parent.on('exit', resolve))
  parent.kill('SIGKILL')
  await gone
  await sleep(100)
  t.ok(alive(json.shimPid), 'the shim lives on')
  const [state] = await control(dir, ['state'], 1)
  t.match(JSON.parse(state), { running: true })
  const again = spawnSync(SHIM, ['create', dir], { encoding: 'utf8', timeout: 30_000 })
  t.match(JSON.parse(again.stdout), { ok: false, errno: 98 }, 'a second shim for the same bundle is refused')
  t.ok(alive(json.shimPid), 'and the first is untouched')
  t.match(readlinkSync(`/proc/${json.shimPid}/exe`), /^\/memfd:berth-shim/, 'runs from the sealed memfd copy')
  await control(dir, ['kill 9'], 2)
  t.match(await waitExit(dir), { signal: 9 })
})

t.test('logs rotate past log_max_bytes and stay whole records', { skip: CONTAINER_SKIP }, async t => {
  const line = 'x'.repeat(300)
  const dir = bundle(['/bin/sh', '-c', `i=0; while [ $i -lt 60 ]; do echo ${line}; i=$((i+1)); done`],
    [['log_max_bytes', '4096']])
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  t.match(await waitExit(dir), { exitCode: 0 })
  t.ok(existsSync(join(dir, 'container.log.1')), 'rotated once at least')
  t.ok(statSync(join(dir, 'container.log')).size <= 4096, 'current file within the limit')
  const all = [...records(join(dir, 'container.log.1')), ...records(join(dir, 'container.log'))]
  t.ok(all.length > 0 && all.every(x => x.stream === 1), 'whole stdout records in both files')
})

t.test('bind entries: idmap, ro, rec, rw, a single file, the host image\'s /usr', { skip: CONTAINER_SKIP }, async t => {
  const share = join(tmp, 'share')
  const data = join(tmp, 'data')
  const single = join(tmp, 'single-file')
  mkdirSync(share, { recursive: true })
  mkdirSync(data, { recursive: true })
  chownSync(data, UID_BASE, UID_BASE)
  writeFileSync(join(share, 'file'), 'shared\n')
  writeFileSync(single, 'single\n')
  const script = [
    'echo share=$(stat -c %u /mnt/share/file) $(cat /mnt/share/file)',
    '(touch /mnt/share/new) 2>/dev/null && echo share-ro=no || echo share-ro=yes',
    'echo usr=$(stat -c %u /usr/bin) $(ls /usr/bin | wc -l)',
    '(touch /usr/new) 2>/dev/null && echo usr-ro=no || echo usr-ro=yes',
    'echo data > /data/f && echo data=ok',
    'echo single=$(cat /etc/single)'
  ].join('; ')
  const US = '\x1f'
  const dir = bundle(['/bin/sh', '-c', script], [
    ['bind', `${share}${US}/mnt/share${US}ro,idmap`],
    ['bind', `/usr${US}/usr${US}ro,idmap,rec`],
    ['bind', `${data}${US}/data${US}rw`],
    ['bind', `${single}${US}/etc/single${US}ro`]
  ])
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  t.match(await waitExit(dir), { exitCode: 0 })
  const out = output(dir)
  t.match(out, /^share=0 shared$/m, 'idmapped: host root\'s file is root\'s inside')
  t.match(out, /^share-ro=yes$/m, 'ro')
  t.match(out, /^usr=0 [1-9]\d*$/m, 'the host\'s /usr, idmapped')
  t.match(out, /^usr-ro=yes$/m, '/usr read-only')
  t.match(out, /^data=ok$/m, 'rw bind writable')
  t.equal(statSync(join(data, 'f')).uid, UID_BASE, 'written as uid_base on the host')
  t.match(out, /^single=single$/m, 'a file bound onto a file')
  t.equal(output(dir, 2), '', 'no errors')
})

t.test('net=host in a user namespace: the host\'s /sys bound read-only, still masked', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sh', '-c', 'echo nics=$(ls /sys/class/net | wc -l); (echo 1 > /sys/kernel/uevent_helper) 2>/dev/null && echo sys=rw || echo sys=ro; ' +
    'echo firmware=$(ls /sys/firmware | wc -l); echo net=$(readlink /proc/self/ns/net)'], [['net', 'host']])
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  t.match(await waitExit(dir), { exitCode: 0 })
  const out = output(dir)
  t.match(out, /^nics=[1-9]/m, 'the host\'s interfaces')
  t.match(out, /^sys=ro$/m, '/sys read-only')
  t.match(out, /^firmware=0$/m, '/sys/firmware masked')
  t.match(out, new RegExp(`^net=${readlinkSync('/proc/self/ns/net').replace(/[[\]]/g, '\\$&')}$`, 'm'), 'the host network namespace')
})

t.test('--userns host and net=host: no user namespace, the host\'s interfaces', { skip: CONTAINER_SKIP }, async t => {
  const dir = bundle(['/bin/sh', '-c', 'cat /proc/self/uid_map; ls /sys/class/net | wc -l; stat -c %u /bin/busybox; touch /root/h'],
    [['net', 'host']], { userns: false })
  const r = create(dir)
  t.equal(r.json.ok, true, JSON.stringify(r.json))
  t.match(await waitExit(dir), { exitCode: 0 })
  const [map, nics, owner] = output(dir).trim().split('\n')
  t.match(map.trim(), /^0\s+0\s+4294967295$/, 'the initial user namespace')
  t.ok(Number(nics) >= 1, 'host interfaces visible')
  t.equal(owner, '0')
  t.equal(statSync(join(dir, 'upper', 'root', 'h')).uid, 0, 'written as host root')

  const long = bundle(['/bin/sleep', '1000'], [['net', 'host']], { userns: false })
  const r2 = create(long)
  t.equal(r2.json.ok, true, JSON.stringify(r2.json))
  const e = exec(long, ['--', '/bin/sh', '-c', 'hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/mnt'])
  t.equal(e.status, 0, e.stderr)
  const [host, net, mnt] = e.stdout.trim().split('\n')
  t.equal(host, configValue(long, 'name'), 'exec joined the uts namespace')
  t.equal(net, readlinkSync('/proc/self/ns/net'), 'the host network namespace')
  t.equal(mnt, readlinkSync(`/proc/${r2.json.pid}/ns/mnt`), 'the container\'s mount namespace')
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${r2.json.shimPid}/status`, 'utf8'))?.[1])
  t.comment(`shim resident memory: ${rss} kB`)
  await control(long, ['kill 9'], 2)
})
