// Turning an image source into a rootfs directory. The caller (images.ts) gives an empty
// directory inside a temp dir and owns clean-up: everything here may fail half-way.
//
// Sources, told apart by content (magic bytes), not by name:
//   directory        tar pipe (tar -c | tar -x): owners, modes, xattrs, symlinks, hard links
//                    (device nodes of any source are removed afterwards: dropDeviceNodes)
//   tar, tar.gz      streamed into GNU tar (gzip decompressed by zlib)
//   OCI archive      `oci-layout` + `index.json` → manifest → config + layers
//   docker save      `manifest.json` → Config + Layers
// Layers of archives are streamed straight from their offsets in the archive file (no copy of
// the blobs on disk), decompressed if they are gzip, and applied in order.
//
// Whiteouts (OCI image spec, "Representing Changes"): `.wh.NAME` deletes NAME of the lower
// layers; `.wh..wh..opq` in DIR drops everything the lower layers put in DIR but keeps what this
// layer adds. A marker may come after the files it concerns, so each layer but the first gets a
// listing pre-pass: deletions are applied first, then the layer is extracted without its `.wh.*`
// entries.
//
// Safety. GNU tar strips leading `/`, refuses members with `..` (the import then fails), and
// within one archive defers symlinks so a member cannot be written through a symlink the same
// archive made. It does NOT protect across archives: a symlink `a -> /etc` from layer 1 and a
// file `a/passwd` in layer 2 would write the host's /etc/passwd. So the pre-pass also checks
// every member path (and hard link target) of layers 2+: a parent that is a symlink must resolve
// inside the rootfs, or the import fails.

import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, open, readdir, realpath, rm, stat, unlink } from 'node:fs/promises'
import { dirname, join, sep } from 'node:path'
import { Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import {
  AbortError, ImageFormatError, ImageImportError, ImageSourceNotFoundError
} from './errors.ts'
import { apparentSize, runTool, spawnTool, ToolError } from './proc.ts'
import type { ImageConfig, ImageFormat } from './records.ts'
import { BLOCK, indexTarFile, isTarHeader, listTarStream, normalizeName, TarFormatError } from './tar-index.ts'
import type { TarEntry } from './tar-index.ts'

export type ImportPhase = 'copy' | 'extract' | 'scan' | 'finalize'

export interface ImportProgress {
  phase: ImportPhase
  /** bytes read from the source so far (over all passes) */
  bytesDone: number
  /** bytes the import will read in all (an estimate for directories) */
  bytesTotal: number
  /** 1-based layer being applied, for layered images */
  layer?: number
  layers?: number
}

export interface ImportOptions {
  onProgress?: (p: ImportProgress) => void
  signal?: AbortSignal
  /** directories the source must not contain (the data dir: copying `/` would copy itself) */
  forbidden?: string[]
}

export interface ImportResult {
  format: Exclude<ImageFormat, 'host'>
  /** sha256 hex */
  id: string
  layers: number
  config: ImageConfig
  sizeBytes: number
}

const PROGRESS_INTERVAL_MS = 200
const MAX_JSON_BYTES = 4 << 20

/** Emits progress at most every PROGRESS_INTERVAL_MS, and always at phase ends. */
class Progress {
  done = 0
  total: number
  phase: ImportPhase = 'extract'
  layer: number | undefined
  layers: number | undefined
  last = 0
  readonly cb: ((p: ImportProgress) => void) | undefined

  constructor (total: number, cb: ((p: ImportProgress) => void) | undefined) {
    this.total = total
    this.cb = cb
  }

  set (phase: ImportPhase, layer?: number, layers?: number): void {
    this.phase = phase
    this.layer = layer
    this.layers = layers
    this.emit(true)
  }

  add (n: number): void {
    this.done += n
    this.emit(false)
  }

  emit (force: boolean): void {
    if (this.cb === undefined) return
    const now = Date.now()
    if (!force && now - this.last < PROGRESS_INTERVAL_MS) return
    this.last = now
    const p: ImportProgress = {
      phase: this.phase, bytesDone: Math.min(this.done, this.total), bytesTotal: this.total
    }
    if (this.layer !== undefined) { p.layer = this.layer; p.layers = this.layers }
    try { this.cb(p) } catch { /* a broken progress drawer must not break the import */ }
  }
}

/** A pass-through that counts bytes into the progress and hashes them. */
function meter (progress: Progress, hash?: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform (chunk: Buffer, _enc, cb) {
      progress.add(chunk.length)
      hash?.update(chunk)
      cb(null, chunk)
    }
  })
}

