// Internal ports from the outside (issue #8, finding 5): a berthd runs in a network namespace of
// its own (the "host"), joined by veth pairs to two more namespaces this test makes — an
// outsider, and a member that runs a second berthd. No traffic leaves them. A workload declares
// `--port` (internal) and `--publish` (public) ports; the outsider connects straight to the
// host's address at each: the internal port must refuse it, the published one must serve it,
// over IPv4 and IPv6, also while the daemon is stopped. The member reaches the internal port
// while it is in the fleet and no longer once it has left or died.
import t, { type Test } from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, ROOT_DIR, makeBusyboxRootfs, runCli, skipReason, until, type CliResult } from './helpers.ts'

// The daemons run on the pinned Node (libp2p needs a recent one), however tap itself was started.
const PINNED = join(ROOT_DIR, 'node_modules', '.bin', 'node')
const NODE = existsSync(PINNED) ? PINNED : process.execPath

const run = (...args: string[]): { ok: boolean, out: string } => {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8' })
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` }
}
const must = (...args: string[]): void => {
  const r = run(...args)
  if (!r.ok) throw new Error(`${args.join(' ')}: ${r.out}`)
}

const sfx = randomBytes(3).toString('hex')
const HOST = `berth-ports-h-${sfx}`
const OUT = `berth-ports-o-${sfx}`
const MEM = `berth-ports-m-${sfx}`
// Test addresses exist only on the veths inside these namespaces.
const r = randomBytes(3)
const V4 = `10.${64 + (r[0] % 128)}.${r[1]}`
const V6 = `fd42:${r.toString('hex').slice(0, 4)}:${r[2].toString(16)}`
const ADDR = {
  hostToOut: `${V4}.1`, out: `${V4}.2`, hostToMem: `${V4}.5`, mem: `${V4}.6`,
  hostToOut6: `${V6}:1::1`, out6: `${V6}:1::2`, hostToMem6: `${V6}:2::1`, mem6: `${V6}:2::2`
}

const hasNft = run('sh', '-c', 'PATH="$PATH:/usr/sbin:/sbin" command -v nft').ok
const skip = skipReason() ?? (hasNft ? undefined : 'needs nft (scripts/system-deps.sh installs nftables)') ??
  (run('ip', 'netns', 'add', HOST).ok ? undefined : 'cannot create network namespaces')

/** Connects from a namespace (a plain host process there) and fetches a file: 'ok' or why not. */
const PROBE = String.raw`
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=3)
    s.settimeout(3)
    s.sendall(b"GET /berth-image-file HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b: break
        data += b
    print("ok" if b"image-file" in data else "no-data:" + repr(data[:80]))
except OSError as e:
    print(type(e).__name__)
`

function probe (ns: string, host: string, port: number): string {
  return spawnSync('ip', ['netns', 'exec', ns, 'python3', '-c', PROBE, host, String(port)], { encoding: 'utf8', timeout: 20_000 }).stdout?.trim() ?? 'no-output'
}

function removeNs (ns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean) ?? []
  for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL') } catch {} }
  run('ip', 'netns', 'del', ns)
}

interface Daemon { name: string, ns: string, dir: string, socket: string, proc?: ChildProcess, log: string }

if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const base = mkdtempSync(join(tmpdir(), 'berth-ports-'))
  // Two lives of the node: alone (no fleet), then, with a fresh data dir, the first node of a fleet.
  const solo: Daemon = { name: 'a', ns: HOST, dir: join(base, 'solo'), socket: join(base, 'solo.sock'), log: '' }
  const a: Daemon = { name: 'a', ns: HOST, dir: join(base, 'a'), socket: join(base, 'a.sock'), log: '' }
  const b: Daemon = { name: 'b', ns: MEM, dir: join(base, 'b'), socket: join(base, 'b.sock'), log: '' }
  const tableOf = (d: Daemon): string => 'berth_' + createHash('sha256').update(d.dir).digest('hex').slice(0, 12)
  const nftList = (d: Daemon): { ok: boolean, out: string } => run('ip', 'netns', 'exec', HOST, 'nft', 'list', 'table', 'inet', tableOf(d))
  const psk = join(base, 'fleet.psk')
  // 8080 internal; 8081 published on a host port inside the range (30000-32767).
  const PUBLISHED = 32100

  async function cli (d: Daemon, args: string[]): Promise<CliResult> {
    return await runCli(['--socket', d.socket, ...args], { timeoutMs: 120_000 })
  }

  async function startDaemon (d: Daemon, extra: string[]): Promise<void> {
    d.log = ''
    const proc = spawn('ip', ['netns', 'exec', d.ns, NODE, CLI, 'up', '--data-dir', d.dir, '--socket', d.socket,
      '--node-name', d.name, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] })
    proc.stderr?.on('data', (buf: Buffer) => { d.log += buf.toString() })
    d.proc = proc
    const up = await until(async () => proc.exitCode === null && (await cli(d, ['ps'])).code === 0, 60_000, 200)
    if (!up) throw new Error(`berthd ${d.name} did not come up: ${d.log}`)
  }

  async function stopDaemon (d: Daemon, signal: NodeJS.Signals): Promise<void> {
    const p = d.proc
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise(resolve => p.once('exit', resolve))
    p.kill(signal)
    await exited
  }

  const fleetFlags = (listen: string[], join: string[] = []): string[] =>
    ['--psk-file', psk, '--profile', 'local', ...listen.flatMap(l => ['--listen', l]), ...join.flatMap(j => ['--join', j])]

  async function statusOf (d: Daemon, name: string): Promise<string | undefined> {
    const r = await cli(d, ['nodes', '--json'])
    if (r.code !== 0) return undefined
    return (JSON.parse(r.stdout).members as Array<{ name: string, status: string }>).find(m => m.name === name)?.status
  }

  /** Runs a workload with an internal port (8080) and a published one; returns the internal host port. */
  async function runWeb (d: Daemon, name: string): Promise<number> {
    const r = await cli(d, ['run', '-d', '--name', name, '--port', 'http:8080', '--publish', `${PUBLISHED}:8081`,
      'bb', 'sh', '-c', 'httpd -h /etc -p 8080 && exec httpd -f -h /etc -p 8081'])
    if (r.code !== 0) throw new Error(`berth run ${name}: ${r.stderr}`)
    let internal = 0
    const bound = await until(async () => {
      const ports = JSON.parse((await cli(d, ['port', 'ls', '--json'])).stdout) as Array<{ workload: string, name: string, hostPort: number, bound: boolean }>
      const mine = ports.filter(p => p.workload === name)
      internal = mine.find(p => p.name === 'http')?.hostPort ?? 0
      return mine.length === 2 && mine.every(p => p.bound)
    }, 30_000, 200)
    if (!bound) throw new Error(`${name}'s ports were not bound: ${d.log}`)
    return internal
  }

  /** The outsider's view: the internal port refuses it over IPv4 and IPv6, the published one serves it. */
  function outsiderView (t: Test, internal: number, when: string): void {
    for (const host of [ADDR.hostToOut, ADDR.hostToOut6]) {
      t.not(probe(OUT, host, internal), 'ok', `${when}: the outsider cannot reach internal port ${internal} at ${host}`)
      t.equal(probe(OUT, host, PUBLISHED), 'ok', `${when}: the outsider reaches published port ${PUBLISHED} at ${host}`)
    }
  }

  t.teardown(async () => {
    for (const d of [b, a, solo]) {
      if (d.proc?.exitCode === null) {
        const ps = await cli(d, ['ps', '-a', '--json']).catch(() => undefined)
        if (ps?.code === 0) for (const c of JSON.parse(ps.stdout)) await cli(d, ['rm', '-f', c.name]).catch(() => {})
      }
      await stopDaemon(d, 'SIGTERM')
    }
    // The tables live in the host namespace: deleting it deletes them (and the veths) too.
    for (const d of [a, solo]) run('ip', 'netns', 'exec', HOST, 'nft', 'delete', 'table', 'inet', tableOf(d))
    for (const ns of [MEM, OUT, HOST]) removeNs(ns)
    rmSync(base, { recursive: true, force: true })
  })

  // Host ⟷ outsider and host ⟷ member: one veth pair each, IPv4 and IPv6, default routes to the host.
  for (const [ns, hostEnd, hostV4, peerV4, hostV6, peerV6] of [
    [OUT, 'to-out', ADDR.hostToOut, ADDR.out, ADDR.hostToOut6, ADDR.out6],
    [MEM, 'to-mem', ADDR.hostToMem, ADDR.mem, ADDR.hostToMem6, ADDR.mem6]
  ]) {
    must('ip', 'netns', 'add', ns)
    must('ip', '-n', HOST, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'up0', 'netns', ns)
    must('ip', '-n', HOST, 'addr', 'add', `${hostV4}/30`, 'dev', hostEnd)
    must('ip', '-n', HOST, '-6', 'addr', 'add', `${hostV6}/64`, 'dev', hostEnd, 'nodad')
    must('ip', '-n', HOST, 'link', 'set', hostEnd, 'up')
    must('ip', '-n', ns, 'addr', 'add', `${peerV4}/30`, 'dev', 'up0')
    must('ip', '-n', ns, '-6', 'addr', 'add', `${peerV6}/64`, 'dev', 'up0', 'nodad')
    must('ip', '-n', ns, 'link', 'set', 'up0', 'up')
    must('ip', '-n', ns, 'link', 'set', 'lo', 'up')
    must('ip', '-n', ns, 'route', 'add', 'default', 'via', hostV4)
    must('ip', '-n', ns, '-6', 'route', 'add', 'default', 'via', hostV6)
  }
  must('ip', '-n', HOST, 'link', 'set', 'lo', 'up')
  const cinit = await runCli(['cluster', 'init', '--psk-file', psk])
  if (cinit.code !== 0) throw new Error(`berth cluster init: ${cinit.stderr}`)
  makeBusyboxRootfs(join(base, 'bb-rootfs'))

  t.test('a node alone: an outsider cannot reach an internal port, also while berthd is stopped; published and local use work', async t => {
    await startDaemon(solo, [])
    t.equal((await cli(solo, ['image', 'import', 'bb', join(base, 'bb-rootfs')])).code, 0, 'image import')
    const internal = await runWeb(solo, 'web')
    t.ok(internal >= 30000 && internal <= 32767, `the internal port ${internal} is from the range`)
    outsiderView(t, internal, 'alone')
    // Local: loopback, and this host's own address on another link (fib saddr type local).
    t.equal(probe(HOST, '127.0.0.1', internal), 'ok', 'this node reaches it on loopback')
    t.equal(probe(HOST, ADDR.hostToOut, internal), 'ok', 'this node reaches it on its own outward address')
    const local = await cli(solo, ['run', '--rm', 'bb', 'wget', '-q', '-O', '-', 'http://web:8080/berth-image-file'])
    t.equal(local.code, 0, local.stderr)
    t.match(local.stdout, /image-file/, 'a container on this node reaches the service by name')
    const list = nftList(solo)
    t.ok(list.ok, `the daemon's table inet ${tableOf(solo)} exists`)
    t.match(list.out, new RegExp(`internal[^}]*elements = \\{ ${internal} \\}`), 'it guards the internal port only')
    t.match(list.out, /members4 \{\s*type ipv4_addr\s*\}/, 'with no fleet there are no members')
    // `flush ruleset` (a restart of nftables.service) behind berthd's back: the table comes back.
    run('ip', 'netns', 'exec', HOST, 'nft', 'flush', 'ruleset')
    t.ok(await until(() => nftList(solo).out.includes(`elements = { ${internal} }`), 20_000, 500), 'a flushed table is put back, sets and all')
    outsiderView(t, internal, 'after a flush ruleset')

    await stopDaemon(solo, 'SIGTERM')
    t.ok(nftList(solo).ok, 'the table outlives the daemon while workloads run')
    outsiderView(t, internal, 'daemon stopped')
    await startDaemon(solo, [])
    outsiderView(t, internal, 'daemon restarted, workload re-adopted')

    t.equal((await cli(solo, ['rm', '-f', 'web'])).code, 0, 'rm -f web')
    t.ok(await until(() => !/elements/.test(nftList(solo).out), 10_000, 200), 'the removed workload\'s port leaves the set')
    await stopDaemon(solo, 'SIGTERM')
    t.notOk(nftList(solo).ok, 'a stop with nothing running leaves no table behind')
  })

  t.test('in a fleet a live member reaches an internal port; the outsider does not; once the member has left, or died, it does not either', async t => {
    await startDaemon(a, fleetFlags(['0.0.0.0:7946']))
    t.equal((await cli(a, ['image', 'import', 'bb', join(base, 'bb-rootfs')])).code, 0, 'image import')
    const internal = await runWeb(a, 'api')
    outsiderView(t, internal, 'first node of a fleet')
    t.not(probe(MEM, ADDR.hostToMem, internal), 'ok', 'before joining, the member-to-be is an outsider too')

    const joinB = async (): Promise<void> => {
      await startDaemon(b, fleetFlags([`${ADDR.mem}:7946`, `[${ADDR.mem6}]:7946`], [`${ADDR.hostToMem}:7946`]))
      t.ok(await until(async () => await statusOf(a, 'b') === 'alive', 60_000, 300), 'a sees b alive')
      for (const host of [ADDR.hostToMem, ADDR.hostToMem6]) {
        t.ok(await until(() => probe(MEM, host, internal) === 'ok', 20_000, 300), `the member reaches internal port ${internal} at ${host}`)
      }
    }
    await joinB()
    outsiderView(t, internal, 'with a member')
    // The real use: a container on the member reaches the service by name, across nodes.
    const client = [
      'import socket, time',
      'for i in range(40):',
      '    try:',
      '        s = socket.create_connection(("api", 8080), timeout=5)',
      '        s.sendall(b"GET /berth-image-file HTTP/1.0\\r\\n\\r\\n")',
      '        print(s.recv(200).decode().splitlines()[0]); break',
      '    except OSError:',
      '        time.sleep(0.5)'
    ].join('\n')
    const remote = await cli(b, ['run', '--rm', 'host', 'python3', '-c', client])
    t.equal(remote.code, 0, remote.stderr)
    t.match(remote.stdout, /HTTP\/1\.[01] 200/, 'a container on the member reaches api on the first node by name')

    await stopDaemon(b, 'SIGTERM')
    t.ok(await until(async () => await statusOf(a, 'b') === 'left', 30_000, 300), 'a sees b leave')
    for (const host of [ADDR.hostToMem, ADDR.hostToMem6]) {
      t.ok(await until(() => probe(MEM, host, internal) !== 'ok', 20_000, 300), `after leaving, the old member cannot reach ${host}`)
    }

    await joinB()
    await stopDaemon(b, 'SIGKILL')
    t.ok(await until(async () => await statusOf(a, 'b') === 'dead', 90_000, 500), 'a declares b dead')
    for (const host of [ADDR.hostToMem, ADDR.hostToMem6]) {
      t.ok(await until(() => probe(MEM, host, internal) !== 'ok', 20_000, 300), `after dying, the old member cannot reach ${host}`)
    }
    outsiderView(t, internal, 'after the member is gone')
  })

  t.test('without a working nft the daemon refuses to start, with a one-line error', async t => {
    for (const nft of [join(base, 'no-such-nft'), '/bin/false']) {
      const dir = join(base, `nft-${nft === '/bin/false' ? 'false' : 'missing'}`)
      const res = spawnSync('ip', ['netns', 'exec', HOST, NODE, CLI, 'up', '--data-dir', dir, '--socket', join(dir, 's.sock')],
        { encoding: 'utf8', timeout: 60_000, env: { ...process.env, BERTH_NFT: nft } })
      t.equal(res.status, 125, `BERTH_NFT=${nft}: exit 125`)
      t.match(res.stderr, /^berth: BERTH_ERR_FIREWALL: [^\n]+; hint: [^\n]*nf/m, `BERTH_NFT=${nft}: the error says what and how to fix it`)
    }
  })
}
