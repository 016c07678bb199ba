// Real system containers through the real daemon and CLI: PID 1, isolation, uid mapping, limits,
// logs, exec, stop/kill/rm, restart policies, and re-adoption after the daemon is killed.
import t from 'tap'
import { readFileSync, statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { daemonWithBusybox, inspect, skipReason, sleep, until } from './helpers.ts'

const skip = skipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-containers')

  t.test('the command is PID 1 in its own pid namespace, with its own hostname', async t => {
    const r = await d.cli(['run', '--rm', '--name', 'pid1', 'bb', 'sh', '-c', 'echo pid=$$; hostname; ps -o pid,comm | wc -l'])
    t.equal(r.code, 0, r.stderr)
    const [pid, host, lines] = r.stdout.trim().split('\n')
    t.equal(pid, 'pid=1')
    t.equal(host, 'pid1')
    t.ok(Number(lines) <= 4, `only the container's processes are visible (${lines} lines)`)
  })

  t.test('exit codes: the command\'s own, 128+signal, and nothing is left with --rm', async t => {
    const r = await d.cli(['run', '--rm', '--name', 'code7', 'bb', 'sh', '-c', 'exit 7'])
    t.equal(r.code, 7)
    // The command must not be PID 1 here: PID 1 is immune to signals sent from inside its namespace.
    const killed = await d.cli(['run', '--rm', '--init', '--name', 'selfkill', 'bb', 'sh', '-c', 'kill -9 $$'])
    t.equal(killed.code, 137)
    const ps = JSON.parse(await d.ok(['ps', '-a', '--json']))
    t.notOk(ps.some((c: any) => c.name === 'code7' || c.name === 'selfkill'), '--rm removed them')
  })

  t.test('stdout and stderr stream to the caller and land in the logs', async t => {
    const r = await d.cli(['run', '--name', 'out', 'bb', 'sh', '-c', 'echo to-out; echo to-err >&2'])
    t.equal(r.code, 0)
    t.equal(r.stdout, 'to-out\n')
    t.equal(r.stderr, 'to-err\n')
    const logs = await d.cli(['logs', 'out'])
    t.equal(logs.stdout, 'to-out\n')
    t.equal(logs.stderr, 'to-err\n')
    const c = await inspect(d, 'out')
    t.equal(c.state, 'exited')
    t.equal(c.exitCode, 0)
    await d.ok(['rm', 'out'])
  })

  t.test('mounts, network and the filesystem are isolated; the image is idmapped', async t => {
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c',
      'cat /proc/self/uid_map; ls /sys/class/net; stat -c "%u %g" /etc/berth-image-file; id -u; echo hi > /written; stat -c %u /written; cat /proc/mounts | wc -l'])
    t.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    const map = lines[0].trim().split(/\s+/).map(Number)
    t.equal(map[0], 0, 'uid 0 inside…')
    t.ok(map[1] >= 1_000_000_000, `…is an unprivileged host uid (${map[1]})`)
    t.equal(map[2], 65536)
    t.equal(lines[1], 'lo', 'only loopback')
    t.equal(lines[2], '0 0', 'image files are owned by root inside')
    t.equal(lines[3], '0')
    t.equal(lines[4], '0', 'a new file is owned by root inside')
    t.ok(Number(lines[5]) < 40, `a modest mount table, not the host's (${lines[5]})`)
  })

  t.test('each container gets its own host uid range, and its writes land in its upper layer', async t => {
    await d.ok(['run', '-d', '--name', 'ua', 'bb', 'sleep', '60'])
    await d.ok(['run', '-d', '--name', 'ub', 'bb', 'sleep', '60'])
    const a = await inspect(d, 'ua')
    const b = await inspect(d, 'ub')
    t.not(a.uidBase, b.uidBase)
    t.ok(Math.abs(a.uidBase - b.uidBase) >= 65536, 'ranges do not overlap')
    await d.ok(['exec', 'ua', 'sh', '-c', 'echo secret > /root/secret'])
    const upper = join(d.dataDir, 'containers', a.id, 'upper', 'root', 'secret')
    t.equal(readFileSync(upper, 'utf8'), 'secret\n')
    t.equal(statSync(upper).uid, a.uidBase, 'owned by the container\'s host root uid')
    const r = await d.cli(['exec', 'ub', 'cat', '/root/secret'])
    t.not(r.code, 0, 'the other container does not see it')
    await d.ok(['rm', '-f', 'ua'])
    await d.ok(['rm', '-f', 'ub'])
    t.notOk(existsSync(join(d.dataDir, 'containers', a.id)), 'rm removes the bundle')
  })

  t.test('exec joins the running container', async t => {
    await d.ok(['run', '-d', '--name', 'ex', '-e', 'FOO=bar', 'bb', 'sleep', '60'])
    const r = await d.cli(['exec', '-e', 'BAZ=qux', 'ex', 'sh', '-c', 'hostname; echo $FOO $BAZ; cat /proc/1/cmdline | tr "\\0" " "; exit 3'])
    t.equal(r.code, 3)
    const lines = r.stdout.trim().split('\n')
    t.equal(lines[0], 'ex')
    t.equal(lines[1], 'bar qux')
    t.equal(lines[2].trim(), 'sleep 60', 'PID 1 in the same pid namespace is the container\'s command')
    const missing = await d.cli(['exec', 'ex', '/no/such/binary'])
    t.equal(missing.code, 127)
    t.match(missing.stderr, /BERTH_ERR_EXEC_NOT_FOUND/)
    await d.ok(['rm', '-f', 'ex'])
  })

  t.test('--memory: an allocation past the limit is OOM-killed and reported as such', async t => {
    const r = await d.cli(['run', '--rm', '--memory', '32M', 'bb', 'sh', '-c', 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=200'])
    t.equal(r.code, 137, `exit ${r.code}: ${r.stderr}`)
    t.match(r.stderr, /OOM|memory/)
    await d.ok(['run', '-d', '--name', 'oom', '--memory', '32M', 'bb', 'sh', '-c', 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=200'])
    const c = await until(async () => { const c = await inspect(d, 'oom'); return c.state === 'exited' ? c : undefined })
    t.equal(c.oomKilled, true)
    t.equal(c.reason, 'oom')
    await d.ok(['rm', 'oom'])
  })

  t.test('--pids stops a fork bomb', async t => {
    // A bounded bomb: 60 forks, each child sleeping, counted by whoever succeeded.
    const bomb = [
      'import os, time', 'n = 0', 'for i in range(60):', '    try:', '        pid = os.fork()',
      '    except OSError:', '        continue', '    if pid == 0:', '        time.sleep(5)', '        os._exit(0)',
      '    n += 1', 'print("started=%d" % n)'
    ].join('\n')
    const r = await d.cli(['run', '--rm', '--pids', '20', 'host', 'python3', '-c', bomb])
    const m = /started=(\d+)/.exec(r.stdout)
    t.ok(m !== null, r.stdout + r.stderr)
    t.ok(Number(m?.[1]) < 20, `at most 20 processes (started ${m?.[1]})`)
  })

  t.test('--cpu sets a CFS quota', async t => {
    const id = (await d.ok(['run', '-d', '--name', 'cpu', '--cpu', '0.5', 'bb', 'sleep', '30'])).trim()
    t.equal(id, (await inspect(d, 'cpu')).id, 'run -d prints the id')
    const v1 = `/sys/fs/cgroup/cpu/berth/${id as string}/cpu.cfs_quota_us`
    const v2 = `/sys/fs/cgroup/berth/${id as string}/cpu.max`
    if (existsSync(v1)) t.equal(readFileSync(v1, 'utf8').trim(), '50000')
    else t.match(readFileSync(v2, 'utf8'), /^50000 100000/)
    await d.ok(['rm', '-f', 'cpu'])
  })

  t.test('stop sends SIGTERM, then SIGKILL after -t; kill sends a signal', async t => {
    await d.ok(['run', '-d', '--name', 'ignores-term', 'bb', 'sh', '-c', 'trap "" TERM; while true; do sleep 1; done'])
    const t0 = Date.now()
    await d.ok(['stop', '-t', '1', 'ignores-term'])
    const took = Date.now() - t0
    t.ok(took >= 900, `waited for the timeout (${took} ms)`)
    const c = await inspect(d, 'ignores-term')
    t.equal(c.state, 'exited')
    t.equal(c.signal, 9)
    await d.ok(['rm', 'ignores-term'])

    await d.ok(['run', '-d', '--init', '--name', 'polite', 'bb', 'sleep', '60'])
    const t1 = Date.now()
    await d.ok(['stop', '-t', '20', 'polite'])
    t.ok(Date.now() - t1 < 10_000, 'with --init, SIGTERM reaches the command at once')
    await d.ok(['rm', 'polite'])

    await d.ok(['run', '-d', '--name', 'k', 'bb', 'sleep', '60'])
    await d.ok(['kill', 'k'])
    const k = await until(async () => { const c = await inspect(d, 'k'); return c.state === 'exited' ? c : undefined })
    t.equal(k?.signal, 9, 'kill sends SIGKILL by default')
    await d.ok(['rm', 'k'])

    await d.ok(['run', '-d', '--init', '--name', 'kt', 'bb', 'sleep', '60'])
    await d.ok(['kill', '-s', 'TERM', 'kt'])
    const kt = await until(async () => { const c = await inspect(d, 'kt'); return c.state === 'exited' ? c : undefined })
    t.equal(kt?.exitCode, 143, 'the init forwarded SIGTERM to the command (128+15)')
    await d.ok(['rm', 'kt'])
  })

  t.test('rm refuses a running container without -f', async t => {
    await d.ok(['run', '-d', '--name', 'busy', 'bb', 'sleep', '60'])
    const r = await d.cli(['rm', 'busy'])
    t.equal(r.code, 125)
    t.match(r.stderr, /BERTH_ERR_CONTAINER_RUNNING/)
    await d.ok(['rm', '-f', 'busy'])
    t.equal((await d.cli(['inspect', 'busy'])).code, 125)
  })

  t.test('restart policies', async t => {
    await d.ok(['run', '-d', '--name', 'onfail', '--restart', 'on-failure', 'bb', 'sh', '-c', 'sleep 0.2; exit 3'])
    const c = await until(async () => { const c = await inspect(d, 'onfail'); return c.restartCount >= 2 ? c : undefined })
    t.ok(c, 'restarted after failures')
    await d.ok(['rm', '-f', 'onfail'])

    await d.ok(['run', '-d', '--name', 'clean', '--restart', 'on-failure', 'bb', 'true'])
    await sleep(1000)
    const clean = await inspect(d, 'clean')
    t.equal(clean.restartCount, 0, 'exit 0 is not a failure')
    t.equal(clean.state, 'exited')
    await d.ok(['rm', 'clean'])

    await d.ok(['run', '-d', '--name', 'always', '--restart', 'always', 'bb', 'true'])
    const a = await until(async () => { const c = await inspect(d, 'always'); return c.restartCount >= 2 ? c : undefined })
    t.ok(a, 'always restarts even after exit 0')
    await d.ok(['rm', '-f', 'always'])
  })

  t.test('workloads outlive the daemon: kill -9, restart, re-adopt, restart policies applied', async t => {
    await d.ok(['run', '-d', '--name', 'survivor', 'bb', 'sleep', '300'])
    await d.ok(['run', '-d', '--name', 'dies', '--restart', 'on-failure', 'bb', 'sh', '-c', 'sleep 2; exit 1'])
    const before = await inspect(d, 'survivor')
    await d.crash()
    await sleep(3000)
    t.ok(existsSync(`/proc/${before.pid as number}`), 'the container kept running while the daemon was down')
    await d.start()
    const after = await inspect(d, 'survivor')
    t.equal(after.state, 'running')
    t.equal(after.pid, before.pid, 'the same process, re-adopted')
    const r = await d.cli(['exec', 'survivor', 'hostname'])
    t.equal(r.stdout.trim(), 'survivor')
    const dies = await until(async () => { const c = await inspect(d, 'dies'); return c.restartCount >= 1 ? c : undefined })
    t.ok(dies, 'the container that died while the daemon was down was restarted by its policy')
    await d.stop()
    await d.start()
    t.equal((await inspect(d, 'survivor')).pid, before.pid, 'a graceful daemon restart does not disturb it either')
    await d.ok(['rm', '-f', 'survivor'])
    await d.ok(['rm', '-f', 'dies'])
  })

  t.test('the built-in host image runs the host\'s programs without its secrets', async t => {
    const r = await d.cli(['run', '--rm', 'host', 'sh', '-c', 'test -x /usr/bin/python3 && echo has-python; test -e /etc/shadow && echo has-shadow; ls /home | wc -l; ls /var/lib | grep -c berth; touch /usr/bin/x 2>/dev/null && echo usr-writable; echo ok'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /has-python/)
    t.notMatch(r.stdout, /has-shadow/)
    t.notMatch(r.stdout, /usr-writable/)
    t.match(r.stdout, /^0\n0\nok/m)
  })
}