const TAR_EXTRACT = [
  '-x', '-f', '-', '--numeric-owner', '--same-owner', '-p', '--xattrs', '--xattrs-include=*'
]

/**
 * Streams `source` (through `transforms`) into `tar -x -C rootfs`. Whichever side fails first
 * is reported: tar's own message when tar fails, else the stream's (e.g. a truncated gzip).
 */
async function extractStream (
  what: string, rootfs: string, source: Readable, transforms: Transform[], extraArgs: string[], signal?: AbortSignal
): Promise<void> {
  const tar = spawnTool('tar', [...TAR_EXTRACT, '-C', rootfs, ...extraArgs], { stdin: true, signal })
  // tar failing ends the stream at once; tar succeeding before the stream's end (it stops at
  // the end-of-archive blocks) does not: the rest is drained, so counts and digests are whole.
  const stop = new AbortController()
  tar.done.catch(() => stop.abort())
  const streaming = pipeline([source, ...transforms, sinkTo(tar.stdin)], {
    signal: signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal])
  })
  const [s, t] = await Promise.allSettled([streaming, tar.done])
  if (signal?.aborted === true) throw new AbortError(`importing ${what}`, { cause: signal.reason })
  // A broken stream (truncated gzip…) says more than tar's "unexpected EOF"; a tar failure
  // says more than the abort the stream then gets.
  if (s.status === 'rejected' && (isZlibError(s.reason) || t.status === 'fulfilled')) {
    tar.child.kill('SIGKILL')
    throw new ImageImportError(what, describe(s.reason), s.reason)
  }
  if (t.status === 'rejected') throw new ImageImportError(what, describe(t.reason), t.reason)
}

/** A writable that forwards to `stdin` while it is open and discards once it has closed. */
function sinkTo (stdin: Writable): Writable {
  let closed = false
  const waiters = new Set<() => void>()
  const wake = (): void => { for (const w of waiters) w(); waiters.clear() }
  stdin.on('close', () => { closed = true; wake() })
  stdin.on('error', () => { closed = true; wake() })
  stdin.on('drain', wake)
  return new Writable({
    write (chunk: Buffer, _enc, cb) {
      if (closed || stdin.write(chunk)) { cb(); return }
      waiters.add(() => cb())
    },
    final (cb) {
      if (closed) { cb(); return }
      stdin.once('finish', wake)
      waiters.add(() => cb())
      stdin.end()
    },
    destroy (err, cb) {
      // the stream failed or was aborted: tar must see the input end, or it waits forever
      if (!closed) stdin.destroy()
      cb(err)
    }
  })
}

const aborted = (signal?: AbortSignal): boolean => signal?.aborted === true

const isZlibError = (err: unknown): boolean => /^Z_/.test(String((err as NodeJS.ErrnoException | undefined)?.code ?? ''))

function describe (err: unknown): string {
  if (err instanceof ToolError) return err.message
  const e = err as NodeJS.ErrnoException
  if (e?.code === 'Z_BUF_ERROR' || e?.code === 'Z_DATA_ERROR') return `corrupt or truncated gzip data (${e.message})`
  return e?.message ?? String(err)
}

