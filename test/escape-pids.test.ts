// A container started without --pids must not be able to use up the host's pids: berth gives it a
// default pids limit (node/runtime/runtime.ts, DEFAULT_PIDS_LIMIT). The attack is a fork bomb,
// bounded in count and time so that it cannot hurt the host even where the limit is missing.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { daemonWithBusybox, inspect, skipReason, until } from './helpers.ts'

const DEFAULT_PIDS_LIMIT = 2048
const ATTEMPTS = 2600

// Forks up to ATTEMPTS sleeping children (each lives 30 s at most), stops after 50 failed forks
// in a row or 40 s, reports, then waits for the test to look at the host and remove it.
const BOMB = String.raw`
import os, time
deadline = time.monotonic() + 40
started = failed = streak = 0
while started < ${ATTEMPTS} and streak < 50 and time.monotonic() < deadline:
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        streak += 1
        time.sleep(0.01)
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    started += 1
    streak = 0
print("started=%d failed=%d" % (started, failed), flush=True)
time.sleep(60)
`

const skip = skipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-escape-pids')

  t.test(`a fork bomb in a default container stops at ${DEFAULT_PIDS_LIMIT} pids and the host can still fork`, async t => {
    await d.ok(['run', '-d', '--name', 'bomb', 'host', 'python3', '-c', BOMB])
    t.teardown(async () => { await d.cli(['rm', '-f', 'bomb']) })
    const c = await inspect(d, 'bomb')
    t.equal(c.resources?.pids, DEFAULT_PIDS_LIMIT, 'inspect shows the default limit')
    const knob = [`/sys/fs/cgroup/berth/${c.id as string}/pids.max`, `/sys/fs/cgroup/pids/berth/${c.id as string}/pids.max`].find(p => existsSync(p))
    if (knob !== undefined) t.equal(readFileSync(knob, 'utf8').trim(), String(DEFAULT_PIDS_LIMIT), `${knob} holds it`)

    const report = await until(async () => /started=(\d+) failed=(\d+)/.exec((await d.cli(['logs', 'bomb'])).stdout), 90_000, 250)
    t.ok(report, 'the bomb reported')
    const started = Number(report?.[1])
    t.ok(started < DEFAULT_PIDS_LIMIT, `the bomb stopped below the limit (started ${started} of ${ATTEMPTS})`)
    t.ok(started > DEFAULT_PIDS_LIMIT - 100, `and it was the limit that stopped it (${started} started, ${report?.[2]} forks failed)`)

    // The children still sleep: the host must be able to fork meanwhile.
    const host = spawnSync('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true & done; wait; echo forked'], { encoding: 'utf8', timeout: 10_000 })
    t.equal(host.status, 0, `the host still forks (${host.stderr})`)
    t.match(host.stdout, /forked/)
    t.equal((await inspect(d, 'bomb')).state, 'running', 'the bomb itself was only refused, not killed')
  })

  t.test('--pids overrides the default', async t => {
    await d.ok(['run', '-d', '--name', 'few', '--pids', '50', 'bb', 'sleep', '60'])
    t.teardown(async () => { await d.cli(['rm', '-f', 'few']) })
    const c = await inspect(d, 'few')
    t.equal(c.resources?.pids, 50)
    const knob = [`/sys/fs/cgroup/berth/${c.id as string}/pids.max`, `/sys/fs/cgroup/pids/berth/${c.id as string}/pids.max`].find(p => existsSync(p))
    t.ok(knob !== undefined, 'the container has a pids cgroup')
    if (knob !== undefined) t.equal(readFileSync(knob, 'utf8').trim(), '50', `${knob} holds it`)
  })
}
