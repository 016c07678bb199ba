// Images on one node: records in the store's `images` sublevel, rootfs dirs under
// `<data-dir>/images/<name>/rootfs` (owned by host root; the overlay's lower layer).
//
// Nothing half-made: an import builds `<data-dir>/images/.tmp-<random>/rootfs`, renames the temp
// dir to `<name>` (atomic), then writes the record in one batch. Any failure removes what it
// made. A crash can leave a `.tmp-*` dir (before the rename) or a `<name>` dir without a record
// (between rename and record); `cleanup()`, run when the daemon starts, removes both. Removal
// deletes the record first, then renames the dir to `.tmp-*` and deletes it, so a crash there
// leaves only what cleanup() removes.

import { randomBytes } from 'node:crypto'
import { debuglog } from 'node:util'
import { chmod, lstat, mkdir, readdir, rename } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import {
  BerthError, ImageBuiltinError, ImageExistsError, ImageImportError, ImageInUseError, ImageNotFoundError,
  InvalidNameError
} from './errors.ts'
import { dropDeviceNodes, importSource, sha256 } from './image-import.ts'
import type { ImportProgress } from './image-import.ts'
import { planHostImage, writeEtc, writeSkeleton } from './host-image.ts'
import { apparentSize, removeTree } from './proc.ts'
import type { ImageRecord } from './records.ts'
import type { Store } from './store.ts'

const log = debuglog('berth:storage:images')

export const HOST_IMAGE = 'host'
export const IMAGE_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/
const TMP_PREFIX = '.tmp-'
const META_HOST_FINGERPRINT = 'host-image-fingerprint'

export type InUse = (name: string) => boolean | Promise<boolean>

export interface ImageStoreInit {
  store: Store
  /** berth's data dir, e.g. /var/lib/berth */
  dataDir: string
  /** default for remove(): whether a container still uses the image */
  inUse?: InUse
}

export interface ImportImageOptions {
  /** called at most ~5×/s with the bytes read from the source */
  onProgress?: (p: ImportProgress) => void
  signal?: AbortSignal
}

export interface RemoveImageOptions {
  /** whether a container still uses the image; overrides the one given to createImageStore */
  inUse?: InUse
}

export interface CleanupResult {
  /** paths removed: stale temp dirs and image dirs without a record */
  removed: string[]
  /** records whose rootfs is missing (kept: a container may name them; `image rm` drops them) */
  missing: string[]
}

export interface ImageStore {
  readonly imagesDir: string
  /** all images, by name; corrupt records are skipped (and counted by the store) */
  list (): Promise<ImageRecord[]>
  /** ImageNotFoundError if absent */
  get (name: string): Promise<ImageRecord>
  /** a directory, .tar, .tar.gz/.tgz, OCI archive or docker save tarball (told apart by content) */
  import (name: string, source: string, opts?: ImportImageOptions): Promise<ImageRecord>
  /** ImageNotFoundError, ImageBuiltinError, ImageInUseError */
  remove (name: string, opts?: RemoveImageOptions): Promise<void>
  /** makes or refreshes the built-in `host` image (its /etc copy follows the host's) */
  ensureHostImage (): Promise<ImageRecord>
  /** removes leftovers of crashed imports/removals; run when the daemon starts */
  cleanup (): Promise<CleanupResult>
  /** cleanup() then ensureHostImage(); safe to call twice */
  start (): Promise<void>
  stop (): Promise<void>
}

export function validateImageName (name: string): void {
  if (typeof name !== 'string' || !IMAGE_NAME_RE.test(name)) {
    throw new InvalidNameError('image', String(name), 'image names are 1–63 characters of a-z 0-9 . _ -, starting with a letter or digit')
  }
}

const tmpName = (): string => TMP_PREFIX + randomBytes(8).toString('hex')

class LocalImageStore implements ImageStore {
  readonly store: Store
  readonly dataDir: string
  readonly imagesDir: string
  readonly inUse: InUse | undefined
  /** names being imported or removed by this process */
  readonly busy = new Set<string>()
  /** temp dirs of operations in flight: cleanup() leaves them alone */
  readonly activeTmp = new Set<string>()
  started = false

