import t from 'tap'
import { lstat, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeEnv, NOT_ROOT } from './fixtures/helpers.ts'

const exists = async (p: string): Promise<boolean> => await lstat(p).then(() => true, () => false)

t.test('the built-in host image', { skip: NOT_ROOT }, async t => {
  const { dataDir, images, store } = await makeEnv(t)
  const rec = await images.ensureHostImage()
  const root = rec.rootfs
  t.match(rec, { name: 'host', builtIn: true, format: 'host', source: 'host', layers: 0, rootfs: join(dataDir, 'images/host/rootfs') })
  t.same(rec.binds.find(b => b.dst === '/usr'), { src: '/usr', dst: '/usr', opts: ['ro', 'rec', 'idmap'] }, '/usr is bound')

  // merged /usr mirrored: symlink where the host has one, else a bind
  for (const name of ['bin', 'sbin', 'lib', 'lib64']) {
    const host = await lstat(`/${name}`).catch(() => undefined)
    if (host === undefined) continue
    if (host.isSymbolicLink()) t.equal(await readlink(join(root, name)), await readlink(`/${name}`), `${name} → same symlink`)
    else t.ok(rec.binds.some(b => b.dst === `/${name}`), `${name} bound`)
  }
  t.same(await readdir(join(root, 'usr')), [], 'usr is an empty mount point')

  // nothing private of the host
  for (const d of ['home', 'root', 'srv', 'opt', 'mnt', 'media', 'tmp', 'var/lib', 'var/log', 'proc', 'sys', 'dev']) {
    t.same(await readdir(join(root, d)), [], `${d} is empty`)
  }
  t.equal((await stat(join(root, 'tmp'))).mode & 0o7777, 0o1777)
  t.equal((await stat(join(root, 'var/tmp'))).mode & 0o7777, 0o1777)
  t.equal((await stat(join(root, 'root'))).mode & 0o7777, 0o700)
  t.notOk(await exists(join(root, 'var/lib/berth')), 'no data dir')
  for (const secret of ['shadow', 'gshadow', 'shadow-', 'gshadow-', 'sudoers', 'sudoers.d', 'ssl/private', 'security/opasswd']) {
    t.notOk(await exists(join(root, 'etc', secret)), `no /etc/${secret}`)
  }
  const keys = (await readdir(join(root, 'etc/ssh')).catch(() => [])).filter(n => n.endsWith('_key'))
  t.same(keys, [], 'no ssh host private keys')
  if (await exists('/etc/passwd')) t.equal(await readFile(join(root, 'etc/passwd'), 'utf8'), await readFile('/etc/passwd', 'utf8'), 'passwd copied')
  t.match(await readFile(join(root, 'etc/hosts'), 'utf8'), /^127\.0\.0\.1\s+localhost$/m)
  t.match(await readFile(join(root, 'etc/hosts'), 'utf8'), /^::1\s+localhost/m)
  t.equal(await readFile(join(root, 'etc/machine-id'), 'utf8'), '')
  t.ok(await exists(join(root, 'etc/resolv.conf')))
  t.equal((await stat(root)).uid, 0, 'owned by host root')

  // unchanged host → nothing rebuilt
  const again = await images.ensureHostImage()
  t.equal(again.createdAt, rec.createdAt, 'second ensure is a no-op')

  // a change in the host's /etc is picked up (daemon start refreshes the copy)
  const probe = '/etc/berth-storage-test.conf'
  await writeFile(probe, 'probe\n', { mode: 0o644 })
  t.teardown(() => rm(probe, { force: true }))
  const refreshed = await images.ensureHostImage()
  t.equal(await readFile(join(root, 'etc/berth-storage-test.conf'), 'utf8'), 'probe\n', 'refreshed /etc')
  t.not(refreshed.id, rec.id)
  t.same(await readdir(join(dataDir, 'images')), ['host'], 'no temp dirs left')

  await t.rejects(images.remove('host'), { code: 'BERTH_ERR_IMAGE_BUILTIN' })
  t.same((await images.list()).map(i => i.name), ['host'])

  // start() = cleanup + ensure; a deleted mount point is repaired
  await rm(join(root, 'usr'), { recursive: true })
  await images.start()
  await images.start()
  t.ok((await stat(join(root, 'usr'))).isDirectory())
  t.ok(await store.images.has('host'))
})
