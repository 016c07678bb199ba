// The proxy namespace's supervisor (docs/proxy.md), for real: berth-shim driven directly as
// berthd would, with a rootfs where python3 runs (busybox plus the host's /usr, idmapped and
// read-only, as the built-in host image does). Traffic stays on this machine: loopback, the
// containers' own namespaces, and a veth pair the test makes (198.18.0.1) and removes.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import {
  chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, rmSync,
  symlinkSync, writeFileSync
} from 'node:fs'
import { connect, createServer } from 'node:net'
import type { Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { control } from './fixtures/control.ts'

const SHIM = process.env.BERTH_SHIM ?? fileURLToPath(new URL('./build/Release/berth-shim', import.meta.url))
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find(p => existsSync(p))
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : undefined
const UID_BASE = 400000
const UID_COUNT = 65536
const CGROUP_PARENT = `berth-proxy-test-${process.pid}`
const DUMMY = `bpxv${process.pid % 100000}`
const DUMMY_IP = '198.18.0.1'
const DUMMY_IP6 = 'fd00:b5:0:0::1'

if (!existsSync(SHIM)) {
  t.plan(0, `the shim is not built (${SHIM}); sh scripts/build-addon.sh builds it`)
  process.exit(0)
}

function selftest (what: string, input: string): string {
  return spawnSync(SHIM, ['selftest', what, input], { encoding: 'utf8' }).stdout.trim()
}

// ---- pure parts: no root needed ------------------------------------------------------------

t.test('JSON reader: values, escapes, errors', async t => {
  t.equal(selftest('json', ' {"b":[1,-2.5e3,true,false,null],"a":"x\\u00e9\\ud83d\\ude00\\n"} '),
    '{"a":"xé😀\\n","b":[1,-2500,true,false,null]}')
  for (const bad of ['{', '[1,]', '{"a" 1}', '"\\x"', '01', 'nul', '"\\ud800"', '[1] 2', '"a\nb"', '['.repeat(40) + ']'.repeat(40)]) {
    t.match(selftest('json', bad), /^error: JSON: /, `rejects ${JSON.stringify(bad).slice(0, 30)}`)
  }
})

t.test('CIDR matching: IPv4, IPv6, mapped addresses, prefixes', async t => {
  const cases: Array<[string, string]> = [
    ['10.0.0.0/8 10.255.1.2', 'in'], ['10.0.0.0/8 11.0.0.1', 'out'], ['203.0.113.0/24 203.0.113.255', 'in'],
    ['203.0.113.0/25 203.0.113.128', 'out'], ['0.0.0.0/0 1.2.3.4', 'in'], ['0.0.0.0/0 ::1', 'out'],
    ['2001:db8::/32 2001:db8:ffff::1', 'in'], ['2001:db8::/32 2001:db9::1', 'out'], ['::/0 fe80::1', 'in'],
    ['10.0.0.0/8 ::ffff:10.1.2.3', 'in'], ['192.0.2.7 192.0.2.7', 'in'], ['192.0.2.7 192.0.2.8', 'out'],
    ['2001:db8::/127 2001:db8::1', 'in'], ['2001:db8::/128 2001:db8::1', 'out'],
    ['10.0.0.1/8 10.0.0.1', 'bad-cidr'], ['10.0.0.0/33 10.0.0.1', 'bad-cidr'], ['10.0.0.0/8 nope', 'bad-address']
  ]
  for (const [input, want] of cases) t.equal(selftest('cidr', input), want, input)
})

t.test('rules: validation and connect decisions', async t => {
  const rules = {
    version: 3,
    ports: [{ name: 'http', port: 8080, proto: 'tcp', hostAddress: '0.0.0.0', hostPort: 31004 }],
    services: [
      { name: 'db', vips: ['10.213.4.7', 'fd7b:e47::4:7'], port: 5432, targets: [{ address: '127.0.0.1', port: 31002 }] },
      { name: 'empty', vips: ['10.213.4.8'], port: 80, targets: [] }
    ],
    egress: { mode: 'cidrs', cidrs: ['203.0.113.0/24', '2001:db8::/32'] },
    chaos: [{ id: 'c1', call: 'connect', address: '10.213.4.7', port: 5432, errno: 111, probability: 0.5 }]
  }
  t.equal(selftest('rules', JSON.stringify(rules)), '{"version":3,"ports":1,"services":2,"chaos":1,"egress":2}')
  const decide = (addr: string, port: number): string => selftest('connect', `${JSON.stringify(rules)}\n${addr} ${port}`)
  t.equal(decide('10.213.4.7', 5432), 'route db')
  t.equal(decide('::ffff:10.213.4.7', 5432), 'route db', 'a mapped VIP')
  t.equal(decide('fd7b:e47::4:7', 5432), 'route db', 'an IPv6 VIP')
  t.equal(decide('10.213.4.7', 5433), 'refuse', 'a VIP on another port')
  t.equal(decide('10.213.4.8', 80), 'refuse', 'a VIP without targets')
  t.equal(decide('203.0.113.9', 443), 'route', 'an allowed CIDR')
  t.equal(decide('2001:db8::9', 443), 'route', 'an allowed IPv6 CIDR')
  t.equal(decide('198.51.100.1', 443), 'unreach', 'outside the CIDRs')
  t.equal(decide('127.0.0.1', 80), 'continue', 'loopback')
  t.equal(decide('::1', 80), 'continue', 'IPv6 loopback')
  t.equal(selftest('connect', `{"version":1}\n198.51.100.1 80`), 'unreach', 'no egress: none')
  t.equal(selftest('connect', `{"version":1,"egress":{"mode":"all"}}\n198.51.100.1 80`), 'route')
  for (const [bad, field] of [
    ['{"version":-1}', 'version'], ['{"version":1,"ports":[{"port":0,"hostPort":1}]}', 'ports\\[0\\].port'],
    ['{"version":1,"ports":[{"port":1,"hostPort":1,"proto":"sctp"}]}', 'ports\\[0\\].proto'],
    ['{"version":1,"services":[{"vips":["nope"],"port":1}]}', 'services\\[0\\].vips\\[0\\]'],
    ['{"version":1,"egress":{"mode":"some"}}', 'egress.mode'],
    ['{"version":1,"egress":{"mode":"cidrs","cidrs":["10.0.0.1/8"]}}', 'egress.cidrs\\[0\\]'],
    ['{"version":1,"chaos":[{"id":"x","call":"open","path":"rel"}]}', 'chaos\\[0\\].path'],
    ['{"version":1,"chaos":[{"id":"x","call":"connect","probability":2}]}', 'chaos\\[0\\].probability']
  ]) t.match(selftest('rules', bad), new RegExp(`^error: rules: ${field}`), bad)
})

// ---- containers --------------------------------------------------------------------------

const SKIP: string | false = process.getuid?.() !== 0
  ? 'needs root: the shim creates namespaces, cgroups and mounts'
  : BUSYBOX === undefined ? 'needs busybox for the container image'
    : PYTHON === undefined ? 'needs /usr/bin/python3 (bound into the container from the host)'
      : spawnSync('ip', ['-V']).status !== 0 ? 'needs iproute2 (ip) for the dummy interface' : false

if (SKIP !== false) {
  t.test('containers', { skip: SKIP }, async () => {})
} else {
  await containerTests()
}

async function containerTests (): Promise<void> {
  const tmp = mkdtempSync('/var/tmp/bpx-')
  const image = join(tmp, 'image')
  const started: Array<{ bundle: string, pid: number, shimPid: number }> = []
  const servers: Server[] = []
  let seq = 0

  t.teardown(async () => {
    for (const s of servers) s.close()
    // A container outlives its shim: kill both (PID 1's death ends its pid namespace).
    for (const s of started) for (const p of [s.pid, s.shimPid]) if (alive(p)) try { process.kill(p, 'SIGKILL') } catch {}
    for (const s of started) for (let i = 0; i < 40 && alive(s.shimPid); i++) await sleep(50)
    spawnSync('ip', ['link', 'del', DUMMY])
    for (const h of cgroupHierarchies()) {
      const parent = join(h, CGROUP_PARENT)
      if (!existsSync(parent)) continue
      for (const leaf of readdirSync(parent, { withFileTypes: true })) {
        if (!leaf.isDirectory()) continue
        try { writeFileSync(join(parent, leaf.name, 'cgroup.kill'), '1') } catch {}
        try {
          for (const p of readFileSync(join(parent, leaf.name, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL')
        } catch {}
        for (let i = 0; i < 20; i++) { try { rmdirSync(join(parent, leaf.name)); break } catch { await sleep(50) } }
      }
      try { rmdirSync(parent) } catch {}
    }
    rmSync(tmp, { recursive: true, force: true })
  })

  // busybox in /bin, the host's /usr bound in (python3), lib/lib64 as the host has them.
  for (const d of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev', 'usr', 'mnt']) mkdirSync(join(image, d), { recursive: true })
  chmodSync(join(image, 'tmp'), 0o1777)
  copyFileSync(BUSYBOX as string, join(image, 'bin', 'busybox'))
  chmodSync(join(image, 'bin', 'busybox'), 0o755)
  for (const a of spawnSync(BUSYBOX as string, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
    if (!existsSync(join(image, 'bin', a))) symlinkSync('busybox', join(image, 'bin', a))
  }
  for (const l of ['lib', 'lib64']) symlinkSync(`usr/${l}`, join(image, l))
  writeFileSync(join(image, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')

  spawnSync('ip', ['link', 'del', DUMMY])
  // A veth pair (this kernel may lack the dummy type) whose first end holds the test's address.
  for (const args of [['link', 'add', DUMMY, 'type', 'veth', 'peer', 'name', `${DUMMY}p`], ['addr', 'add', `${DUMMY_IP}/32`, 'dev', DUMMY],
    ['addr', 'add', `${DUMMY_IP6}/128`, 'dev', DUMMY, 'nodad'], ['link', 'set', DUMMY, 'up'], ['link', 'set', `${DUMMY}p`, 'up']]) {
    const r = spawnSync('ip', args, { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
  }

  type Pairs = Array<[string, string]>
  interface Box { dir: string, pid: number, shimPid: number }

  function writeConfig (dir: string, pairs: Pairs): void {
    writeFileSync(join(dir, 'config'), pairs.map(([k, v]) => `${k}\0${v}\0`).join(''))
  }

  /** A container running ARGS (python by default), its rules written as berthd would. */
  function start (args: string[], opts: { rules?: object, extra?: Pairs } = {}): Box {
    const n = ++seq
    const dir = join(tmp, `c${n}`)
    mkdirSync(dir, { mode: 0o700 })
    for (const d of ['lower', 'rootfs', 'upper', 'work']) mkdirSync(join(dir, d), { mode: 0o700 })
    for (const d of ['upper', 'work']) chownSync(join(dir, d), UID_BASE, UID_BASE)
    const id = (n.toString(16).padStart(4, '0') + process.pid.toString(16).padStart(8, '0') + '0000').slice(0, 16)
    const pairs: Pairs = [['version', '1'], ['id', id], ['name', `px${n}`], ['image', image],
      ['bind', `/usr\x1f/usr\x1fro,rec,idmap`], ['env', 'PATH=/bin:/usr/bin'], ['env', 'PYTHONDONTWRITEBYTECODE=1'],
      ['cgroup', `${CGROUP_PARENT}/${id}`], ['uid_base', String(UID_BASE)], ['uid_count', String(UID_COUNT)]]
    if (opts.rules !== undefined) {
      writeFileSync(join(dir, 'rules.json'), JSON.stringify(opts.rules))
      pairs.push(['rules_file', join(dir, 'rules.json')])
    }
    for (const a of args) pairs.push(['arg', a])
    pairs.push(...(opts.extra ?? []))
    writeConfig(dir, pairs)
    const r = spawnSync(SHIM, ['create', dir], { encoding: 'utf8', timeout: 30_000 })
    const json = JSON.parse(r.stdout.trim().split('\n')[0] || '{}')
    if (json.ok !== true) throw new Error(`create: ${r.stdout} ${r.stderr}`)
    started.push({ bundle: dir, pid: json.pid, shimPid: json.shimPid })
    return { dir, pid: json.pid, shimPid: json.shimPid }
  }

  interface Ran { status: number | null, stdout: string, stderr: string }
  /** Asynchronous, so that this process's own servers keep answering meanwhile. */
  async function exec (box: Box, args: string[], timeout = 60_000): Promise<Ran> {
    return await new Promise(resolve => {
      const c = spawn(SHIM, ['exec', box.dir, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      c.stdout.on('data', d => { stdout += d.toString() })
      c.stderr.on('data', d => { stderr += d.toString() })
      const timer = setTimeout(() => c.kill('SIGKILL'), timeout)
      c.on('close', status => { clearTimeout(timer); resolve({ status, stdout, stderr }) })
    })
  }

  async function py (box: Box, code: string, timeout = 60_000): Promise<Ran> {
    return await exec(box, ['python3', '-c', code], timeout)
  }

  async function request (dir: string, line: string): Promise<any> {
    const got = await control(dir, [line], g => g.some(l => !l.includes('"event":"port"') && !l.includes('"event":"calls"')))
    return JSON.parse(got.find(l => !l.includes('"event":"port"') && !l.includes('"event":"calls"')) ?? '{}')
  }

  function alive (pid: number): boolean {
    try { process.kill(pid, 0); return true } catch { return false }
  }

  function cgroupHierarchies (): string[] {
    const out: string[] = []
    for (const m of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = m.split(' ')
      const sep = f.indexOf('-')
      if (sep > 0 && (f[sep + 1] === 'cgroup' || f[sep + 1] === 'cgroup2') && f[4].startsWith('/sys/fs/cgroup')) out.push(f[4])
    }
    return out
  }

  /** A TCP server on the host answering every connection with its own tag, then closing. */
  async function hostServer (host: string, tag: string): Promise<number> {
    const srv = createServer(s => { s.on('error', () => {}); s.end(tag) })
    servers.push(srv)
    await new Promise<void>(resolve => srv.listen(0, host, resolve))
    return (srv.address() as { port: number }).port
  }

  async function fetchFrom (host: string, port: number, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms
    for (;;) {
      try {
        return await new Promise<string>((resolve, reject) => {
          const s = connect({ host, port })
          let data = ''
          s.setTimeout(2000, () => { s.destroy(new Error('timeout')) })
          s.on('connect', () => s.write('ping\n'))
          s.on('data', d => { data += d.toString(); if (data.includes('\n')) { s.end(); resolve(data.trim()) } })
          s.on('error', reject)
          s.on('close', () => resolve(data.trim()))
        })
      } catch (err) {
        if (Date.now() > deadline) throw err
        await sleep(100)
      }
    }
  }

  const ECHO = (family: string, addr: string): string => String.raw`
import socket, time
time.sleep(0.5)  # the test's control client connects first and sees the port event
s = socket.socket(socket.${family}, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("${addr}", 8080))
s.listen(8)
print("listening", s.getsockname()[1], flush=True)
for _ in range(4):
    c, a = s.accept()
    line = c.recv(100)
    c.sendall(b"echo:" + line)
    c.close()
`
  const hostPort = 31000 + (process.pid % 2000)

  t.test('bind of a declared port: reachable from the host on hostPort, IPv4 and IPv6; a port event', async t => {
    const rules = { version: 1, ports: [{ name: 'http', port: 8080, proto: 'tcp', hostAddress: '0.0.0.0', hostPort }] }
    const box4 = start(['python3', '-c', ECHO('AF_INET', '0.0.0.0')], { rules })
    const events = control(box4.dir, [], g => g.some(l => l.includes('"event":"port"')))
    t.equal(await fetchFrom('127.0.0.1', hostPort), 'echo:ping', 'IPv4 workload, reached on the host port')
    const ev = JSON.parse((await events).find(l => l.includes('"event":"port"')) ?? '{}')
    t.match(ev, { event: 'port', name: 'http', port: 8080, proto: 'tcp', hostAddress: '0.0.0.0', hostPort })
    const st = await request(box4.dir, 'state')
    t.equal(st.rulesVersion, 1)
    process.kill(box4.pid, 'SIGKILL')
    for (let i = 0; i < 100 && alive(box4.shimPid); i++) await sleep(50)

    const rules6 = { version: 1, ports: [{ name: 'http', port: 8080, proto: 'tcp', hostAddress: '0.0.0.0', hostPort: hostPort + 1 }] }
    const box6 = start(['python3', '-c', ECHO('AF_INET6', '::')], { rules: rules6 })
    t.equal(await fetchFrom('::1', hostPort + 1), 'echo:ping', 'IPv6 workload, reached on [::1]')
    t.equal(await fetchFrom('127.0.0.1', hostPort + 1), 'echo:ping', 'and on IPv4 (dual stack, V6ONLY off)')
    // An undeclared port stays inside the container's own namespace.
    const r = await py(box6, 'import socket\ns=socket.socket(); s.bind(("0.0.0.0", 9099)); s.listen(1); print(s.getsockname())')
    t.equal(r.status, 0, r.stderr)
    t.match(r.stdout, /9099/)
    const probe = spawnSync('python3', ['-c', 'import socket\ntry:\n  socket.create_connection(("127.0.0.1", 9099), 1); print("open")\nexcept OSError: print("closed")'], { encoding: 'utf8' })
    t.equal(probe.stdout.trim(), 'closed', 'the undeclared port is not on the host')
  })

  // One container for the connect tests: it reaches the host's servers through VIPs.
  const targetPort = await hostServer('127.0.0.1', 'target-a\n')
  const dummyPort = await hostServer(DUMMY_IP, 'dummy\n')
  const baseRules = {
    version: 1,
    services: [
      { name: 'svc', vips: ['10.213.4.7', 'fd7b:e47::4:7'], port: 80, targets: [{ address: '127.0.0.1', port: targetPort }] },
      { name: 'dead', vips: ['10.213.4.9'], port: 80, targets: [] }
    ],
    egress: { mode: 'none' }
  }
  const client = start(['sleep', '3600'], { rules: baseRules })
  const READ = 'def read(s):\n  d=b""\n  while True:\n    x=s.recv(100)\n    if not x: return d\n    d+=x\n'

  t.test('connect to a VIP reaches a host server on the target port (IPv4 and IPv6 VIPs)', async t => {
    const r = await py(client, `import socket\n${READ}
s=socket.create_connection(("10.213.4.7", 80), 5); print(read(s).decode().strip())
s=socket.socket(socket.AF_INET6); s.connect(("fd7b:e47::4:7", 80)); print(read(s).decode().strip(), s.family)`)
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout.trim().split('\n')[0], 'target-a')
    t.match(r.stdout.trim().split('\n')[1], /^target-a /, 'an AF_INET6 socket to an IPv4 target')
  })

  t.test('a non-blocking connect (asyncio) works; options set before connect read back', async t => {
    const r = await py(client, `import asyncio, socket
async def main():
    reader, writer = await asyncio.wait_for(asyncio.open_connection("10.213.4.7", 80), 5)
    print((await reader.read()).decode().strip())
asyncio.run(main())
s=socket.socket(); s.setblocking(False)
try:
    s.connect(("10.213.4.7", 80)); print("immediate")
except BlockingIOError as e:
    print("inprogress", e.errno)
s.close()
s=socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
s.connect(("10.213.4.7", 80))
print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
      s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))`)
    t.equal(r.status, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    t.equal(lines[0], 'target-a', 'asyncio read through the routed socket')
    t.equal(lines[1], 'inprogress 115', 'EINPROGRESS for a non-blocking socket')
    t.equal(lines[2], '1 1 131072 77', 'SO_KEEPALIVE, TCP_NODELAY, SO_RCVBUF (doubled by the kernel), TCP_KEEPIDLE')
  })

  t.test('egress none refuses a non-VIP address while a VIP works; a VIP without targets is refused', async t => {
    const r = await py(client, `import socket, errno
for addr in [("${DUMMY_IP}", ${dummyPort}), ("10.213.4.9", 80), ("10.213.4.7", 80)]:
    try:
        s=socket.create_connection(addr, 5); print("ok", s.recv(100).decode().strip())
    except OSError as e:
        print("err", errno.errorcode[e.errno])`)
    t.equal(r.status, 0, r.stderr)
    t.same(r.stdout.trim().split('\n'), ['err ENETUNREACH', 'err ECONNREFUSED', 'ok target-a'])
  })

  t.test('egress cidrs: the dummy address is allowed once listed; a lower version is ignored', async t => {
    const cidrRules = { ...baseRules, version: 5, egress: { mode: 'cidrs', cidrs: [`${DUMMY_IP}/32`] } }
    t.same(await request(client.dir, `rules ${JSON.stringify(cidrRules)}`), { ok: true, version: 5 })
    const r = await py(client, `import socket\nprint(socket.create_connection(("${DUMMY_IP}", ${dummyPort}), 5).recv(100).decode().strip())`)
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout.trim(), 'dummy')
    t.same(await request(client.dir, `rules ${JSON.stringify({ ...baseRules, version: 4 })}`), { ok: true, version: 5 }, 'version 4 < 5 is ignored')
    const r2 = await py(client, `import socket\nprint(socket.create_connection(("${DUMMY_IP}", ${dummyPort}), 5).recv(100).decode().strip())`)
    t.equal(r2.stdout.trim(), 'dummy', 'still the version 5 table')
    t.match(await request(client.dir, 'rules {"version":'), { ok: false, code: 'BERTH_ERR_CONFIG' })
    t.same(await request(client.dir, `rules ${JSON.stringify({ ...baseRules, version: 6 })}`), { ok: true, version: 6 })
  })

  t.test('chaos: probability, errno, delay, expiry, removal, hit counts', async t => {
    const chaos = (version: number, c: object[]): object => ({ ...baseRules, version, chaos: c })
    t.same(await request(client.dir, `rules ${JSON.stringify(chaos(10, [{ id: 'p30', call: 'connect', address: '10.213.4.7', port: 80, errno: 111, probability: 0.3 }]))}`), { ok: true, version: 10 })
    const r = await py(client, `import socket, errno
fails = other = 0
for i in range(1000):
    s = socket.socket()
    try:
        s.connect(("10.213.4.7", 80))
    except ConnectionRefusedError:
        fails += 1
    except OSError as e:
        other += 1
    s.close()
print(fails, other)`, 120_000)
    t.equal(r.status, 0, r.stderr)
    const [fails, other] = r.stdout.trim().split(' ').map(Number)
    t.ok(fails >= 240 && fails <= 360, `~300 of 1000 refused (${fails})`)
    t.equal(other, 0, 'no other errors')
    const st = await request(client.dir, 'state')
    t.equal(st.chaosHits.p30, fails, 'hits counted per rule id')

    t.same(await request(client.dir, `rules ${JSON.stringify(chaos(11, [{ id: 'slow', call: 'connect', address: '10.213.4.7', port: 80, errno: 0, delayMs: 400 }, { id: 'eacces', call: 'connect', address: '10.213.4.9', port: 0, errno: 13 }]))}`), { ok: true, version: 11 })
    const r2 = await py(client, `import socket, time, errno
t0 = time.monotonic(); s = socket.create_connection(("10.213.4.7", 80), 5); print(s.recv(100).decode().strip(), int((time.monotonic() - t0) * 1000))
try:
    socket.create_connection(("10.213.4.9", 1234), 5)
except OSError as e:
    print(errno.errorcode[e.errno])`)
    t.equal(r2.status, 0, r2.stderr)
    const [l1, l2] = r2.stdout.trim().split('\n')
    t.equal(l1.split(' ')[0], 'target-a', 'a delay-only rule lets the call proceed')
    t.ok(Number(l1.split(' ')[1]) >= 380, `the delay is observed (${l1.split(' ')[1]} ms)`)
    t.equal(l2, 'EACCES', 'the errno is the rule\'s')

    // Expired rules are skipped; a new table without the rule removes it.
    t.same(await request(client.dir, `rules ${JSON.stringify(chaos(12, [{ id: 'old', call: 'connect', port: 80, errno: 111, expiresAt: Date.now() - 1000 }]))}`), { ok: true, version: 12 })
    const r3 = await py(client, 'import socket\nprint(socket.create_connection(("10.213.4.7", 80), 5).recv(100).decode().strip())')
    t.equal(r3.stdout.trim(), 'target-a', 'an expired rule does not fire')
    t.same(await request(client.dir, `rules ${JSON.stringify(chaos(13, [{ id: 'all', call: 'connect', port: 80, errno: 111 }]))}`), { ok: true, version: 13 })
    t.not((await py(client, 'import socket\nsocket.create_connection(("10.213.4.7", 80), 5)')).status, 0, "a certain rule fires")
    t.same(await request(client.dir, `rules ${JSON.stringify(chaos(14, []))}`), { ok: true, version: 14 })
    t.equal((await py(client, 'import socket\nsocket.create_connection(("10.213.4.7", 80), 5)')).status, 0, "removed by the next table")
    const st2 = await request(client.dir, 'state')
    t.match(st2.chaosHits, { p30: fails, slow: 1, eacces: 1, all: 1 })
    t.notOk('old' in st2.chaosHits)
  })

  t.test('calls events are batched to clients', async t => {
    // The connect's batch: python's start-up makes trapped calls of its own (sysinfo), which may
    // come in an earlier batch on a loaded machine.
    const isConnectBatch = (l: string): boolean => l.includes('"event":"calls"') && l.includes('"call":"connect"')
    const got = control(client.dir, [], g => g.some(isConnectBatch))
    await py(client, 'import socket\nsocket.create_connection(("10.213.4.7", 80), 5)')
    const ev = JSON.parse((await got).find(isConnectBatch) ?? '{}')
    t.match(ev.counts?.find((c: any) => c.call === 'connect'), { call: 'connect', action: 'routed', target: '10.213.4.7:80' })
  })

  t.test('sysinfo and free show the memory limit; uname_release; mknod; mount', async t => {
    const box = start(['sleep', '3600'], { extra: [['memory_bytes', String(256 << 20)], ['uname_release', '4.19.0-berth']] })
    const r = await exec(box, ['free', '-b'])
    t.equal(r.status, 0, r.stderr)
    // busybox's used column mixes in the host's /proc/meminfo (cached), so only the total is ours.
    t.match(r.stdout, new RegExp(`^\\s*Mem:\\s+${256 << 20}`, 'm'), 'free: total is the limit')
    const si = await py(box, `import ctypes
class S(ctypes.Structure): _fields_ = [("uptime", ctypes.c_long), ("loads", ctypes.c_ulong * 3), ("totalram", ctypes.c_ulong), ("freeram", ctypes.c_ulong), ("sharedram", ctypes.c_ulong), ("bufferram", ctypes.c_ulong), ("totalswap", ctypes.c_ulong), ("freeswap", ctypes.c_ulong), ("procs", ctypes.c_ushort), ("pad", ctypes.c_ushort), ("totalhigh", ctypes.c_ulong), ("freehigh", ctypes.c_ulong), ("mem_unit", ctypes.c_uint)]
s = S(); assert ctypes.CDLL(None).sysinfo(ctypes.byref(s)) == 0
print(s.totalram, s.freeram, s.procs, s.uptime, s.mem_unit)`)
    t.equal(si.status, 0, si.stderr)
    const [total, free, procs, uptime, unit] = si.stdout.trim().split(' ').map(Number)
    t.equal(total, 256 << 20, 'sysinfo: totalram is the limit')
    t.ok(free > 0 && free < 256 << 20, `sysinfo: freeram is limit - usage (${free})`)
    t.ok(procs >= 2 && procs < 10, `sysinfo: procs counts the container's tasks (${procs})`)
    t.ok(uptime < 60, `sysinfo: uptime is the container's (${uptime} s)`)
    t.equal(unit, 1)
    const u = await exec(box, ['uname', '-r'])
    t.equal(u.stdout.trim(), '4.19.0-berth', `uname -r of an exec'd process (exit ${String(u.status)}${u.stderr === '' ? '' : `, stderr: ${u.stderr.trim()}`})`)
    t.equal((await exec(box, ["uname", "-n"])).stdout.trim(), `px${seq}`)

    const m = await py(box, `import os, stat, errno
os.mknod("/tmp/null2", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
os.chdir("/tmp"); os.mknod("zero2", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
fd = os.open("/tmp/null2", os.O_WRONLY); os.write(fd, b"discarded"); os.close(fd)  # no O_CREAT: /tmp is sticky
print(os.stat("/tmp/null2").st_rdev == os.makedev(1, 3), open("/tmp/zero2", "rb").read(4))
for dev, kind in [(os.makedev(8, 0), stat.S_IFBLK), (os.makedev(1, 1), stat.S_IFCHR)]:
    try:
        os.mknod("/tmp/bad", 0o600 | kind, dev); print("made")
    except OSError as e:
        print(errno.errorcode[e.errno])
try:
    os.mknod("/tmp/null2", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
except OSError as e:
    print(errno.errorcode[e.errno])
os.mkfifo("/tmp/fifo"); print(stat.S_ISFIFO(os.stat("/tmp/fifo").st_mode))`)
    t.equal(m.status, 0, m.stderr)
    t.same(m.stdout.trim().split('\n'), ["True b'\\x00\\x00\\x00\\x00'", 'EPERM', 'EPERM', 'EEXIST', 'True'])

    const mt = await py(box, String.raw`import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def mount(src, tgt, fs, flags, data):
    r = libc.mount(src, tgt, fs, ctypes.c_ulong(flags), data)
    return "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
os.makedirs("/mnt/t", exist_ok=True); os.makedirs("/mnt/p", exist_ok=True)
print(mount(b"none", b"/mnt/t", b"tmpfs", 0, b"size=1m,mode=700"))
open("/mnt/t/x", "w").write("y")
print([l.split()[3] for l in open("/proc/self/mounts") if " /mnt/t " in l])
print(mount(b"/dev/vda", b"/mnt/p", b"ext4", 0, None))
print(mount(b"none", b"/mnt/p", b"tmpfs", 0, b"uid=0"))
print(mount(b"/mnt/t", b"/mnt/p", None, 4096, None))
print(mount(b"proc", b"/mnt/p", b"proc", 0, None))
print(sorted(os.listdir("/mnt/p"))[:1], os.path.exists("/mnt/p/self"))`)
    t.equal(mt.status, 0, mt.stderr)
    const lines = mt.stdout.trim().split('\n')
    t.equal(lines[0], 'ok', 'tmpfs mounted')
    t.match(lines[1], /nosuid/, 'forced nosuid')
    t.match(lines[1], /nodev/, 'forced nodev')
    t.equal(lines[2], 'EPERM', 'ext4 refused')
    t.equal(lines[3], 'EINVAL', 'a tmpfs option outside the allow-list')
    t.equal(lines[4], 'EPERM', 'a bind mount refused')
    t.equal(lines[5], 'ok', 'proc mounted')
    t.equal(lines[6], "['1'] True", 'in the container\'s pid namespace')
  })

  t.test('a nested listener is refused', async t => {
    const r = await py(client, String.raw`import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
class F(ctypes.Structure): _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class P(ctypes.Structure): _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(F))]
prog = (F * 1)(F(0x06, 0, 0, 0x7fff0000))
p = P(1, prog)
r = libc.syscall(317, 1, 8, ctypes.byref(p))
print(r, errno.errorcode.get(ctypes.get_errno()))`)
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout.trim(), '-1 EPERM')
  })

  t.test('the shim killed: a trapped call fails with ENOSYS instead of hanging', async t => {
    const box = start(['python3', '-c', `import socket, time, errno, os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
open("/tmp/ready", "w").write("")
signal.sigtimedwait([signal.SIGUSR1], 30)
try:
    socket.socket().bind(("0.0.0.0", 8080)); r = "bound"
except OSError as e:
    r = errno.errorcode[e.errno]
open("/tmp/result", "w").write(r)
time.sleep(30)`])
    process.kill(box.shimPid, 'SIGKILL')
    for (let i = 0; i < 40 && alive(box.shimPid); i++) await sleep(50)
    t.notOk(alive(box.shimPid), 'the shim is gone')
    const root = `/proc/${box.pid}/root`
    for (let i = 0; i < 100 && !existsSync(join(root, 'tmp', 'ready')); i++) await sleep(50)
    process.kill(box.pid, 'SIGUSR1')
    let result = ''
    for (let i = 0; i < 100 && result === ''; i++) {
      try { result = readFileSync(join(root, 'tmp', 'result'), 'utf8') } catch { await sleep(100) }
    }
    t.equal(result, 'ENOSYS', 'the workload got ENOSYS within 10 s')
    process.kill(box.pid, 'SIGKILL')
  })
}
