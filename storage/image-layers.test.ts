// OCI image layout archives and docker save tarballs, built here with GNU tar: two layers, the
// second deletes a file by whiteout and makes a directory opaque (its marker written AFTER the
// files the layer adds there, which is legal and is why each layer gets a listing pre-pass).
import t from 'tap'
import { createHash } from 'node:crypto'
import { lstat, mkdir, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { imagesDirEntries, makeEnv, NOT_ROOT, sh } from './fixtures/helpers.ts'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

interface Built { l1: string; l2: string; l2gz: string }

/** layer 1 and layer 2 as tar files in `dir` */
async function buildLayers (dir: string): Promise<Built> {
  const a = join(dir, 'l1')
  await mkdir(join(a, 'etc'), { recursive: true })
  await mkdir(join(a, 'opq/sub'), { recursive: true })
  await mkdir(join(a, 'data'), { recursive: true })
  await writeFile(join(a, 'etc/keep'), 'keep')
  await writeFile(join(a, 'etc/gone'), 'gone')
  await mkdir(join(a, 'etc/gonedir/deep'), { recursive: true })
  await writeFile(join(a, 'etc/gonedir/deep/f'), 'f')
  await writeFile(join(a, 'opq/a'), 'lower')
  await writeFile(join(a, 'opq/sub/b'), 'lower')
  await writeFile(join(a, 'data/x'), 'x')
  await writeFile(join(a, 'was-file'), 'file in layer 1')
  sh('tar', ['-cf', join(dir, 'l1.tar'), '--numeric-owner', '-C', a, '.'])

  const b = join(dir, 'l2')
  await mkdir(join(b, 'etc'), { recursive: true })
  await mkdir(join(b, 'opq'), { recursive: true })
  await mkdir(join(b, 'data'), { recursive: true })
  await mkdir(join(b, 'was-file'), { recursive: true })
  await writeFile(join(b, 'etc/.wh.gone'), '')
  await writeFile(join(b, 'etc/.wh.gonedir'), '')
  await writeFile(join(b, 'opq/new'), 'upper')
  await writeFile(join(b, 'opq/.wh..wh..opq'), '')
  await writeFile(join(b, 'data/y'), 'y')
  await writeFile(join(b, 'was-file/now-dir'), 'dir in layer 2')
  // explicit order: the opaque marker after the file the layer adds in that dir
  sh('tar', ['-cf', join(dir, 'l2.tar'), '--numeric-owner', '--no-recursion', '-C', b,
    'etc', 'etc/.wh.gone', 'etc/.wh.gonedir', 'opq', 'opq/new', 'opq/.wh..wh..opq', 'data', 'data/y', 'was-file', 'was-file/now-dir'])
  sh('sh', ['-c', `gzip -c < ${join(dir, 'l2.tar')} > ${join(dir, 'l2.tar.gz')}`])
  return { l1: join(dir, 'l1.tar'), l2: join(dir, 'l2.tar'), l2gz: join(dir, 'l2.tar.gz') }
}

const CONFIG = {
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/usr/bin', 'A=1'], Cmd: ['serve', '--port', '80'], Entrypoint: ['/app'], WorkingDir: '/srv/app', User: '1000:1000' },
  rootfs: { type: 'layers', diff_ids: [] as string[] }
}

/** an OCI image layout (as `skopeo copy … oci-archive:` writes it) tarred into `out` */
async function buildOci (dir: string, out: string, layers: Array<{ path: string; gzip: boolean }>, opts: { corrupt?: boolean } = {}): Promise<string> {
  const root = join(dir, 'oci-' + Math.random().toString(16).slice(2))
  const blobs = join(root, 'blobs/sha256')
  await mkdir(blobs, { recursive: true })
  const put = async (b: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = sha(b)
    await writeFile(join(blobs, hex), b)
    return { digest: `sha256:${hex}`, size: b.length }
  }
  const layerDescs = []
  for (const l of layers) {
    const bytes = await readFile(l.path)
    const d = await put(bytes)
    if (opts.corrupt === true) {
      bytes[bytes.length - 600] ^= 0xff
      await writeFile(join(blobs, d.digest.slice(7)), bytes)
    }
    layerDescs.push({ mediaType: `application/vnd.oci.image.layer.v1.tar${l.gzip ? '+gzip' : ''}`, ...d })
  }
  const config = await put(Buffer.from(JSON.stringify(CONFIG)))
  const manifest = await put(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layerDescs
  })))
  await writeFile(join(root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  await writeFile(join(root, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }]
  }))
  sh('tar', ['-cf', out, '-C', root, 'oci-layout', 'index.json', 'blobs'])
  return manifest.digest.slice(7)
}

async function checkMerged (t: Pick<typeof import('tap').default, 'equal' | 'same' | 'notOk' | 'ok'>, rootfs: string): Promise<void> {
  const has = async (p: string): Promise<boolean> => await lstat(join(rootfs, p)).then(() => true, () => false)
  t.equal(await readFile(join(rootfs, 'etc/keep'), 'utf8'), 'keep', 'untouched lower file kept')
  t.notOk(await has('etc/gone'), 'whiteout deleted a lower file')
  t.notOk(await has('etc/gonedir'), 'whiteout deleted a lower dir')
  t.notOk(await has('etc/.wh.gone'), 'whiteout markers are not extracted')
  t.same((await readdir(join(rootfs, 'opq'))).sort(), ['new'], 'opaque dir: lower content dropped, this layer kept')
  t.same((await readdir(join(rootfs, 'data'))).sort(), ['x', 'y'], 'other dirs merge')
  t.equal(await readFile(join(rootfs, 'was-file/now-dir'), 'utf8'), 'dir in layer 2', 'a file replaced by a dir')
}

