// Unit tests: the HLC, last-writer-wins merge, the writer table, tombstone collection, and the
// decoders (bad input dropped and counted, never a crash, never a store write).

import t from 'tap'
import { Packr } from 'msgpackr'
import { Hlc, compareVersions } from './hlc.ts'
import { ReplicatedState } from './state.ts'
import { createMemoryStore } from './memory-store.ts'
import { checkWriter } from './rules.ts'
import { decode, encode, MSG, packValue, WIRE_VERSION, WireError } from './wire.ts'
import type { WireEntry } from './wire.ts'
import { createSimFleet } from './simulation.ts'
import { createSimNetwork } from './sim.ts'
import { createClusterNode } from './node.ts'
import { pushPullIntervalFor, suspicionTimeoutMs, retransmitLimit, LAN_PROFILE, LOCAL_PROFILE } from './config.ts'
import type { Clock } from './types.ts'

const fixedClock = (ms: { now: number }): Clock => ({ now: () => ms.now, setTimeout: () => ({}), clearTimeout: () => {} })

t.test('HLC: monotonic, merges remote, survives a clock going back', async t => {
  const time = { now: 1000 }
  const h = new Hlc(fixedClock(time))
  const a = h.now()
  const b = h.now()
  t.same(a, { wallMs: 1000, counter: 0 })
  t.same(b, { wallMs: 1000, counter: 1 })
  h.observe({ wallMs: 5000, counter: 7 })
  t.same(h.now(), { wallMs: 5000, counter: 8 }, 'after a remote version from the future')
  time.now = 10
  t.same(h.now(), { wallMs: 5000, counter: 9 }, 'the wall clock went back: still increasing')
  time.now = 6000
  t.same(h.now(), { wallMs: 6000, counter: 0 })
  t.ok(compareVersions({ wallMs: 1, counter: 0, writer: 'b' }, { wallMs: 1, counter: 0, writer: 'a' }) > 0, 'writer breaks ties')
})

const mkState = (id: string, time: { now: number }, store = createMemoryStore()): ReplicatedState =>
  new ReplicatedState({ store, clock: fixedClock(time), localId: id, buckets: 16, maxClockDriftMs: 60_000, maxRecordBytes: 1024, tombstoneGraveMs: 1000 })

const wire = (key: string, wallMs: number, counter: number, writer: string, value: unknown): WireEntry =>
  ({ key, wallMs, counter, writer, value: value === undefined ? undefined : packValue(value) })

t.test('LWW merge: newest version wins in any order; digests agree', async t => {
  const time = { now: 1000 }
  const a = mkState('A', time)
  const b = mkState('B', time)
  const e1 = wire('kv/x', 100, 0, 'A', 1)
  const e2 = wire('kv/x', 100, 1, 'A', 2)
  const e3 = wire('kv/x', 100, 1, 'B', 3) // same time, writer B > A: wins
  await a.apply([e1, e2, e3], 'peer')
  await b.apply([e3, e1, e2], 'peer')
  t.equal(a.get('kv/x')?.value, 3)
  t.equal(b.get('kv/x')?.value, 3)
  t.equal(a.digest(), b.digest())
  const r = await a.apply([e1], 'peer')
  t.equal(r.stale, 1, 'an older version is stale')
  // a local write after seeing a far-ahead version is newer than it
  await a.apply([wire('kv/y', 50_000, 3, 'B', 'remote')], 'peer')
  await a.write('kv/y', 'local')
  t.equal(a.get('kv/y')?.value, 'local')
  t.ok(a.get('kv/y')!.version.wallMs >= 50_000)
})

t.test('persisted before applied; the HLC high-water mark survives a restart', async t => {
  const time = { now: 2000 }
  const store = createMemoryStore()
  const a = mkState('A', time, store)
  await a.write('kv/k', { v: 1 })
  await a.apply([wire('kv/far', 9000, 4, 'B', 'x')], 'B')
  const batches = store.batches
  t.equal(batches, 2, 'one batch per change')
  const again = mkState('A', { now: 10 }, store)
  await again.load()
  t.equal(again.get('kv/k')?.value && (again.get('kv/k')!.value as { v: number }).v, 1)
  t.equal(again.digest(), a.digest())
  const v = again.hlc.now()
  t.ok(v.wallMs > 9000 || (v.wallMs === 9000 && v.counter > 4), 'no going back in time')
})

