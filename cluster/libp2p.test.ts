// Real libp2p in-process on loopback: nodes with the fleet's pre-shared key form a fleet, a kv
// write on one is read on all, a node with another key never appears (and cannot even connect),
// a stopped node is declared dead by the others, and the identity survives a restart.

import t from 'tap'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClusterNode } from './node.ts'
import type { ClusterNode } from './node.ts'
import { createMemoryStore } from './memory-store.ts'
import { createPsk, writePsk } from './libp2p/psk.ts'
import { identityPath } from './libp2p/identity.ts'
import { parseAddr } from './libp2p/addr.ts'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function until (what: string, fn: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (fn()) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

t.test('ADDR parsing', async t => {
  t.equal(parseAddr('127.0.0.1:7946').toString(), '/ip4/127.0.0.1/tcp/7946')
  t.equal(parseAddr('[::1]:7946').toString(), '/ip6/::1/tcp/7946')
  t.equal(parseAddr('node-a.lan:7946').toString(), '/dns/node-a.lan/tcp/7946')
  t.equal(parseAddr('/ip4/10.0.0.2/tcp/1').toString(), '/ip4/10.0.0.2/tcp/1')
  for (const bad of ['', 'nohost', '1.2.3.4:99999', 'a b:1', '/nope/x']) t.throws(() => parseAddr(bad), { code: 'BERTH_ERR_INVALID_ADDRESS' }, bad)
})

t.test('a libp2p fleet on loopback', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-cluster-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const pskFile = join(dir, 'fleet.key')
  await writePsk(pskFile)
  await t.rejects(writePsk(pskFile), { code: 'BERTH_ERR_PSK' }, 'init does not overwrite a key')
  const config = { probeIntervalMs: 500, probeTimeoutMs: 200, suspicionMult: 3, gossipIntervalMs: 100, antiEntropyIntervalMs: 500, reconnectIntervalMs: 2000 }
  const nodes: ClusterNode[] = []
  const make = (name: string, seeds: string[], psk: { pskFile?: string; psk?: Uint8Array } = { pskFile }): ClusterNode => createClusterNode({
    store: createMemoryStore(),
    libp2pInit: { dataDir: join(dir, name), listen: ['127.0.0.1:0'], ...psk },
    nodeName: name,
    profile: 'local',
    config,
    join: seeds
  })
  t.teardown(async () => { for (const n of nodes) await n.stop() })

  const seed = make('n0', [])
  nodes.push(seed)
  await seed.start()
  const mode = (await stat(identityPath(join(dir, 'n0')))).mode & 0o777
  t.equal(mode, 0o600, 'identity key is mode 0600')
  const seedAddr = seed.members()[0]!.addrs.find(a => a.startsWith('/ip4/127.0.0.1/'))!
  t.ok(seedAddr, `seed listens on ${seedAddr}`)
  for (let i = 1; i < 4; i++) {
    const n = make(`n${i}`, [seedAddr])
    nodes.push(n)
    await n.start()
  }
  await until('4 members alive everywhere', () => nodes.every(n => n.members().filter(m => m.status === 'alive').length === 4))
  t.pass('four nodes formed a fleet')

  // a node with another key never appears
  const outsider = make('outsider', [seedAddr], { psk: createPsk() })
  nodes.push(outsider)
  const joinErrors: string[] = []
  outsider.on('join:error', err => joinErrors.push(err.code))
  await outsider.start()
  await t.rejects(outsider.join([seedAddr]), { code: 'BERTH_ERR_JOIN' }, 'the outsider cannot join')

  await nodes[2]!.kv.set('greeting', { hello: 'fleet' })
  await until('kv seen everywhere', () => nodes.slice(0, 4).every(n => (n.kv.get('greeting') as { hello?: string } | undefined)?.hello === 'fleet'))
  t.pass('a kv set on one is read on all')
  await until('same digest', () => new Set(nodes.slice(0, 4).map(n => n.digest())).size === 1)
  t.ok(nodes.slice(0, 4).every(n => n.members().every(m => m.name !== 'outsider')), 'the outsider never appears')
  t.same(outsider.members().map(m => m.name), ['outsider'], 'and sees nobody')
  t.ok(joinErrors.length >= 1 && joinErrors.every(c => c === 'BERTH_ERR_JOIN'), 'its background join reports BERTH_ERR_JOIN')

  // an unreachable seed is reported clearly
  const lonely = make('lonely', [])
  nodes.push(lonely)
  await lonely.start()
  await t.rejects(lonely.join(['127.0.0.1:1']), { code: 'BERTH_ERR_JOIN', message: /127\.0\.0\.1:1/ })

  // stop one: declared dead by the others
  const victim = nodes[3]!
  const victimId = victim.id
  await victim.stop()
  await until('victim dead everywhere', () => nodes.slice(0, 3).every(n => n.members().find(m => m.id === victimId)?.status === 'dead'), 30_000)
  t.pass('a stopped node is declared dead by the others')

  // it restarts with the same peer id and a higher incarnation, and rejoins
  const again = make('n3', [seedAddr])
  nodes[3] = again
  await again.start()
  t.equal(again.id, victimId, 'the peer id survives a restart')
  await until('victim alive again', () => nodes.slice(0, 3).every(n => n.members().find(m => m.id === victimId)?.status === 'alive'), 30_000)
  t.pass('it rejoins')
  // Its state arrives by anti-entropy, a round or two after it is seen alive again.
  await until('the restarted node has the state', () => again.kv.get('greeting') !== undefined, 30_000)
  t.pass('and catches up on the state')
})
