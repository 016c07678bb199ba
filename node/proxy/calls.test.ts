// The bounded call counters behind `berth calls` (node/proxy/calls.ts).
import t from 'tap'
import { CallCounter, MAX_TARGETS, OTHER_TARGET } from './calls.ts'

const total = (c: CallCounter): number => c.rows().reduce((n, r) => n + r.count, 0)

t.test('a spray of distinct targets stays bounded and nothing is lost', async t => {
  const c = new CallCounter()
  for (let i = 0; i < 50_000; i++) c.add('connect', 'denied', `198.18.${i >> 8}.${i & 255}:80`, 1, i)
  t.equal(c.size, MAX_TARGETS + 1, `${MAX_TARGETS} targets and one "other" row`)
  t.equal(total(c), 50_000, 'every call counted')
  t.equal(c.rows().find(r => r.target === OTHER_TARGET)?.count, 50_000 - MAX_TARGETS)
})

t.test('busy targets stay named; the smallest give way', async t => {
  const c = new CallCounter(3)
  c.add('connect', 'routed', 'a:1', 10, 1)
  c.add('connect', 'routed', 'b:1', 5, 2)
  c.add('connect', 'routed', 'c:1', 1, 3)
  c.add('connect', 'routed', 'd:1', 1, 4) // no bigger than the smallest: folded
  t.same(c.rows().map(r => [r.target, r.count]), [['a:1', 10], ['b:1', 5], ['c:1', 1], [OTHER_TARGET, 1]])
  c.add('connect', 'routed', 'e:1', 7, 5) // bigger: c:1 gives way
  t.same(c.rows().map(r => [r.target, r.count]).sort(), [['a:1', 10], ['b:1', 5], ['e:1', 7], [OTHER_TARGET, 2]].sort())
  c.add('connect', 'routed', OTHER_TARGET, 4, 6) // the shim's own "other" row adds up
  t.equal(c.rows().find(r => r.target === OTHER_TARGET)?.count, 6)
  t.equal(total(c), 28)
})

t.test('each call/action pair has its own bound; bad counts are ignored', async t => {
  const c = new CallCounter(2)
  for (const action of ['routed', 'denied']) for (let i = 0; i < 5; i++) c.add('connect', action, `x:${i}`, 1, i)
  c.add('sysinfo', 'emulated', '', 3, 0)
  c.add('sysinfo', 'emulated', '', -1, 0)
  c.add('sysinfo', 'emulated', '', Number.NaN, 0)
  t.equal(c.size, 2 * 3 + 1)
  t.equal(c.rows().find(r => r.call === 'sysinfo')?.count, 3)
})