t.test('the writer table', async t => {
  t.equal(checkWriter('member/A', 'A', {}), undefined)
  t.match(checkWriter('member/A', 'B', {}), /only by that node/)
  t.equal(checkWriter('kv/any/thing', 'B', 1), undefined)
  t.equal(checkWriter('endpoint/web/80', 'A', { node: 'A' }), undefined)
  t.match(checkWriter('endpoint/web/80', 'B', { node: 'A' }), /written only by their node/)
  t.match(checkWriter('endpoint/web', 'A', { node: 'A' }), /2 id segment/)
  t.match(checkWriter('placement/web', 'A', { coordinator: 'B' }), /coordinator/)
  t.match(checkWriter('nope/x', 'A', 1), /unknown kind/)
  t.match(checkWriter('__proto__/x', 'A', 1), /unknown kind/)
  t.match(checkWriter('endpoint/web/80', 'B', undefined, { writer: 'A', value: { node: 'A' }, deleted: false }), /deleted only/)
})

t.test('remote entries breaking the writer table or the clock are dropped and counted, never stored', async t => {
  const time = { now: 1000 }
  const store = createMemoryStore()
  const a = mkState('A', time, store)
  const r1 = await a.apply([wire('member/C', 10, 0, 'B', { name: 'forged' })], 'B')
  const r2 = await a.apply([wire('kv/x', 10, 0, 'C', 1)], 'B', 'B') // delta signed by B carrying C's write
  const r3 = await a.apply([wire('kv/y', 10_000_000, 0, 'B', 1)], 'B')
  const r4 = await a.apply([{ key: 'kv/z', wallMs: 10, counter: 0, writer: 'B', value: new Uint8Array([0xc1]) }], 'B')
  t.same([r1.rejected, r2.rejected, r3.rejected, r4.rejected], [1, 1, 1, 1])
  t.same(a.counters, { unauthorized: 2, clockSkew: 1, invalidRecord: 1, tombstonesCollected: 0 })
  t.equal(store.batches, 0, 'no store write')
  t.equal(a.size().live, 0)
})

t.test('tombstones: collected once every live member has acknowledged them; a late copy is not resurrected', async t => {
  const time = { now: 1000 }
  const a = mkState('A', time)
  await a.write('kv/x', 1)
  await a.write('kv/x', undefined)
  t.equal(a.get('kv/x'), undefined)
  t.equal(a.size().tombstones, 1)
  t.equal(await a.collect(new Set(['A', 'B', 'C'])), 0, 'B and C have not seen it')
  a.ackKeys('B', ['kv/x'])
  t.equal(await a.collect(new Set(['A', 'B', 'C'])), 0)
  a.ackEqualBuckets('C', new Set())
  t.equal(await a.collect(new Set(['A', 'B', 'C'])), 1, 'all three hold it')
  t.same(a.size(), { live: 0, tombstones: 0, graveyard: 1 })
  const tomb = { key: 'kv/x', wallMs: 1000, counter: 1, writer: 'A', value: undefined }
  const r = await a.apply([tomb], 'C')
  t.same(r.gone, ['kv/x'], 'a late copy is answered as gone')
  t.equal(a.size().tombstones, 0)
  const newer = await a.apply([wire('kv/x', 2000, 0, 'B', 'again')], 'B')
  t.equal(newer.applied, 1, 'a newer write after the delete is accepted')
})

t.test('tombstones are collected across a simulated fleet', async t => {
  const fleet = createSimFleet({ seed: 42, nodes: 8, profile: 'local', lossRate: 0.02, delayMs: 2 })
  await fleet.start()
  await fleet.run(5_000)
  await fleet.node('n0003')!.kv.set('gone', 1)
  await fleet.run(3_000)
  await fleet.node('n0005')!.kv.delete('gone')
  await fleet.run(5_000)
  for (const id of fleet.ids) t.equal(fleet.node(id)!.kv.get('gone'), undefined)
  await fleet.run(120_000)
  const left = fleet.ids.map(id => fleet.node(id)!.stats().state.tombstones)
  t.same(left, left.map(() => 0), 'every node collected the tombstone')
  t.equal(fleet.digests().size, 1)
  await fleet.stop()
})