  constructor (init: ImageStoreInit) {
    this.store = init.store
    this.dataDir = resolve(init.dataDir)
    this.imagesDir = join(this.dataDir, 'images')
    this.inUse = init.inUse
  }

  private async ensureDirs (): Promise<void> {
    await mkdir(this.imagesDir, { recursive: true, mode: 0o700 })
    // Only root enters: an image is untrusted content (setuid-root binaries, whatever an archive
    // carries) owned by host root. The shim clones rootfs paths as host root, so no container
    // uid needs to traverse this; the chmod also tightens dirs made 0711 by older versions.
    await chmod(this.imagesDir, 0o700)
  }

  async list (): Promise<ImageRecord[]> {
    const { entries, skipped } = await this.store.images.list()
    for (const s of skipped) log('skipping corrupt image record %s: %s', s.key, s.reason)
    return entries.map(e => e.value)
  }

  async get (name: string): Promise<ImageRecord> {
    const r = await this.store.images.get(name)
    if (r === undefined) throw new ImageNotFoundError(name)
    return r
  }

  private claim (name: string): void {
    if (this.busy.has(name)) throw new ImageExistsError(name)
    this.busy.add(name)
  }

  async import (name: string, source: string, opts: ImportImageOptions = {}): Promise<ImageRecord> {
    validateImageName(name)
    if (name === HOST_IMAGE) throw new ImageBuiltinError(name)
    if (await this.store.images.has(name)) throw new ImageExistsError(name)
    this.claim(name)
    const tmp = join(this.imagesDir, tmpName())
    const final = join(this.imagesDir, name)
    this.activeTmp.add(tmp)
    let renamed = false
    try {
      await this.ensureDirs()
      if (await exists(final)) {
        // a dir without a record: left by a crash, cleanup() has not run yet
        throw new ImageExistsError(name)
      }
      await mkdir(tmp, { mode: 0o700 })
      await mkdir(join(tmp, 'rootfs'), { mode: 0o755 })
      const src = resolve(source)
      const res = await importSource(join(tmp, 'rootfs'), src, {
        onProgress: opts.onProgress, signal: opts.signal, forbidden: [this.dataDir]
      })
      const dropped = await dropDeviceNodes(join(tmp, 'rootfs'))
      if (dropped.length > 0) log('image %s: dropped %d device node(s): %s', name, dropped.length, dropped.slice(0, 10).join(' '))
      try {
        await rename(tmp, final)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new ImageExistsError(name)
        throw err
      }
      renamed = true
      const record: ImageRecord = {
        name,
        id: res.id,
        rootfs: join(final, 'rootfs'),
        builtIn: false,
        source: src,
        format: res.format,
        createdAt: Date.now(),
        sizeBytes: res.sizeBytes,
        layers: res.layers,
        binds: [],
        config: res.config
      }
      await this.store.batch([{ type: 'put', sublevel: 'images', key: name, value: record }])
      return record
    } catch (err) {
      await removeTree(tmp).catch((e: unknown) => log('removing %s: %o', tmp, e))
      if (renamed) await removeTree(final).catch((e: unknown) => log('removing %s: %o', final, e))
      if (err instanceof BerthError) throw err
      throw new ImageImportError(source, (err as Error).message, err)
    } finally {
      this.activeTmp.delete(tmp)
      this.busy.delete(name)
    }
  }

  async remove (name: string, opts: RemoveImageOptions = {}): Promise<void> {
    const record = await this.get(name)
    if (record.builtIn || name === HOST_IMAGE) throw new ImageBuiltinError(name)
    const inUse = opts.inUse ?? this.inUse
    if (inUse !== undefined && await inUse(name)) throw new ImageInUseError(name)
    this.claim(name)
    const tmp = join(this.imagesDir, tmpName())
    this.activeTmp.add(tmp)
    try {
      await this.store.batch([{ type: 'del', sublevel: 'images', key: name }])
      try {
        await rename(join(this.imagesDir, name), tmp)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
        throw err
      }
      await removeTree(tmp)
    } finally {
      this.activeTmp.delete(tmp)
      this.busy.delete(name)
    }
  }

