// Bad input: each error has its code and exit code, and leaves nothing half-made.
import t from 'tap'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { daemonWithBusybox, runCli, skipReason } from './helpers.ts'

t.test('usage errors exit 2 before anything is asked of a daemon', async t => {
  const noDaemon = '/nonexistent/berth.sock'
  const cases: Array<[string[], RegExp]> = [
    [['run', '--memory', '64Q', 'host', 'true'], /BERTH_ERR_BAD_SIZE/],
    [['run', '--bogus', 'host', 'true'], /BERTH_ERR_USAGE: unknown flag --bogus/],
    [['run', '--cpu', 'lots', 'host', 'true'], /BERTH_ERR_BAD_CPUS/],
    [['run', '--pids', '-3', 'host', 'true'], /BERTH_ERR_BAD_PIDS|BERTH_ERR_USAGE/],
    [['run', '--restart', 'sometimes', 'host', 'true'], /BERTH_ERR_BAD_RESTART/],
    [['run', '--rm', '--restart', 'always', 'host', 'true'], /BERTH_ERR_CONFLICTING_OPTIONS/],
    [['run', '-e', 'NOEQUALS', 'host', 'true'], /BERTH_ERR_BAD_ENV/],
    [['run', '--net', 'bridge', 'host', 'true'], /BERTH_ERR_USAGE/],
    [['kill', '-s', 'SIGNOPE', 'x'], /BERTH_ERR_BAD_SIGNAL/],
    [['frobnicate'], /BERTH_ERR_USAGE: unknown command/],
    [['run'], /BERTH_ERR_USAGE/]
  ]
  for (const [args, re] of cases) {
    const r = await runCli(['--socket', noDaemon, ...args])
    t.equal(r.code, 2, `berth ${args.join(' ')} exits 2`)
    t.match(r.stderr, re)
    t.match(r.stderr, /hint: /, 'with a hint')
    t.equal(r.stderr.trim().split('\n').length, 1, 'on one line')
  }
})

t.test('no daemon: exit 125 with a hint', async t => {
  const r = await runCli(['--socket', '/nonexistent/berth.sock', 'ps'])
  t.equal(r.code, 125)
  t.match(r.stderr, /^berth: BERTH_ERR_NO_DAEMON: .*hint: /)
})

t.test('help texts', async t => {
  const r = await runCli(['--help'])
  t.equal(r.code, 0)
  for (const c of ['up', 'run', 'ps', 'logs', 'inspect', 'stop', 'kill', 'rm', 'exec', 'image import', 'image ls', 'image rm']) t.match(r.stdout, c)
  const run = await runCli(['run', '--help'])
  t.match(run.stdout, /--memory SIZE/)
})

const skip = skipReason()
if (skip !== undefined) {
  t.test(`daemon errors`, { skip }, async () => {})
} else {
  const d = await daemonWithBusybox(t, 'berth-cli')
  const containers = (): string[] => readdirSync(join(d.dataDir, 'containers'))

  t.test('daemon and runtime errors exit 125 and leave nothing behind', async t => {
    const unknown = await d.cli(['run', 'no-such-image', 'true'])
    t.equal(unknown.code, 125)
    t.match(unknown.stderr, /BERTH_ERR_IMAGE_NOT_FOUND.*hint: /)
    t.same(containers(), [], 'no bundle')

    await d.ok(['run', '-d', '--name', 'dup', 'bb', 'sleep', '30'])
    const dup = await d.cli(['run', '--name', 'dup', 'bb', 'true'])
    t.equal(dup.code, 125)
    t.match(dup.stderr, /BERTH_ERR_NAME_IN_USE/)
    t.equal(containers().length, 1, 'only the first one')
    await d.ok(['rm', '-f', 'dup'])

    const bad = await d.cli(['run', '--name', 'nocmd', 'bb', '/no/such/command'])
    t.equal(bad.code, 127)
    t.match(bad.stderr, /BERTH_ERR_EXEC_NOT_FOUND/)
    t.same(containers(), [])
    t.equal((await d.cli(['inspect', 'nocmd'])).code, 125)

    const badName = await d.cli(['run', '--name', 'bad/name', 'bb', 'true'])
    t.not(badName.code, 0)
    t.match(badName.stderr, /BERTH_ERR_INVALID_NAME/)

    const missing = await d.cli(['logs', 'ghost'])
    t.equal(missing.code, 125)
    t.match(missing.stderr, /BERTH_ERR_CONTAINER_NOT_FOUND/)
    t.same(JSON.parse(await d.ok(['ps', '-a', '--json'])), [])
  })

  t.test('image errors', async t => {
    const notThere = await d.cli(['image', 'import', 'x', '/nonexistent/source.tar'])
    t.equal(notThere.code, 125)
    t.match(notThere.stderr, /BERTH_ERR_IMAGE/)
    const junk = join(d.dir, 'junk.tar')
    writeFileSync(junk, 'this is not a tar archive at all'.repeat(40))
    const bad = await d.cli(['image', 'import', 'junk', junk])
    t.equal(bad.code, 125)
    t.notOk(JSON.parse(await d.ok(['image', 'ls', '--json'])).some((i: any) => i.name === 'junk'))
    const builtin = await d.cli(['image', 'rm', 'host'])
    t.equal(builtin.code, 125)
    t.match(builtin.stderr, /BERTH_ERR_IMAGE_BUILTIN/)
    const dupe = await d.cli(['image', 'import', 'bb', join(d.dir, 'bb-rootfs')])
    t.match(dupe.stderr, /BERTH_ERR_IMAGE_EXISTS/)
    const images = JSON.parse(await d.ok(['image', 'ls', '--json'])).map((i: any) => i.name).sort()
    t.same(images, ['bb', 'host'])
  })
}