t.test('decoders: malformed, oversized, unknown version or type are WireErrors with a reason', async t => {
  const limits = { maxBytes: 1024, maxRecordBytes: 256 }
  const packr = new Packr({ useRecords: false })
  const cases: Array<[string, Uint8Array, string]> = [
    ['garbage', new Uint8Array([0xc1, 0xff, 0x00]), 'malformed'],
    ['oversized', new Uint8Array(2000), 'oversized'],
    ['not an envelope', packr.pack({ a: 1 }), 'malformed'],
    ['unknown version', packr.pack([99, MSG.PING, { q: 1, t: 'x', g: [] }]), 'version'],
    ['unknown type', packr.pack([WIRE_VERSION, 200, {}]), 'unknownType'],
    ['seq not an int', packr.pack([WIRE_VERSION, MSG.PING, { q: 'x', t: 'a', g: [] }]), 'malformed'],
    ['long id', packr.pack([WIRE_VERSION, MSG.PING, { q: 1, t: 'a'.repeat(500), g: [] }]), 'malformed'],
    ['too many updates', packr.pack([WIRE_VERSION, MSG.GOSSIP, { g: Array(65).fill([0, 'a', 1, 'n', [], 'a']) }]), 'oversized'],
    ['bad status', packr.pack([WIRE_VERSION, MSG.GOSSIP, { g: [[9, 'a', 1, 'n', [], 'a']] }]), 'malformed'],
    ['record too big', packr.pack([WIRE_VERSION, MSG.DELTA, { e: [['kv/x', 1, 0, 'a', new Uint8Array(300)]] }]), 'oversized'],
    ['entry wrong arity', packr.pack([WIRE_VERSION, MSG.DELTA, { e: [['kv/x', 1]] }]), 'malformed'],
    ['negative wall', packr.pack([WIRE_VERSION, MSG.DELTA, { e: [['kv/x', -1, 0, 'a', null]] }]), 'malformed']
  ]
  for (const [name, bytes, reason] of cases) {
    try {
      decode(bytes, limits)
      t.fail(`${name}: decoded`)
    } catch (err) {
      t.ok(err instanceof WireError, `${name}: a WireError`)
      t.equal((err as WireError).reason, reason, `${name}: ${reason}`)
    }
  }
  const ok = decode(encode({ type: MSG.PING, seq: 3, target: 'b', updates: [{ status: 'suspect', id: 'c', incarnation: 2, name: 'c', addrs: ['/ip4/1.2.3.4/tcp/1'], from: 'a' }] }), limits)
  t.match(ok, { type: MSG.PING, seq: 3, target: 'b', updates: [{ status: 'suspect', id: 'c', incarnation: 2 }] })
})

t.test('a node drops bad datagrams, broadcasts and requests, counts them, and keeps working', async t => {
  const net = createSimNetwork({ seed: 9, delayMs: 1 })
  const stores = [createMemoryStore(), createMemoryStore()]
  const nodes = ['a', 'b'].map((id, i) => createClusterNode({
    store: stores[i]!, transport: net.transport(id), clock: net.clockFor(id), random: net.randomFor(id),
    nodeName: id, profile: 'local', join: id === 'b' ? ['a'] : []
  }))
  for (const n of nodes) await n.start()
  await net.run(3_000)
  const evil = net.transport('evil')
  await evil.start({ message: () => {}, broadcast: () => {}, request: async () => new Uint8Array() })
  const packr = new Packr({ useRecords: false })
  const batchesBefore = stores[0]!.batches
  evil.send('a', new Uint8Array([0xc1, 1, 2]))
  evil.send('a', packr.pack([7, MSG.PING, {}]))
  evil.send('a', packr.pack([WIRE_VERSION, 77, {}]))
  evil.send('a', new Uint8Array(100_000))
  evil.broadcast(encode({ type: MSG.DELTA, entries: [{ key: 'member/a', wallMs: net.now(), counter: 0, writer: 'evil', value: packValue({ name: 'forged' }) }] }))
  evil.broadcast(encode({ type: MSG.DELTA, entries: [{ key: 'kv/x', wallMs: net.now(), counter: 0, writer: 'b', value: packValue(1) }] }))
  evil.broadcast(encode({ type: MSG.DELTA, entries: [{ key: 'workload/w', wallMs: net.now(), counter: 0, writer: 'evil', value: packValue({ acceptedBy: 'a' }) }] }))
  const refused = evil.request('a', new Uint8Array([0xc1]), { timeoutMs: 100 }).then(() => 'answered', () => 'failed')
  await net.run(500)
  t.equal(await refused, 'answered', 'a bad request gets a REFUSED answer')
  const s = nodes[0]!.stats()
  t.equal(s.dropped.malformed, 2)
  t.equal(s.dropped.version, 1)
  t.equal(s.dropped.unknownType, 1)
  t.equal(s.dropped.oversized, 1)
  t.equal(s.dropped.unauthorized, 3)
  t.equal(stores[0]!.batches, batchesBefore, 'nothing bad reached the store')
  t.equal((nodes[0]!.state.get('member', 'a')?.value as { name: string }).name, 'a')
  await nodes[1]!.kv.set('still', 'works')
  await net.run(500)
  t.equal(nodes[0]!.kv.get('still'), 'works')
  await t.rejects(nodes[0]!.state.put('member', 'b', { name: 'x' }), { code: 'BERTH_ERR_WRITE_NOT_ALLOWED' })
  await t.rejects(nodes[0]!.state.put('endpoint', 'web/80', { node: 'b' }), { code: 'BERTH_ERR_WRITE_NOT_ALLOWED' })
  await nodes[0]!.state.put('endpoint', 'web/80', { node: 'a', port: 31004 })
  await net.run(500)
  t.equal((nodes[1]!.state.get('endpoint', 'web/80')?.value as { port: number }).port, 31004)
  const seen: string[] = []
  nodes[1]!.state.watch('endpoint/', e => { seen.push(`${e.key}:${e.deleted}`) })
  await nodes[0]!.state.delete('endpoint', 'web/80')
  await net.run(500)
  t.same(seen, ['endpoint/web/80:true'])
  const changes: string[] = []
  const off = nodes[1]!.kv.watch('cfg/', e => { changes.push(`${e.key}=${String(e.value)}:${e.deleted}:${e.writer}`) })
  await nodes[0]!.kv.set('cfg/a', 'one')
  await nodes[0]!.kv.set('other', 'not watched')
  await nodes[1]!.kv.delete('still')
  await net.run(500)
  await nodes[1]!.kv.delete('cfg/a')
  off()
  await nodes[0]!.kv.set('cfg/b', 'after unsubscribing')
  await net.run(500)
  t.same(changes, ['cfg/a=one:false:a', 'cfg/a=undefined:true:b'], 'kv.watch: remote and local changes under the prefix, until unsubscribed')
  for (const n of nodes) { await n.stop(); await n.stop() }
})

