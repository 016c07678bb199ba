// Just enough of the tar format to find things without extracting: the members of an OCI or
// docker archive (and where their bytes are, so a layer blob can be streamed straight from the
// archive file), and the member names of a layer (for the whiteout pre-pass).
// Extraction itself is always GNU tar's job.
//
// Handles ustar (name + prefix), GNU long names/links ('L'/'K'), pax extended headers ('x':
// path, linkpath, size) and base-256 sizes. Global pax headers ('g') are skipped.

import { open } from 'node:fs/promises'

export const BLOCK = 512

export interface TarEntry {
  /** normalized: no leading `/` or `./`, no trailing `/`; '' is the archive's root dir */
  name: string
  /** the typeflag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo… */
  type: string
  size: number
  linkname: string
  /** offset of the member's data in the (uncompressed) archive */
  dataOffset: number
}

export class TarFormatError extends Error {}

function cstr (buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start)
  return buf.toString('utf8', start, end === -1 || end > start + len ? start + len : end)
}

function octal (buf: Buffer, start: number, len: number): number {
  if ((buf[start]! & 0x80) !== 0) {
    // base-256 (GNU): big-endian, high bit of the first byte is the marker
    let n = buf[start]! & 0x7f
    for (let i = 1; i < len; i++) n = n * 256 + buf[start + i]!
    return n
  }
  const s = cstr(buf, start, len).trim()
  if (s === '') return 0
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`bad octal field ${JSON.stringify(s)}`)
  return parseInt(s, 8)
}

/** True if `block` is a tar header with a valid checksum. */
export function isTarHeader (block: Buffer): boolean {
  if (block.length < BLOCK) return false
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += (i >= 148 && i < 156) ? 0x20 : block[i]!
  if (sum === 0x20 * 8) return false // all zero
  try {
    return octal(block, 148, 8) === sum
  } catch {
    return false
  }
}

export function normalizeName (name: string): string {
  let n = name
  while (n.startsWith('/')) n = n.slice(1)
  while (n.startsWith('./')) n = n.slice(2)
  if (n === '.') n = ''
  while (n.endsWith('/')) n = n.slice(0, -1)
  return n
}

interface RawHeader { name: string; type: string; size: number; linkname: string }

function parseRaw (block: Buffer): RawHeader {
  if (!isTarHeader(block)) throw new TarFormatError('bad tar header checksum')
  let name = cstr(block, 0, 100)
  const magic = block.toString('latin1', 257, 262)
  if (magic === 'ustar' && block.toString('latin1', 257, 263) === 'ustar\0') {
    const prefix = cstr(block, 345, 155)
    if (prefix !== '') name = `${prefix}/${name}`
  }
  const t = String.fromCharCode(block[156]!)
  return { name, type: t === '\0' ? '0' : t, size: octal(block, 124, 12), linkname: cstr(block, 157, 100) }
}

function parsePax (data: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let i = 0
  while (i < data.length) {
    const sp = data.indexOf(0x20, i)
    if (sp === -1) break
    const len = parseInt(data.toString('latin1', i, sp), 10)
    if (!Number.isFinite(len) || len <= 0) throw new TarFormatError('bad pax record')
    const rec = data.toString('utf8', sp + 1, i + len - 1)
    const eq = rec.indexOf('=')
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1)
    i += len
  }
  return out
}

const pad = (n: number): number => Math.ceil(n / BLOCK) * BLOCK

/**
 * The header state machine, shared by the file indexer and the stream lister: feed it each
 * header (and, for meta entries, their data); it yields real entries.
 */
class HeaderState {
  longName: string | undefined
  longLink: string | undefined
  pax: Record<string, string> = {}

  /** true if this header is a meta entry whose data must be fed to `meta()` */
  isMeta (h: RawHeader): boolean {
    return h.type === 'L' || h.type === 'K' || h.type === 'x' || h.type === 'g'
  }

  meta (h: RawHeader, data: Buffer): void {
    if (h.type === 'L') this.longName = cstr(data, 0, data.length)
    else if (h.type === 'K') this.longLink = cstr(data, 0, data.length)
    else if (h.type === 'x') this.pax = { ...this.pax, ...parsePax(data) }
  }

  entry (h: RawHeader, dataOffset: number): TarEntry {
    const name = this.pax.path ?? this.longName ?? h.name
    const linkname = this.pax.linkpath ?? this.longLink ?? h.linkname
    const size = this.pax.size !== undefined ? Number(this.pax.size) : h.size
    this.longName = this.longLink = undefined
    this.pax = {}
    return { name: normalizeName(name), type: h.type, size, linkname, dataOffset }
  }
}

/** Lists the members of an uncompressed tar file, reading headers only (seeks over data). */
export async function indexTarFile (path: string): Promise<TarEntry[]> {
  const fh = await open(path, 'r')
  try {
    const { size: fileSize } = await fh.stat()
    const entries: TarEntry[] = []
    const st = new HeaderState()
    const block = Buffer.alloc(BLOCK)
    let pos = 0
    for (;;) {
      const { bytesRead } = await fh.read(block, 0, BLOCK, pos)
      if (bytesRead === 0) break // no end-of-archive blocks: tolerated, like GNU tar
      if (bytesRead < BLOCK) throw new TarFormatError('truncated tar header')
      if (block.every(b => b === 0)) break
      const h = parseRaw(block)
      const dataOffset = pos + BLOCK
      if (dataOffset + h.size > fileSize) throw new TarFormatError(`truncated tar member ${h.name}`)
      if (st.isMeta(h)) {
        if (h.size > 1 << 20) throw new TarFormatError('oversized tar extended header')
        const data = Buffer.alloc(h.size)
        await fh.read(data, 0, h.size, dataOffset)
        st.meta(h, data)
      } else {
        entries.push(st.entry(h, dataOffset))
      }
      pos = dataOffset + pad(h.size)
    }
    return entries
  } finally {
    await fh.close()
  }
}

/** Lists the members of a tar stream (already decompressed). Consumes the whole stream. */
export async function listTarStream (source: AsyncIterable<Buffer>, onEntry: (e: TarEntry) => void): Promise<void> {
  const st = new HeaderState()
  let buf: Buffer = Buffer.alloc(0)
  let pos = 0 // stream offset of buf[0]
  let skip = 0 // data bytes still to skip
  let meta: { h: RawHeader; need: number } | undefined
  let done = false
  for await (const chunk of source) {
    if (done) continue // drain the padding after the end-of-archive marker
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length)
        buf = buf.subarray(n); pos += n; skip -= n
        if (skip > 0) break
      }
      if (meta !== undefined) {
        if (buf.length < meta.need) break
        st.meta(meta.h, buf.subarray(0, meta.h.size))
        buf = buf.subarray(meta.need); pos += meta.need
        meta = undefined
      }
      if (buf.length < BLOCK) break
      const block = buf.subarray(0, BLOCK)
      buf = buf.subarray(BLOCK); pos += BLOCK
      if (block.every(b => b === 0)) { done = true; break }
      const h = parseRaw(Buffer.from(block))
      if (st.isMeta(h)) {
        if (h.size > 1 << 20) throw new TarFormatError('oversized tar extended header')
        meta = { h, need: pad(h.size) }
      } else {
        onEntry(st.entry(h, pos))
        skip = pad(h.size)
      }
    }
  }
  if (!done && (skip > 0 || meta !== undefined || buf.length > 0)) throw new TarFormatError('truncated tar stream')
}