t.test('OCI archive with two layers, whiteouts and an opaque dir', { skip: NOT_ROOT }, async t => {
  const { dir, dataDir, images } = await makeEnv(t)
  const l = await buildLayers(dir)
  const digest = await buildOci(dir, join(dir, 'img.oci.tar'), [{ path: l.l1, gzip: false }, { path: l.l2gz, gzip: true }])
  const phases = new Set<string>()
  const rec = await images.import('oci', join(dir, 'img.oci.tar'), { onProgress: p => phases.add(`${p.phase}:${p.layer ?? '-'}`) })
  t.match(rec, {
    name: 'oci', format: 'oci', id: digest, layers: 2,
    config: { env: ['PATH=/usr/bin', 'A=1'], cmd: ['serve', '--port', '80'], entrypoint: ['/app'], workingDir: '/srv/app', user: '1000:1000' }
  })
  await checkMerged(t, rec.rootfs)
  t.ok(phases.has('extract:1') && phases.has('scan:2') && phases.has('extract:2'), `phases ${[...phases].join(' ')}`)
  t.same(await imagesDirEntries(dataDir), ['oci'])
})

t.test('docker save tarball', { skip: NOT_ROOT }, async t => {
  const { dir, images } = await makeEnv(t)
  const l = await buildLayers(dir)
  const root = join(dir, 'docker')
  const h1 = sha(await readFile(l.l1))
  const h2 = sha(await readFile(l.l2))
  await mkdir(join(root, h1), { recursive: true })
  await mkdir(join(root, h2), { recursive: true })
  sh('cp', [l.l1, join(root, h1, 'layer.tar')])
  // a layer shared with another image is written once; docker save links the second copy
  await mkdir(join(root, 'dup'))
  sh('cp', [l.l2, join(root, h2, 'layer.tar')])
  await symlink(`../${h2}/layer.tar`, join(root, 'dup/layer.tar'))
  const config = Buffer.from(JSON.stringify(CONFIG))
  const cfgHex = sha(config)
  await writeFile(join(root, `${cfgHex}.json`), config)
  await writeFile(join(root, 'manifest.json'), JSON.stringify([{ Config: `${cfgHex}.json`, RepoTags: ['x:latest'], Layers: [`${h1}/layer.tar`, 'dup/layer.tar'] }]))
  await writeFile(join(root, 'repositories'), JSON.stringify({ x: { latest: h2 } }))
  sh('tar', ['-cf', join(dir, 'docker.tar'), '-C', root, '.'])
  const rec = await images.import('dock', join(dir, 'docker.tar'))
  t.match(rec, { format: 'docker-archive', id: cfgHex, layers: 2, config: { cmd: ['serve', '--port', '80'], user: '1000:1000' } })
  await checkMerged(t, rec.rootfs)
})

t.test('a layer whose blob does not match its digest is refused', { skip: NOT_ROOT }, async t => {
  const { dir, dataDir, store, images } = await makeEnv(t)
  const l = await buildLayers(dir)
  await buildOci(dir, join(dir, 'bad.tar'), [{ path: l.l1, gzip: false }, { path: l.l2, gzip: false }], { corrupt: true })
  await t.rejects(images.import('bad', join(dir, 'bad.tar')), { code: 'BERTH_ERR_IMAGE_IMPORT', message: /digest mismatch/ })
  t.same(await imagesDirEntries(dataDir), [])
  t.same((await store.images.list()).entries, [])
})

t.test('a later layer cannot write through an earlier layer\'s symlink to the host', { skip: NOT_ROOT }, async t => {
  const { dir, dataDir, images } = await makeEnv(t)
  const victim = join(dir, 'victim')
  await mkdir(victim)
  const a = join(dir, 'evil1')
  await mkdir(a)
  await symlink(victim, join(a, 'link'))
  await symlink('inside', join(a, 'rel')) // a relative symlink staying inside is fine
  await mkdir(join(a, 'inside'))
  sh('tar', ['-cf', join(dir, 'evil1.tar'), '-C', a, '.'])
  const b = join(dir, 'evil2')
  await mkdir(join(b, 'link'), { recursive: true })
  await writeFile(join(b, 'link/pwned'), 'pwned')
  sh('tar', ['-cf', join(dir, 'evil2.tar'), '--no-recursion', '-C', b, 'link/pwned'])
  await buildOci(dir, join(dir, 'evil.tar'), [{ path: join(dir, 'evil1.tar'), gzip: false }, { path: join(dir, 'evil2.tar'), gzip: false }])
  await t.rejects(images.import('evil', join(dir, 'evil.tar')), { code: 'BERTH_ERR_IMAGE_IMPORT', message: /symlink/ })
  t.same(await readdir(victim), [], 'nothing written outside')
  t.same(await imagesDirEntries(dataDir), [])

  const c = join(dir, 'ok2')
  await mkdir(join(c, 'rel'), { recursive: true })
  await writeFile(join(c, 'rel/file'), 'ok')
  sh('tar', ['-cf', join(dir, 'ok2.tar'), '--no-recursion', '-C', c, 'rel/file'])
  const e1 = join(dir, 'fine1')
  await mkdir(join(e1, 'inside'), { recursive: true })
  await symlink('inside', join(e1, 'rel'))
  sh('tar', ['-cf', join(dir, 'fine1.tar'), '-C', e1, '.'])
  await buildOci(dir, join(dir, 'fine.tar'), [{ path: join(dir, 'fine1.tar'), gzip: false }, { path: join(dir, 'ok2.tar'), gzip: false }])
  const rec = await images.import('fine', join(dir, 'fine.tar'))
  t.equal(await readFile(join(rec.rootfs, 'inside/file'), 'utf8'), 'ok', 'written through the inner symlink')
  t.ok((await stat(join(rec.rootfs, 'rel'))).isDirectory())
})
