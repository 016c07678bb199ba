// Real daemons form a fleet over libp2p, each in a network namespace of its own joined by a
// bridge in another namespace this test makes (no traffic leaves them): membership, kv, a crash
// and a rejoin, an outsider with another key, a partition that heals, a service on one node
// reached by name from a container on another, and two nodes that find each other by mDNS.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, runCli, skipReason, sleep, until } from './helpers.ts'

const HUB = 'berth-fleet-hub'
const NET = '10.77.0'
const run = (...args: string[]): boolean => spawnSync(args[0], args.slice(1), { stdio: 'ignore' }).status === 0
const inNs = (ns: string, ...args: string[]): boolean => run('ip', 'netns', 'exec', ns, ...args)

interface FleetNode { i: number, ns: string, dir: string, socket: string, addr: string, proc?: ChildProcess, log: string }

// Namespaces a crashed earlier run left behind go first (with whatever still runs in them).
function removeNs (ns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean) ?? []
  for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL') } catch {} }
  run('ip', 'netns', 'del', ns)
}
for (let i = 1; i <= 8; i++) removeNs(`berth-fleet-${i}`)
removeNs(HUB)

const skip = skipReason() ?? (run('ip', 'netns', 'add', HUB) ? undefined : 'cannot create network namespaces')
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const base = mkdtempSync(join(tmpdir(), 'berth-fleet-'))
  const nodes: FleetNode[] = []
  t.teardown(async () => {
    for (const n of nodes) {
      const ps = await runCli(['--socket', n.socket, 'ps', '-a', '--json']).catch(() => undefined)
      if (ps?.code === 0) for (const c of JSON.parse(ps.stdout)) await runCli(['--socket', n.socket, 'rm', '-f', c.name]).catch(() => {})
      n.proc?.kill('SIGKILL')
      removeNs(n.ns)
    }
    removeNs(HUB)
    rmSync(base, { recursive: true, force: true })
  })
  inNs(HUB, 'ip', 'link', 'add', 'br0', 'type', 'bridge')
  inNs(HUB, 'ip', 'link', 'set', 'br0', 'up')

  const psk = join(base, 'fleet.psk')
  const other = join(base, 'other.psk')
  const site = join(base, 'site.psk')
  // No assertions before the subtests: tap ends the root test after one when nothing is pending.
  for (const f of [psk, other, site]) {
    const r = await runCli(['cluster', 'init', '--psk-file', f])
    if (r.code !== 0) throw new Error(`berth cluster init: ${r.stderr}`)
  }

  function makeNode (i: number): FleetNode {
    const ns = `berth-fleet-${i}`
    if (!run('ip', 'netns', 'add', ns)) throw new Error(`ip netns add ${ns} failed`)
    run('ip', 'link', 'add', `bf${i}`, 'type', 'veth', 'peer', 'name', `bfh${i}`)
    run('ip', 'link', 'set', `bf${i}`, 'netns', ns)
    run('ip', 'link', 'set', `bfh${i}`, 'netns', HUB)
    inNs(HUB, 'ip', 'link', 'set', `bfh${i}`, 'master', 'br0')
    inNs(HUB, 'ip', 'link', 'set', `bfh${i}`, 'up')
    inNs(ns, 'ip', 'addr', 'add', `${NET}.${i}/24`, 'dev', `bf${i}`)
    inNs(ns, 'ip', 'link', 'set', `bf${i}`, 'up')
    inNs(ns, 'ip', 'link', 'set', 'lo', 'up')
    const dir = join(base, `n${i}`)
    const node = { i, ns, dir, socket: join(base, `n${i}.sock`), addr: `${NET}.${i}`, log: '' }
    nodes.push(node)
    return node
  }

  async function startNode (n: FleetNode, key = psk, extra: string[] = n.i === 1 ? [] : ['--join', `${NET}.1:7946`]): Promise<void> {
    const args = [CLI, 'up', '--data-dir', n.dir, '--socket', n.socket, '--psk-file', key, '--node-name', `n${n.i}`,
      '--listen', `${n.addr}:7946`, '--profile', 'local', ...extra]
    const proc = spawn('ip', ['netns', 'exec', n.ns, process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    proc.stderr?.on('data', (b: Buffer) => { n.log += b.toString() })
    n.proc = proc
    const up = await until(async () => proc.exitCode === null && (await cli(n, ['ps'])).code === 0, 60_000, 200)
    if (!up) throw new Error(`n${n.i} did not come up: ${n.log}`)
  }

  async function cli (n: FleetNode, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
    return await runCli(['--socket', n.socket, ...args], { timeoutMs: 120_000 })
  }

  async function members (n: FleetNode): Promise<Array<{ name: string, status: string, incarnation: number }>> {
    const r = await cli(n, ['nodes', '--json'])
    return r.code === 0 ? JSON.parse(r.stdout).members : []
  }

  async function statusOf (n: FleetNode, name: string): Promise<string | undefined> {
    return (await members(n)).find(m => m.name === name)?.status
  }

  const fleet = [1, 2, 3, 4, 5].map(makeNode)
  for (const n of fleet) await startNode(n)

  t.test('five daemons form a fleet', async t => {
    for (const n of fleet) {
      const ok = await until(async () => (await members(n)).filter(m => m.status === 'alive').length === 5, 60_000, 500)
      t.ok(ok, `n${n.i} sees five alive members`)
    }
    const view = JSON.parse((await cli(fleet[0], ['nodes', '--json'])).stdout)
    t.match(view.members[0], { name: String, peerId: /^12D3Koo/, address: String, status: String, incarnation: Number })
    t.ok(view.dropped !== undefined, 'drop counters are shown')
  })

  t.test('a kv set on one node is read on all', async t => {
    t.equal((await cli(fleet[0], ['kv', 'set', 'site', 'edge-7'])).code, 0)
    for (const n of fleet) {
      const ok = await until(async () => (await cli(n, ['kv', 'get', 'site'])).stdout === 'edge-7\n', 15_000, 200)
      t.ok(ok, `n${n.i} reads it`)
    }
    const missing = await cli(fleet[1], ['kv', 'get', 'nope'])
    t.equal(missing.code, 125)
    t.match(missing.stderr, /BERTH_ERR_KEY_NOT_FOUND/)
  })

  t.test('berth kv watch on one node prints the changes made on another', async t => {
    const watcher = spawn(process.execPath, [CLI, '--socket', fleet[1].socket, 'kv', 'watch', 'cfg/', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    watcher.stdout.on('data', (b: Buffer) => { out += b.toString() })
    watcher.stderr.on('data', (b: Buffer) => { err += b.toString() })
    const lines = (): Array<Record<string, unknown>> => out.split('\n').filter(Boolean).map(l => JSON.parse(l))
    try {
      // The watch is registered once the command has connected: write until a change shows up.
      let n = 0
      const seen = await until(async () => {
        await cli(fleet[0], ['kv', 'set', 'cfg/level', `v${++n}`])
        return lines().some(e => e.key === 'cfg/level')
      }, 20_000, 500)
      t.ok(seen, 'a set on n1 reaches the watch on n2', { out, err })
      const first = lines().find(e => e.key === 'cfg/level')
      t.match(first, { key: 'cfg/level', deleted: false, writer: String }, 'key, value, writer')
      t.match(String(first?.value), /^v\d+$/)
      await cli(fleet[2], ['kv', 'set', 'other/x', '1'])
      await cli(fleet[2], ['kv', 'rm', 'cfg/level'])
      t.ok(await until(async () => lines().some(e => e.key === 'cfg/level' && e.deleted === true), 15_000, 200), 'a delete on n3 shows as deleted')
      t.notOk(lines().some(e => e.key === 'other/x'), 'keys outside the prefix are not shown')
    } finally {
      watcher.kill('SIGINT')
    }
    const bad = await cli(fleet[0], ['kv', 'watch', 'a', 'b'])
    t.equal(bad.code, 2)
    t.match(bad.stderr, /BERTH_ERR_USAGE.*hint: /)
  })

  t.test('a daemon with another key never appears', async t => {
    const outsider = makeNode(6)
    await startNode(outsider, other)
    await sleep(8000)
    for (const n of fleet.slice(0, 2)) t.notOk((await members(n)).some(m => m.name === 'n6'), `n${n.i} never sees it`)
    t.equal((await members(outsider)).length, 1, 'it sees only itself')
    t.match(outsider.log, /BERTH_ERR_JOIN/, 'its join is reported')
    outsider.proc?.kill('SIGTERM')
  })

  t.test('a service on one node is reached by name from a container on another', async t => {
    const web = await cli(fleet[1], ['run', '-d', '--name', 'web', '--port', 'http:8000', '-w', '/usr/share', 'host', 'python3', '-m', 'http.server', '8000'])
    t.equal(web.code, 0, web.stderr)
    const bound = await until(async () => (await cli(fleet[1], ['port', 'ls', '--json'])).stdout.includes('"bound": true'), 30_000, 300)
    t.ok(bound, 'the port is bound on n2')
    const client = [
      'import socket, time',
      'for i in range(40):',
      '    try:',
      '        s = socket.create_connection(("web", 8000), timeout=5)',
      '        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")',
      '        print(s.recv(100).decode().splitlines()[0]); break',
      '    except OSError as e:',
      '        time.sleep(0.5)'
    ].join('\n')
    const r = await cli(fleet[2], ['run', '--rm', 'host', 'python3', '-c', client])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /HTTP\/1\.0 200/, 'n3 reached n2\'s workload through its VIP')
    await cli(fleet[1], ['rm', '-f', 'web'])
  })

  t.test('a partition hides writes that appear on both sides once it heals', async t => {
    const sideA = fleet.slice(0, 2)
    const sideB = fleet.slice(2)
    const cut = (add: boolean): void => {
      for (const a of sideA) for (const b of sideB) {
        inNs(a.ns, 'ip', 'route', add ? 'add' : 'del', 'blackhole', `${b.addr}/32`)
        inNs(b.ns, 'ip', 'route', add ? 'add' : 'del', 'blackhole', `${a.addr}/32`)
      }
    }
    cut(true)
    t.equal((await cli(sideA[0], ['kv', 'set', 'left', 'a'])).code, 0)
    t.equal((await cli(sideB[0], ['kv', 'set', 'right', 'b'])).code, 0)
    await sleep(5000)
    t.equal((await cli(sideB[1], ['kv', 'get', 'left'])).code, 125, 'side B does not see side A\'s write')
    t.equal((await cli(sideA[1], ['kv', 'get', 'right'])).code, 125, 'side A does not see side B\'s write')
    cut(false)
    for (const n of fleet) {
      const ok = await until(async () => (await cli(n, ['kv', 'get', 'left'])).stdout === 'a\n' && (await cli(n, ['kv', 'get', 'right'])).stdout === 'b\n', 60_000, 500)
      t.ok(ok, `n${n.i} has both writes after the heal`)
    }
    for (const n of fleet) {
      const ok = await until(async () => (await members(n)).filter(m => m.status === 'alive').length === 5, 90_000, 1000)
      t.ok(ok, `n${n.i} sees all five alive again`)
    }
  })

  t.test('kill -9 of a daemon is seen as dead by all; it restarts and rejoins', async t => {
    const victim = fleet[4]
    const before = (await members(victim)).find(m => m.name === 'n5')?.incarnation ?? 0
    victim.proc?.kill('SIGKILL')
    await new Promise(resolve => victim.proc?.once('exit', resolve))
    for (const n of fleet.slice(0, 4)) {
      const ok = await until(async () => await statusOf(n, 'n5') === 'dead', 60_000, 500)
      t.ok(ok, `n${n.i} declares n5 dead`)
    }
    await startNode(victim)
    for (const n of fleet.slice(0, 4)) {
      const ok = await until(async () => await statusOf(n, 'n5') === 'alive', 60_000, 500)
      t.ok(ok, `n${n.i} sees n5 alive again`)
    }
    const after = (await members(fleet[0])).find(m => m.name === 'n5')?.incarnation ?? 0
    t.ok(after > before, `it rejoined with a higher incarnation (${before} → ${after})`)
  })

  t.test('two daemons with --mdns and no --join find each other on their LAN', async t => {
    // Their own key, so the fleet above (which runs no mDNS) stays apart. Like a LAN host, each
    // namespace routes multicast out of its link (a host with a default route does).
    const pair = [7, 8].map(makeNode)
    for (const n of pair) inNs(n.ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', `bf${n.i}`)
    for (const n of pair) await startNode(n, site, ['--mdns'])
    for (const n of pair) {
      const ok = await until(async () => (await members(n)).filter(m => m.status === 'alive').length === 2, 60_000, 500)
      t.ok(ok, `n${n.i} sees both alive`, { members: (await members(n)).map(m => `${m.name}:${m.status}`) })
      t.notOk((await members(n)).some(m => m.name === 'n1'), `n${n.i} never meets the fleet with another key`)
    }
  })
}