  async cleanup (): Promise<CleanupResult> {
    const removed: string[] = []
    const missing: string[] = []
    await this.ensureDirs()
    const records = new Map((await this.list()).map(r => [r.name, r]))
    for (const entry of await readdir(this.imagesDir)) {
      const p = join(this.imagesDir, entry)
      if (this.activeTmp.has(p) || this.busy.has(entry)) continue
      const stale = entry.startsWith(TMP_PREFIX) || (!entry.startsWith('.') && !records.has(entry))
      if (!stale) {
        // images/NAME was 0755 in older versions: tightened too, in case images/ ever is not.
        await chmod(p, 0o700).catch((e: unknown) => log('chmod %s: %o', p, e))
        continue
      }
      try {
        await removeTree(p)
        removed.push(p)
        log('removed leftover %s', p)
      } catch (err) {
        log('cannot remove leftover %s: %o', p, err)
      }
    }
    for (const r of records.values()) {
      if (!r.builtIn && !await exists(r.rootfs)) missing.push(r.name)
    }
    return { removed, missing }
  }

  async ensureHostImage (): Promise<ImageRecord> {
    await this.ensureDirs()
    const plan = await planHostImage('/')
    const dir = join(this.imagesDir, HOST_IMAGE)
    const rootfs = join(dir, 'rootfs')
    const old = await this.store.images.get(HOST_IMAGE).catch(() => undefined)
    const oldFp = await this.store.meta.get(META_HOST_FINGERPRINT).catch(() => undefined)
    const have = await exists(join(rootfs, 'etc'))
    if (have && old !== undefined && old.rootfs === rootfs && oldFp === plan.fingerprint) {
      await writeSkeleton(rootfs, plan) // cheap; repairs a deleted mount point
      return old
    }
    const tmp = join(this.imagesDir, tmpName())
    this.activeTmp.add(tmp)
    try {
      await mkdir(tmp, { mode: 0o700 })
      if (!await exists(rootfs)) {
        // first time: build it all aside, then rename into place
        await mkdir(join(tmp, 'rootfs'), { mode: 0o755 })
        await writeSkeleton(join(tmp, 'rootfs'), plan)
        await writeEtc(join(tmp, 'rootfs', 'etc'), plan)
        await removeTree(dir).catch(() => {}) // a partial dir without rootfs
        await rename(tmp, dir)
      } else {
        // refresh: build the new etc aside and swap it in, so a container starting meanwhile
        // sees the old or the new /etc, never half of one
        await writeSkeleton(rootfs, plan)
        await writeEtc(join(tmp, 'etc'), plan)
        if (await exists(join(rootfs, 'etc'))) await rename(join(rootfs, 'etc'), join(tmp, 'etc.old'))
        await rename(join(tmp, 'etc'), join(rootfs, 'etc'))
        await removeTree(tmp)
      }
      const record: ImageRecord = {
        name: HOST_IMAGE,
        id: sha256(`host:${plan.fingerprint}`),
        rootfs,
        builtIn: true,
        source: 'host',
        format: 'host',
        createdAt: Date.now(),
        sizeBytes: await apparentSize(rootfs),
        layers: 0,
        binds: plan.binds,
        config: {
          env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
          cmd: ['/bin/sh'],
          workingDir: '/'
        }
      }
      await this.store.write(tx => {
        tx.put(this.store.images, HOST_IMAGE, record)
        tx.put(this.store.meta, META_HOST_FINGERPRINT, plan.fingerprint)
      })
      return record
    } finally {
      await removeTree(tmp).catch(() => {})
      this.activeTmp.delete(tmp)
    }
  }

  async start (): Promise<void> {
    if (this.started) return
    await this.cleanup()
    await this.ensureHostImage()
    this.started = true
  }

  async stop (): Promise<void> {
    this.started = false
  }
}

async function exists (p: string): Promise<boolean> {
  try {
    await lstat(p)
    return true
  } catch {
    return false
  }
}

export function createImageStore (init: ImageStoreInit): ImageStore {
  return new LocalImageStore(init)
}
