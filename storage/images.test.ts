import t from 'tap'
import { chmod, chown, link, lstat, mkdir, readFile, readlink, stat, symlink, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { getXattr, imagesDirEntries, isRoot, makeEnv, NOT_ROOT, setXattr, sh } from './fixtures/helpers.ts'
import type { ImportProgress } from './index.ts'

if (!isRoot) t.comment(`skipping: ${NOT_ROOT}`)

/** A source tree with everything a rootfs can hold. Returns whether a user xattr was set. */
async function makeTree (src: string): Promise<boolean> {
  await mkdir(join(src, 'etc'), { recursive: true })
  await mkdir(join(src, 'usr/bin'), { recursive: true })
  await mkdir(join(src, 'dev'))
  await writeFile(join(src, 'etc/os-release'), 'ID=test\n')
  await writeFile(join(src, 'usr/bin/tool'), '#!/bin/sh\necho hi\n', { mode: 0o755 })
  await writeFile(join(src, 'etc/owned'), 'x')
  await chown(join(src, 'etc/owned'), 1234, 5678)
  await chmod(join(src, 'etc/owned'), 0o4750)
  await symlink('usr/bin', join(src, 'bin'))
  await link(join(src, 'usr/bin/tool'), join(src, 'usr/bin/tool2'))
  sh('mknod', ['-m', '0666', join(src, 'dev/null'), 'c', '1', '3'])
  sh('mkfifo', [join(src, 'dev/fifo')])
  return setXattr(join(src, 'etc/os-release'), 'user.berth', 'yes')
}

async function checkTree (t: Asserts, rootfs: string, xattr: boolean): Promise<void> {
  t.equal(await readFile(join(rootfs, 'etc/os-release'), 'utf8'), 'ID=test\n')
  const owned = await stat(join(rootfs, 'etc/owned'))
  t.equal(owned.uid, 1234, 'owner kept')
  t.equal(owned.gid, 5678, 'group kept')
  t.equal(owned.mode & 0o7777, 0o4750, 'mode kept (setuid too)')
  t.equal(await readlink(join(rootfs, 'bin')), 'usr/bin', 'symlink kept')
  const a = await stat(join(rootfs, 'usr/bin/tool'))
  const b = await stat(join(rootfs, 'usr/bin/tool2'))
  t.equal(a.ino, b.ino, 'hard link kept')
  // An image's device node would be a live node on the host (owned by host root, any mode):
  // dropped at import; the container gets its own /dev.
  t.equal(await lstat(join(rootfs, 'dev/null')).then(() => 'kept', () => 'dropped'), 'dropped', 'device node dropped')
  t.ok((await lstat(join(rootfs, 'dev'))).isDirectory(), 'its directory kept')
  t.ok((await lstat(join(rootfs, 'dev/fifo'))).isFIFO(), 'fifo kept')
  if (xattr) t.equal(getXattr(join(rootfs, 'etc/os-release'), 'user.berth'), 'yes', 'xattr kept')
}
type Asserts = Pick<typeof t, 'equal' | 'ok'>

t.test('import from a directory, a tar and a tar.gz', { skip: NOT_ROOT }, async t => {
  const { dir, dataDir, images } = await makeEnv(t)
  const src = join(dir, 'src')
  const xattr = await makeTree(src)
  if (!xattr) t.comment('this filesystem has no user xattrs: not checking them')

  const progress: ImportProgress[] = []
  const fromDir = await images.import('fromdir', src, { onProgress: p => progress.push(p) })
  t.match(fromDir, { name: 'fromdir', format: 'dir', builtIn: false, layers: 1, rootfs: join(dataDir, 'images/fromdir/rootfs'), binds: [] })
  t.match(fromDir.id, /^[0-9a-f]{64}$/)
  t.ok(fromDir.sizeBytes > 0)
  await checkTree(t, fromDir.rootfs, xattr)
  t.ok(progress.length > 0, 'progress reported')
  t.equal(progress.at(-1)!.bytesDone, progress.at(-1)!.bytesTotal, 'progress ends complete')

  sh('tar', ['-cf', join(dir, 'img.tar'), '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', src, '.'])
  const fromTar = await images.import('fromtar', join(dir, 'img.tar'))
  t.equal(fromTar.format, 'tar')
  t.equal(fromTar.id, sh('sha256sum', [join(dir, 'img.tar')]).split(' ')[0], 'id is the sha256 of the tarball')
  await checkTree(t, fromTar.rootfs, xattr)

  // gzip told by its magic bytes, not by the name
  sh('sh', ['-c', `gzip -c < ${join(dir, 'img.tar')} > ${join(dir, 'img.data')}`])
  const seen: ImportProgress[] = []
  const fromTgz = await images.import('fromtgz', join(dir, 'img.data'), { onProgress: p => seen.push(p) })
  t.equal(fromTgz.format, 'tar.gz')
  await checkTree(t, fromTgz.rootfs, xattr)
  t.equal(seen.at(-1)!.bytesTotal, (await stat(join(dir, 'img.data'))).size, 'progress counts source bytes')

  t.same((await images.list()).map(i => i.name), ['fromdir', 'fromtar', 'fromtgz'])
  t.same(await imagesDirEntries(dataDir), ['fromdir', 'fromtar', 'fromtgz'], 'no temp dirs left')
  t.equal((await images.get('fromtar')).id, fromTar.id)
})

t.test('bad inputs fail with their code and leave nothing behind', { skip: NOT_ROOT }, async t => {
  const { dir, dataDir, images, store } = await makeEnv(t)
  const src = join(dir, 'src')
  await makeTree(src)
  sh('tar', ['-czf', join(dir, 'img.tgz'), '--numeric-owner', '-C', src, '.'])
  await writeFile(join(dir, 'big'), Buffer.alloc(4 << 20, 7))
  sh('tar', ['-czf', join(dir, 'big.tgz'), '-C', dir, 'big', 'src'])

  const nothingLeft = async (what: string): Promise<void> => {
    t.same(await imagesDirEntries(dataDir), [], `${what}: no dir left`)
    t.same((await store.images.list()).entries, [], `${what}: no record left`)
  }

  await t.rejects(images.import('x', join(dir, 'missing.tar')), { code: 'BERTH_ERR_IMAGE_SOURCE_NOT_FOUND' })
  await nothingLeft('missing file')

  await writeFile(join(dir, 'notes.tar'), 'just some text, not an archive\n'.repeat(40))
  await t.rejects(images.import('x', join(dir, 'notes.tar')), { code: 'BERTH_ERR_IMAGE_FORMAT', hint: /supported/ })
  await nothingLeft('not an archive')

  const size = (await stat(join(dir, 'big.tgz'))).size
  await truncate(join(dir, 'big.tgz'), Math.floor(size / 2))
  await t.rejects(images.import('x', join(dir, 'big.tgz')), { code: 'BERTH_ERR_IMAGE_IMPORT', message: /gzip|EOF/i })
  await nothingLeft('truncated gzip')

  // a plain tar cut mid-member
  sh('tar', ['-cf', join(dir, 'big.tar'), '-C', dir, 'big'])
  await truncate(join(dir, 'big.tar'), 1 << 20)
  await t.rejects(images.import('x', join(dir, 'big.tar')), { code: 'BERTH_ERR_IMAGE_IMPORT' })
  await nothingLeft('truncated tar')

  for (const bad of ['', 'UPPER', '-dash', '.hidden', 'a/b', 'x'.repeat(64), 'sp ace']) {
    await t.rejects(images.import(bad, join(dir, 'img.tgz')), { code: 'BERTH_ERR_INVALID_NAME', hint: /a-z/ }, `name ${JSON.stringify(bad)}`)
  }
  await t.rejects(images.import('host', join(dir, 'img.tgz')), { code: 'BERTH_ERR_IMAGE_BUILTIN' })
  await nothingLeft('bad names')

  await images.import('ok', join(dir, 'img.tgz'))
  await t.rejects(images.import('ok', join(dir, 'img.tgz')), { code: 'BERTH_ERR_IMAGE_EXISTS' })
  // two imports of one name at once: one wins
  const both = await Promise.allSettled([images.import('twin', join(dir, 'img.tgz')), images.import('twin', join(dir, 'img.tgz'))])
  t.equal(both.filter(r => r.status === 'fulfilled').length, 1)
  t.match(both.find(r => r.status === 'rejected'), { reason: { code: 'BERTH_ERR_IMAGE_EXISTS' } })
  t.same(await imagesDirEntries(dataDir), ['ok', 'twin'])

  // a directory holding the data dir (berth image import x /) is refused
  await t.rejects(images.import('self', dir), { code: 'BERTH_ERR_IMAGE_FORMAT', message: /data dir/ })

  // aborted
  const ac = new AbortController()
  const p = images.import('aborted', join(dir, 'img.tgz'), { signal: ac.signal, onProgress: () => ac.abort() })
  await t.rejects(p, { code: 'BERTH_ERR_ABORTED' })
  t.same(await imagesDirEntries(dataDir), ['ok', 'twin'], 'aborted: nothing left')
})

t.test('paths escaping the rootfs', { skip: NOT_ROOT }, async t => {
  const { dir, dataDir, images } = await makeEnv(t)
  const build = (name: string, members: Array<{ name: string; data?: string; symlink?: string }>): string => {
    // python's tarfile writes names verbatim (GNU tar would strip them when creating)
    const out = join(dir, name)
    sh('python3', ['-c', `
import tarfile, io, json, sys
t = tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT)
for m in json.loads(sys.argv[2]):
    i = tarfile.TarInfo(m['name'])
    if 'symlink' in m:
        i.type = tarfile.SYMTYPE; i.linkname = m['symlink']; t.addfile(i)
    else:
        d = m.get('data', 'x').encode(); i.size = len(d); t.addfile(i, io.BytesIO(d))
t.close()`, out, JSON.stringify(members)])
    return out
  }
  // absolute names are made relative to the rootfs
  const abs = await images.import('abs', build('abs.tar', [{ name: '/etc/abs-test', data: 'inside' }]))
  t.equal(await readFile(join(abs.rootfs, 'etc/abs-test'), 'utf8'), 'inside')
  await t.rejects(stat('/etc/abs-test'), { code: 'ENOENT' }, 'not written to the host')
  // `..` is refused
  await t.rejects(images.import('dotdot', build('dotdot.tar', [{ name: 'ok' }, { name: '../../../../../../tmp/berth-escape' }])),
    { code: 'BERTH_ERR_IMAGE_IMPORT' })
  await t.rejects(stat('/tmp/berth-escape'), { code: 'ENOENT' })
  // through a symlink made by the same archive
  await mkdir(join(dir, 'victim'))
  await t.rejects(images.import('via-link', build('link.tar', [{ name: 'l', symlink: join(dir, 'victim') }, { name: 'l/pwned' }])),
    { code: 'BERTH_ERR_IMAGE_IMPORT' })
  await t.rejects(stat(join(dir, 'victim/pwned')), { code: 'ENOENT' })
  t.same(await imagesDirEntries(dataDir), ['abs'])
})

t.test('remove, in use, built in, not found, cleanup', { skip: NOT_ROOT }, async t => {
  const used = new Set<string>()
  const { dir, dataDir, images, store } = await makeEnv(t, { inUse: name => used.has(name) })
  await mkdir(join(dir, 'src/etc'), { recursive: true })
  await writeFile(join(dir, 'src/etc/x'), 'x')
  await images.import('a', join(dir, 'src'))
  await images.import('b', join(dir, 'src'))

  await t.rejects(images.get('nope'), { code: 'BERTH_ERR_IMAGE_NOT_FOUND', hint: 'berth image ls lists them' })
  await t.rejects(images.remove('nope'), { code: 'BERTH_ERR_IMAGE_NOT_FOUND' })
  used.add('a')
  await t.rejects(images.remove('a'), { code: 'BERTH_ERR_IMAGE_IN_USE' })
  await t.rejects(images.remove('b', { inUse: async () => true }), { code: 'BERTH_ERR_IMAGE_IN_USE' })
  used.delete('a')
  await images.remove('a')
  await t.rejects(images.get('a'), { code: 'BERTH_ERR_IMAGE_NOT_FOUND' })
  t.same(await imagesDirEntries(dataDir), ['b'])

  // leftovers of a crash: a temp dir, and an image dir whose record was never written
  await mkdir(join(dataDir, 'images/.tmp-deadbeef/rootfs/etc'), { recursive: true })
  await mkdir(join(dataDir, 'images/orphan/rootfs'), { recursive: true })
  const res = await images.cleanup()
  t.same(res.removed.sort(), [join(dataDir, 'images/.tmp-deadbeef'), join(dataDir, 'images/orphan')])
  t.same(await imagesDirEntries(dataDir), ['b'])
  t.ok(await store.images.has('b'))

  // a record whose rootfs vanished is reported
  sh('rm', ['-rf', join(dataDir, 'images/b')])
  t.same((await images.cleanup()).missing, ['b'])
  await images.remove('b')
  t.same(await images.list(), [])
})
