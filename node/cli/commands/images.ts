// berth image import | ls | rm
import { resolve } from 'node:path'
import { UsageError } from '../../errors.ts'
import { errorFrom } from '../../api/client.ts'
import { formatSize } from '../../units.ts'
import type { Command } from '../command.ts'
import { ago, table } from '../render.ts'

export const imageImport: Command = {
  name: 'image import',
  usage: 'berth image import NAME SOURCE',
  summary: 'Import an image from a directory, a .tar, a .tar.gz, an OCI layout tarball or a docker save tarball',
  options: [],
  async handler (ctx) {
    if (ctx.args.length !== 2) throw new UsageError('BERTH_ERR_USAGE', 'berth image import takes NAME and SOURCE', 'berth image import NAME SOURCE')
    const [name, source] = ctx.args
    const tty = process.stderr.isTTY
    let lastLine = 0
    let image: any
    for await (const msg of ctx.client.lines('POST', '/v1/images', { name, source: resolve(source) })) {
      if (msg.progress !== undefined) {
        const p = msg.progress
        const pct = p.bytesTotal > 0 ? ` ${Math.floor(100 * p.bytesDone / p.bytesTotal)}%` : ''
        const text = `${p.phase as string}: ${formatSize(p.bytesDone)}${p.bytesTotal > 0 ? ` of ${formatSize(p.bytesTotal)}` : ''}${pct}`
        // On a terminal the line is redrawn in place; elsewhere a line every few seconds.
        if (tty) process.stderr.write(`\r\x1b[K${text}`)
        else if (Date.now() - lastLine > 2000) { process.stderr.write(text + '\n'); lastLine = Date.now() }
      } else if (msg.error !== undefined) {
        if (tty) process.stderr.write('\r\x1b[K')
        throw errorFrom(JSON.stringify({ error: msg.error }))
      } else if (msg.image !== undefined) {
        image = msg.image
      }
    }
    if (tty) process.stderr.write('\r\x1b[K')
    if (image === undefined) throw new UsageError('BERTH_ERR_DETACHED', 'lost the connection to berthd during the import', 'berth image ls shows whether it landed')
    return { text: `${image.name as string} ${(image.id as string).slice(0, 12)} ${formatSize(image.sizeBytes)}`, data: image }
  }
}

export const imageLs: Command = {
  name: 'image ls',
  usage: 'berth image ls [--json]',
  summary: 'List images',
  options: [{ name: 'json', help: 'print JSON' }],
  async handler (ctx) {
    const list: any[] = await ctx.client.json('GET', '/v1/images')
    return {
      data: list,
      text: table(['NAME', 'ID', 'FORMAT', 'SIZE', 'CREATED'], list.map(i => [
        i.name, (i.id as string).slice(0, 12), i.builtIn === true ? 'built-in' : i.format, i.builtIn === true ? '-' : formatSize(i.sizeBytes), ago(i.createdAt)
      ]))
    }
  }
}

export const imageRm: Command = {
  name: 'image rm',
  usage: 'berth image rm NAME',
  summary: 'Remove an image no container uses',
  options: [],
  async handler (ctx) {
    if (ctx.args.length !== 1) throw new UsageError('BERTH_ERR_USAGE', 'berth image rm takes one NAME', 'berth image rm NAME')
    await ctx.client.json('DELETE', `/v1/images/${encodeURIComponent(ctx.args[0])}`)
    return { text: ctx.args[0] }
  }
}