async function readHead (path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.alloc(n)
    const { bytesRead } = await fh.read(buf, 0, n, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

const isGzip = (b: Buffer): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b

function unsupportedCompression (b: Buffer): string | undefined {
  if (b.length >= 4 && b.readUInt32BE(0) === 0x28b52ffd) return 'zstd-compressed'
  if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz-compressed'
  if (b.length >= 3 && b.toString('latin1', 0, 3) === 'BZh') return 'bzip2-compressed'
  return undefined
}

export async function importSource (rootfs: string, source: string, opts: ImportOptions = {}): Promise<ImportResult> {
  let st
  try {
    st = await stat(source)
  } catch (err) {
    throw new ImageSourceNotFoundError(source, err)
  }
  if (st.isDirectory()) return await importDir(rootfs, source, st.mtimeMs, opts)
  if (!st.isFile()) throw new ImageFormatError(source, 'not a regular file or a directory')
  let head: Buffer
  try {
    head = await readHead(source, BLOCK)
  } catch (err) {
    throw new ImageSourceNotFoundError(source, err)
  }
  if (isGzip(head)) return await importTarball(rootfs, source, st.size, true, opts)
  const unsupported = unsupportedCompression(head)
  if (unsupported !== undefined) throw new ImageFormatError(source, `${unsupported} archives are not supported; decompress it or recompress it with gzip`)
  if (!isTarHeader(head)) throw new ImageFormatError(source, 'not a directory, a tar archive or a gzip-compressed tar archive')
  let entries: TarEntry[]
  try {
    entries = await indexTarFile(source)
  } catch (err) {
    if (err instanceof TarFormatError) throw new ImageImportError(source, err.message, err)
    throw new ImageSourceNotFoundError(source, err)
  }
  const archive = new Archive(source, entries)
  if (archive.has('oci-layout') && archive.has('index.json')) return await importOci(rootfs, archive, opts)
  if (archive.has('manifest.json')) {
    const manifest = await archive.json('manifest.json').catch(() => undefined)
    if (Array.isArray(manifest) && manifest.length > 0 && Array.isArray((manifest[0] as { Layers?: unknown }).Layers)) {
      return await importDocker(rootfs, archive, manifest[0] as DockerManifest, opts)
    }
  }
  return await importTarball(rootfs, source, st.size, false, opts)
}

// ---- directories -----------------------------------------------------------------------------

async function importDir (rootfs: string, source: string, mtimeMs: number, opts: ImportOptions): Promise<ImportResult> {
  const src = await realpath(source)
  for (const f of opts.forbidden ?? []) {
    const rf = await realpath(f).catch(() => f)
    if (rf === src || rf.startsWith(src === '/' ? '/' : src + sep)) {
      throw new ImageFormatError(source, `the directory contains berth's data dir ${f}`)
    }
  }
  // du gives the total to draw against; the tar stream is a little larger (headers).
  const progress = new Progress(await apparentSize(src).catch(() => 0), opts.onProgress)
  progress.set('copy')
  // --one-file-system: whatever is mounted inside the source (a /proc of a chroot…) is not copied.
  const create = spawnTool('tar', [
    '-c', '-f', '-', '-C', src, '--numeric-owner', '--xattrs', '--xattrs-include=*', '--one-file-system', '.'
  ], { signal: opts.signal, okStatus: [0, 1] /* 1: a file changed while read */, stdout: 'stream' })
  try {
    await extractStream(source, rootfs, create.child.stdout!, [meter(progress)], [], opts.signal)
    await create.done
  } catch (err) {
    create.child.kill('SIGKILL')
    await create.done.catch(() => {})
    if (err instanceof ToolError) throw new ImageImportError(source, err.message, err)
    throw err
  }
  progress.total = progress.done
  progress.set('finalize')
  return {
    format: 'dir',
    id: sha256(`dir:${src}:${mtimeMs}:${Date.now()}`),
    layers: 1,
    config: {},
    sizeBytes: await apparentSize(rootfs)
  }
}

// ---- plain tarballs ------------------------------------------------------------------------

async function importTarball (rootfs: string, source: string, size: number, gzip: boolean, opts: ImportOptions): Promise<ImportResult> {
  const progress = new Progress(size, opts.onProgress)
  progress.set('extract')
  const hash = createHash('sha256')
  const transforms = [meter(progress, hash)]
  if (gzip) transforms.push(createGunzip())
  await extractStream(source, rootfs, createReadStream(source), transforms, [], opts.signal)
  progress.set('finalize')
  return {
    format: gzip ? 'tar.gz' : 'tar',
    id: hash.digest('hex'),
    layers: 1,
    config: {},
    sizeBytes: await apparentSize(rootfs)
  }
}

// ---- archives of layers ----------------------------------------------------------------------

class Archive {
  readonly path: string
  readonly byName = new Map<string, TarEntry>()

  constructor (path: string, entries: TarEntry[]) {
    this.path = path
    for (const e of entries) this.byName.set(e.name, e) // a later member replaces an earlier one, as on extraction
  }

  has (name: string): boolean {
    return this.byName.has(normalizeName(name))
  }

  /** The member holding `name`'s bytes, following (docker save's) symlinks and hard links. */
  member (name: string): TarEntry {
    let n = normalizeName(name)
    for (let hops = 0; hops < 8; hops++) {
      const e = this.byName.get(n)
      if (e === undefined) throw new ImageImportError(this.path, `the archive has no ${n}`)
      if (e.type === '0' || e.type === '7') return e
      if (e.type === '1') n = normalizeName(e.linkname)
      else if (e.type === '2') n = normalizeName(join(dirname(n), e.linkname))
      else throw new ImageImportError(this.path, `${n} in the archive is not a file`)
    }
    throw new ImageImportError(this.path, `too many links resolving ${name}`)
  }

  stream (e: TarEntry): Readable {
    if (e.size === 0) return Readable.from([])
    return createReadStream(this.path, { start: e.dataOffset, end: e.dataOffset + e.size - 1 })
  }

  async bytes (e: TarEntry, max = MAX_JSON_BYTES): Promise<Buffer> {
    if (e.size > max) throw new ImageImportError(this.path, `${e.name} is too large (${e.size} bytes)`)
    const fh = await open(this.path, 'r')
    try {
      const buf = Buffer.alloc(e.size)
      await fh.read(buf, 0, e.size, e.dataOffset)
      return buf
    } finally {
      await fh.close()
    }
  }

  async json (name: string): Promise<unknown> {
    const buf = await this.bytes(this.member(name))
    try {
      return JSON.parse(buf.toString('utf8'))
    } catch (err) {
      throw new ImageImportError(this.path, `${name} is not valid JSON`, err)
    }
  }
}

interface Layer {
  member: TarEntry
  /** `sha256:<hex>` to verify the blob against, if known */
  digest?: string
}

interface Descriptor { mediaType?: string; digest?: string; size?: number; platform?: { os?: string; architecture?: string } }

function blobPath (path: string, digest: unknown): string {
  if (typeof digest !== 'string' || !/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/.test(digest)) {
    throw new ImageImportError(path, `bad digest ${JSON.stringify(digest)}`)
  }
  const [alg, hex] = digest.split(':')
  return `blobs/${alg}/${hex}`
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }

function pickManifest (path: string, manifests: unknown): Descriptor {
  if (!Array.isArray(manifests) || manifests.length === 0) throw new ImageImportError(path, 'index.json lists no manifests')
  const ds = manifests as Descriptor[]
  if (ds.length === 1) return ds[0]!
  const arch = GOARCH[process.arch] ?? process.arch
  return ds.find(d => d.platform?.os === 'linux' && d.platform.architecture === arch) ??
    ds.find(d => d.platform === undefined) ?? ds[0]!
}

async function verifiedJson (archive: Archive, digest: unknown): Promise<{ json: unknown; hex: string }> {
  const name = blobPath(archive.path, digest)
  const buf = await archive.bytes(archive.member(name))
  const [alg, hex] = (digest as string).split(':') as [string, string]
  if (createHash(alg).update(buf).digest('hex') !== hex) throw new ImageImportError(archive.path, `${name}: digest mismatch`)
  try {
    return { json: JSON.parse(buf.toString('utf8')), hex }
  } catch (err) {
    throw new ImageImportError(archive.path, `${name} is not valid JSON`, err)
  }
}

async function importOci (rootfs: string, archive: Archive, opts: ImportOptions): Promise<ImportResult> {
  const layout = await archive.json('oci-layout') as { imageLayoutVersion?: unknown }
  if (typeof layout?.imageLayoutVersion !== 'string') throw new ImageImportError(archive.path, 'oci-layout has no imageLayoutVersion')
  let index = await archive.json('index.json') as { manifests?: unknown }
  let desc = pickManifest(archive.path, index.manifests)
  // an index may point at another index (multi-platform image)
  for (let depth = 0; desc.mediaType === 'application/vnd.oci.image.index.v1+json'; depth++) {
    if (depth > 4) throw new ImageImportError(archive.path, 'image indexes nest too deep')
    index = (await verifiedJson(archive, desc.digest)).json as { manifests?: unknown }
    desc = pickManifest(archive.path, index.manifests)
  }
  const { json: manifestJson, hex: manifestHex } = await verifiedJson(archive, desc.digest)
  const manifest = manifestJson as { config?: Descriptor; layers?: Descriptor[] }
  if (manifest.config === undefined || !Array.isArray(manifest.layers)) {
    throw new ImageImportError(archive.path, 'the manifest has no config or no layers')
  }
  const { json: config } = await verifiedJson(archive, manifest.config.digest)
  const layers: Layer[] = manifest.layers.map(l => {
    if (typeof l.mediaType === 'string' && /zstd/.test(l.mediaType)) {
      throw new ImageFormatError(archive.path, `layer ${l.digest} is zstd-compressed, which is not supported`)
    }
    return { member: archive.member(blobPath(archive.path, l.digest)), digest: l.digest as string }
  })
  await applyLayers(rootfs, archive, layers, opts)
  return {
    format: 'oci', id: manifestHex, layers: layers.length, config: imageConfig(config), sizeBytes: await apparentSize(rootfs)
  }
}

interface DockerManifest { Config?: unknown; Layers: unknown[] }

async function importDocker (rootfs: string, archive: Archive, manifest: DockerManifest, opts: ImportOptions): Promise<ImportResult> {
  if (typeof manifest.Config !== 'string') throw new ImageImportError(archive.path, 'manifest.json has no Config')
  const configBytes = await archive.bytes(archive.member(manifest.Config))
  let config: unknown
  try {
    config = JSON.parse(configBytes.toString('utf8'))
  } catch (err) {
    throw new ImageImportError(archive.path, `${manifest.Config} is not valid JSON`, err)
  }
  const layers: Layer[] = manifest.Layers.map(l => {
    if (typeof l !== 'string') throw new ImageImportError(archive.path, 'manifest.json has a bad Layers entry')
    const m = /^blobs\/(sha256)\/([0-9a-f]{64})$/.exec(normalizeName(l))
    return { member: archive.member(l), digest: m === null ? undefined : `${m[1]}:${m[2]}` }
  })
  await applyLayers(rootfs, archive, layers, opts)
  return {
    format: 'docker-archive',
    id: sha256(configBytes),
    layers: layers.length,
    config: imageConfig(config),
    sizeBytes: await apparentSize(rootfs)
  }
}

function imageConfig (config: unknown): ImageConfig {
  const c = (config as { config?: Record<string, unknown> } | null)?.config
  const out: ImageConfig = {}
  if (c === null || typeof c !== 'object') return out
  const strs = (v: unknown): string[] | undefined =>
    Array.isArray(v) && v.every(s => typeof s === 'string') ? v : undefined
  const env = strs(c.Env); if (env !== undefined) out.env = env
  const cmd = strs(c.Cmd); if (cmd !== undefined) out.cmd = cmd
  const ep = strs(c.Entrypoint); if (ep !== undefined) out.entrypoint = ep
  if (typeof c.WorkingDir === 'string' && c.WorkingDir !== '') out.workingDir = c.WorkingDir
  if (typeof c.User === 'string' && c.User !== '') out.user = c.User
  return out
}

async function applyLayers (rootfs: string, archive: Archive, layers: Layer[], opts: ImportOptions): Promise<void> {
  // the first layer is read once, the others twice (listing pre-pass, then extraction)
  const total = layers.reduce((n, l, i) => n + l.member.size * (i === 0 ? 1 : 2), 0)
  const progress = new Progress(total, opts.onProgress)
  for (const [i, layer] of layers.entries()) {
    const what = `${archive.path} (layer ${i + 1}/${layers.length})`
    if (opts.signal?.aborted === true) throw new AbortError(`importing ${archive.path}`, { cause: opts.signal.reason })
    const gzip = isGzip(await archive.bytes({ ...layer.member, size: Math.min(2, layer.member.size) }))
    if (i > 0) {
      progress.set('scan', i + 1, layers.length)
      const entries: TarEntry[] = []
      const transforms: Transform[] = [meter(progress)]
      if (gzip) transforms.push(createGunzip())
      try {
        await listTarStream(pipelineSource(archive.stream(layer.member), transforms, opts.signal), (e) => entries.push(e))
      } catch (err) {
        if (aborted(opts.signal)) throw new AbortError(`importing ${archive.path}`, { cause: opts.signal?.reason })
        throw new ImageImportError(what, describe(err), err)
      }
      await applyWhiteouts(rootfs, what, entries)
    }
    progress.set('extract', i + 1, layers.length)
    const alg = layer.digest?.split(':')[0]
    const hash = alg === undefined ? undefined : createHash(alg)
    const transforms: Transform[] = [meter(progress, hash)]
    if (gzip) transforms.push(createGunzip())
    await extractStream(what, rootfs, archive.stream(layer.member), transforms, ['--exclude=.wh.*'], opts.signal)
    if (hash !== undefined && hash.digest('hex') !== layer.digest!.split(':')[1]) {
      throw new ImageImportError(what, `layer digest mismatch (expected ${layer.digest})`)
    }
  }
  progress.set('finalize')
}

/** `source` piped through `transforms`, as one async iterable; errors surface on iteration. */
function pipelineSource (source: Readable, transforms: Transform[], signal?: AbortSignal): AsyncIterable<Buffer> {
  let s: Readable = source
  for (const t of transforms) {
    const from = s
    from.on('error', (err) => t.destroy(err))
    s = from.pipe(t)
  }
  if (signal !== undefined) {
    const onAbort = (): void => { s.destroy(new AbortError('reading layer')) }
    signal.addEventListener('abort', onAbort, { once: true })
    s.once('close', () => signal.removeEventListener('abort', onAbort))
  }
  return s as AsyncIterable<Buffer>
}

const WH_PREFIX = '.wh.'
const WH_OPAQUE = '.wh..wh..opq'

function splitPath (p: string): { dir: string; base: string } {
  const i = p.lastIndexOf('/')
  return i === -1 ? { dir: '', base: p } : { dir: p.slice(0, i), base: p.slice(i + 1) }
}

/**
 * The pre-pass of one layer over the rootfs made by the lower layers: check that nothing of it
 * goes through a symlink leading out of the rootfs, then apply its whiteouts, opaque markers,
 * and type changes (a layer's file where a lower layer had a directory, and the reverse).
 */
async function applyWhiteouts (rootfs: string, what: string, entries: TarEntry[]): Promise<void> {
  const layerDirs = new Set<string>()
  for (const e of entries) if (e.type === '5') layerDirs.add(e.name)
  const safeDirs = new Map<string, boolean>()

  const rootReal = await realpath(rootfs)
  const inside = (p: string): boolean => p === rootReal || p.startsWith(rootReal + sep)

  /** every proper parent of `rel` resolves inside the rootfs (as tar would resolve it) */
  const checkParents = async (rel: string): Promise<void> => {
    const parts = rel.split('/').filter(s => s !== '' && s !== '.')
    if (parts.includes('..')) throw new ImageImportError(what, `member ${rel} contains '..'`)
    let prefix = ''
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]}`
      const known = safeDirs.get(prefix)
      if (known === true) continue
      if (layerDirs.has(prefix)) { safeDirs.set(prefix, true); continue } // made a directory by this layer
      let st
      try {
        st = await lstat(join(rootfs, prefix))
      } catch {
        return // does not exist yet: tar makes it as a directory
      }
      if (st.isSymbolicLink()) {
        const real = await realpath(join(rootfs, prefix)).catch(() => undefined)
        if (real === undefined || !inside(real)) {
          throw new ImageImportError(what, `member ${rel} would be written through the symlink ${prefix}, which leads out of the image`)
        }
      } else if (!st.isDirectory()) {
        return // tar fails on it, or replaces it
      }
      safeDirs.set(prefix, true)
    }
  }

  const opaque: string[] = []
  const whiteouts: string[] = []
  const others: TarEntry[] = []
  for (const e of entries) {
    const { dir, base } = splitPath(e.name)
    if (base === WH_OPAQUE) opaque.push(dir)
    else if (base.startsWith(WH_PREFIX)) whiteouts.push(dir === '' ? base.slice(WH_PREFIX.length) : `${dir}/${base.slice(WH_PREFIX.length)}`)
    else others.push(e)
  }

  for (const e of entries) {
    await checkParents(e.name)
    if (e.type === '1') await checkParents(normalizeName(e.linkname))
  }

  for (const dir of opaque) {
    await checkParents(`${dir}/x`)
    const abs = dir === '' ? rootfs : join(rootfs, dir)
    const st = await lstat(abs).catch(() => undefined)
    if (st === undefined || !st.isDirectory()) continue
    for (const name of await readdir(abs)) await rm(join(abs, name), { recursive: true, force: true })
  }
  for (const w of whiteouts) {
    if (w === '' || w.split('/').includes('..')) continue
    await rm(join(rootfs, w), { recursive: true, force: true })
  }
  for (const e of others) {
    if (e.name === '') continue
    const abs = join(rootfs, e.name)
    const st = await lstat(abs).catch(() => undefined)
    if (st === undefined) continue
    if (e.type === '5' && !st.isDirectory()) await unlink(abs)
    else if (e.type !== '5' && st.isDirectory()) await rm(abs, { recursive: true, force: true })
  }
}

/**
 * Removes every block and character device node from an unpacked rootfs, returning their paths
 * (relative). An image's device node is a node on the host's filesystem, owned by host root
 * with whatever mode the archive chose: a 0666 node of a host disk would open that disk for
 * anyone who reaches it, and for a `--userns host` container. A container gets its own /dev
 * (null, zero, full, random, urandom, tty, pts), so an image never needs one.
 */
export async function dropDeviceNodes (rootfs: string): Promise<string[]> {
  const out = await runTool('find', [rootfs, '-xdev', '(', '-type', 'b', '-o', '-type', 'c', ')', '-print0', '-delete'])
  return out.split('\0').filter(p => p !== '').map(p => p.slice(rootfs.length + 1))
}

export function sha256 (data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}
