// A workload that sprays connects at tens of thousands of distinct addresses must neither grow
// berthd's call counters without bound nor get itself killed because the counts no longer fit
// the shim's event line (docs/proxy.md, "Events"). With --egress none nothing leaves the
// container: every attempt is refused by the supervisor and counted as denied.
import t from 'tap'
import { daemonWithBusybox, inspect, skipReason, until } from './helpers.ts'

// How far berthd lets one workload's counters grow (node/proxy/controller.ts): per call and
// action, at most this many targets plus one "other" row.
const MAX_TARGETS = 64
const WORKERS = 4
const PER_WORKER = 10_000
const SPRAY = WORKERS * PER_WORKER

// WORKERS processes make non-blocking connects to SPRAY distinct address:port pairs in
// 198.18.0.0/15 (a range for benchmarks, never routed), bounded by a 60 s deadline; then the
// workload stays up so its state can be checked. Every connect traps; with egress none each one
// fails with ENETUNREACH. Several at once is what overflowed the event line before: thousands of
// distinct targets in one 100 ms batch.
const SPRAYER = String.raw`
import errno, os, socket, sys, time
deadline = time.monotonic() + 60
kids = []
for w in range(${WORKERS}):
    r, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        done = refused = 0
        for i in range(${PER_WORKER}):
            if time.monotonic() > deadline:
                break
            j = w * ${PER_WORKER} + i
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if s.connect_ex(("198.18.%d.%d" % ((j >> 8) & 255, j & 255), 1024 + j % 50000)) == errno.ENETUNREACH:
                refused += 1
            s.close()
            done += 1
        os.write(wr, b"%d %d" % (done, refused))
        os._exit(0)
    os.close(wr)
    kids.append((pid, r))
done = refused = 0
for pid, r in kids:
    a, b = os.read(r, 64).split()
    done += int(a)
    refused += int(b)
    os.waitpid(pid, 0)
print("sprayed", done, "refused", refused, flush=True)
time.sleep(600)
`

interface Call { workload: string, call: string, action: string, target: string, count: number }

const skip = skipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-escape-calls')

  t.test('a connect spray at 40000 distinct targets from 4 processes keeps the workload running and berth calls bounded', async t => {
    await d.ok(['run', '-d', '--name', 'spray', '--egress', 'none', 'host', 'python3', '-c', SPRAYER])
    t.teardown(async () => { await d.cli(['rm', '-f', 'spray']) })
    // Until it reports, or stops running (the old failure: killed as shim-lost).
    const outcome = await until(async () => {
      const r = await d.cli(['logs', 'spray'])
      const m = /sprayed (\d+) refused (\d+)/.exec(r.stdout)
      if (m !== null) return { sprayed: m }
      const c = await inspect(d, 'spray')
      return c.state !== 'running' ? { stopped: c } : undefined
    }, 90_000, 250)
    const sprayed = outcome?.sprayed
    if (sprayed === undefined) {
      const c = outcome?.stopped ?? await inspect(d, 'spray')
      const logs = await d.cli(['logs', 'spray'])
      t.fail('the spray did not finish', { state: c.state, reason: c.reason, exitCode: c.exitCode, logs: logs.stdout + logs.stderr })
      return
    }
    t.equal(Number(sprayed[1]), SPRAY, `all ${SPRAY} connects were made`)
    t.equal(Number(sprayed[2]), SPRAY, 'every one was refused (egress none)')

    // The counts reach berthd in batches; wait until every attempt is accounted for.
    let calls: Call[] = []
    const counted = (): number => calls.filter(c => c.call === 'connect' && c.action === 'denied').reduce((n, c) => n + c.count, 0)
    await until(async () => {
      calls = JSON.parse(await d.ok(['calls', 'spray', '--json'])) as Call[]
      return counted() >= SPRAY
    }, 20_000, 250)
    const c = await inspect(d, 'spray')
    t.equal(c.state, 'running', `the workload is still running (state ${c.state as string}, reason ${String(c.reason)})`)
    t.equal(counted(), SPRAY, 'every refused connect is counted')
    const denied = calls.filter(c => c.call === 'connect' && c.action === 'denied')
    t.ok(denied.length <= MAX_TARGETS + 1, `berth calls keeps at most ${MAX_TARGETS} targets plus "other" (${denied.length} rows)`)
    const other = denied.find(c => c.target === 'other')
    t.ok(other !== undefined && other.count >= SPRAY - MAX_TARGETS * 2, 'the rest is folded into one "other" row', { other })
    t.ok(calls.length <= 4 * (MAX_TARGETS + 1), `${calls.length} rows in all`)

    // Still alive and still served a moment later: the daemon did not declare its shim lost.
    const ps = JSON.parse(await d.ok(['ps', '--json'])) as Array<{ name: string, state: string }>
    t.ok(ps.some(p => p.name === 'spray' && p.state === 'running'), 'berth ps lists it as running')
    const r = await d.cli(['exec', 'spray', 'true'])
    t.equal(r.code, 0, `berth exec into it works (${r.stderr.trim()})`)
  })
}
