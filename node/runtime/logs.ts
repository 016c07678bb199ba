// Reading a container's framed log (docs/shim.md: 1 byte stream, 8 bytes ms timestamp LE,
// 4 bytes length LE, data). The shim writes whole records and rotates container.log to
// container.log.1 between records, so following means: read .1 if we have not seen it, then the
// live file, and when its inode changes drain the old fd before opening the new one.
import { open, stat, type FileHandle } from 'node:fs/promises'
import { watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'

export const STREAM_STDOUT = 1
export const STREAM_STDERR = 2
export const STREAM_STATUS = 3
export const FRAME_HEADER = 13

export function encodeFrame (stream: number, data: Buffer | string, ts = Date.now()): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data
  const head = Buffer.alloc(FRAME_HEADER)
  head.writeUInt8(stream, 0)
  head.writeBigUInt64LE(BigInt(ts), 1)
  head.writeUInt32LE(body.length, 9)
  return Buffer.concat([head, body])
}

export interface Frame { stream: number, ts: number, data: Buffer }

/** Incremental decoder: feed bytes, get whole frames. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0)
  push (chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const frames: Frame[] = []
    while (this.buf.length >= FRAME_HEADER) {
      const len = this.buf.readUInt32LE(9)
      if (this.buf.length < FRAME_HEADER + len) break
      frames.push({
        stream: this.buf.readUInt8(0),
        ts: Number(this.buf.readBigUInt64LE(1)),
        data: this.buf.subarray(FRAME_HEADER, FRAME_HEADER + len)
      })
      this.buf = this.buf.subarray(FRAME_HEADER + len)
    }
    return frames
  }
}

export interface FollowOptions {
  follow: boolean
  /** Resolves when the container has exited and its shim has written the last record. */
  done?: Promise<unknown>
  signal?: AbortSignal
}

/** Yields raw framed bytes of the container's log, oldest first. */
export async function * readLog (bundle: string, opts: FollowOptions): AsyncGenerator<Buffer> {
  const live = join(bundle, 'container.log')
  const old = join(bundle, 'container.log.1')
  yield * readWhole(old)
  if (!opts.follow) {
    yield * readWhole(live)
    return
  }
  let finished = false
  void opts.done?.then(() => { finished = true }, () => { finished = true })
  let wake: (() => void) | undefined
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(bundle, () => wake?.())
    watcher.on('error', () => {})
  } catch {}
  let fh: FileHandle | undefined
  let ino = -1
  try {
    for (;;) {
      if (opts.signal?.aborted === true) return
      const last = finished
      if (fh === undefined) {
        try {
          fh = await open(live, 'r')
          ino = (await fh.stat()).ino
        } catch { fh = undefined }
      }
      if (fh !== undefined) {
        yield * drain(fh)
        // Rotated? Then the old fd is drained (above) and the new file is opened next round.
        const now = await stat(live).catch(() => undefined)
        if (now !== undefined && now.ino !== ino) {
          yield * drain(fh)
          await fh.close()
          fh = undefined
          continue
        }
      }
      if (last) return
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, 250)
        wake = () => { clearTimeout(t); resolve() }
        void opts.done?.then(() => wake?.(), () => wake?.())
      })
      wake = undefined
    }
  } finally {
    watcher?.close()
    await fh?.close()
  }
}

async function * readWhole (path: string): AsyncGenerator<Buffer> {
  let fh: FileHandle
  try { fh = await open(path, 'r') } catch { return }
  try { yield * drain(fh) } finally { await fh.close() }
}

async function * drain (fh: FileHandle): AsyncGenerator<Buffer> {
  const buf = Buffer.alloc(64 * 1024)
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, null)
    if (bytesRead === 0) return
    yield Buffer.from(buf.subarray(0, bytesRead))
  }
}