t.test('profiles and formulas', async t => {
  t.equal(suspicionTimeoutMs(3, 100, 1000), 6000, 'lan, 100 nodes: 3 * log10(100) * 1 s')
  t.equal(LAN_PROFILE.suspicionMult, 3)
  t.equal(suspicionTimeoutMs(4, 1, 1000), 4000, 'at least one node-scale')
  t.equal(retransmitLimit(4, 100), 12)
  t.equal(LAN_PROFILE.probeTimeoutMs, 500)
  t.equal(LOCAL_PROFILE.probeTimeoutMs, 200)
  t.equal(LOCAL_PROFILE.probeIntervalMs, LAN_PROFILE.probeIntervalMs, 'local starts from the same base')
  t.equal(pushPullIntervalFor(30_000, 10), 30_000, 'push-pull: not stretched up to 32 nodes')
  t.equal(pushPullIntervalFor(30_000, 32), 30_000)
  t.equal(pushPullIntervalFor(30_000, 100), 90_000, '90 s at 100 nodes, as memberlist')
  t.equal(pushPullIntervalFor(30_000, 1000), 180_000)
})

t.test('a closed connection makes every survivor probe the crashed node at once', async t => {
  // 10 nodes, lan: a crash that closes connections is suspected one probe interval later by
  // all and declared dead at the suspicion's minimum (3 s) after that; a silent one waits for
  // each prober's round-robin turn.
  const deadAfter = async (closesConnections: boolean): Promise<number> => {
    const fleet = createSimFleet({ seed: 11, nodes: 10, profile: 'lan', delayMs: 1 })
    await fleet.start()
    await fleet.run(20_000)
    t.same(fleet.membershipErrors(), [], 'formed')
    const seen = new Set<string>()
    for (const id of fleet.ids) if (id !== 'n0003') fleet.node(id)!.on('member:dead', m => { if (m.id === 'n0003') seen.add(id) })
    fleet.crash('n0003', { closesConnections })
    let ms = 0
    while (seen.size < 9 && ms < 30_000) { await fleet.run(100); ms += 100 }
    await fleet.stop()
    return ms
  }
  const hinted = await deadAfter(true)
  t.ok(hinted <= 4_500, `with the hint, dead on all 9 after ${hinted} ms (≤ 4.5 s)`)
  t.ok(hinted >= 3_000, 'not before the suspicion timeout')
  const silent = await deadAfter(false)
  t.ok(silent < 30_000, `silent: dead on all after ${silent} ms`)
  t.ok(hinted <= silent, 'the hint is never slower')
})

t.test('graceful leave and rejoin with a higher incarnation', async t => {
  const fleet = createSimFleet({ seed: 5, nodes: 5, profile: 'local', delayMs: 2 })
  await fleet.start()
  await fleet.run(5_000)
  const node = fleet.node('n0002')!
  const incBefore = node.stats().incarnation
  const left: string[] = []
  fleet.node('n0000')!.on('member:left', m => left.push(m.id))
  const p = node.leave()
  await fleet.run(1_000)
  await p
  await node.stop()
  fleet.crash('n0002')
  await fleet.run(3_000)
  t.same(left, ['n0002'], 'seen as left, not dead')
  await fleet.restart('n0002')
  await fleet.run(10_000)
  t.same(fleet.membershipErrors(), [])
  t.ok(fleet.node('n0002')!.stats().incarnation > incBefore, 'a higher incarnation after restart')
  await fleet.stop()
})
