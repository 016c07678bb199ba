// A client of the local API (docs/api.md) for the CLI, tests and benchmarks.
import { request, type IncomingMessage } from 'node:http'
import { BerthError, berthError } from '../errors.ts'
import { FrameDecoder, type Frame } from '../runtime/logs.ts'

export { DEFAULT_SOCKET } from '../config.ts'

export class ApiClient {
  readonly socketPath: string
  constructor (socketPath: string) { this.socketPath = socketPath }

  /** Sends a request; resolves with the response once its headers are in. */
  private async send (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    return await new Promise((resolve, reject) => {
      const req = request({
        socketPath: this.socketPath,
        method,
        path,
        signal,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }
      }, resolve)
      req.on('error', (err: any) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'EACCES') {
          reject(berthError('BERTH_ERR_NO_DAEMON', `cannot reach berthd at ${this.socketPath} (${err.code})`,
            'start it with "berth up" (or npm start), or point --socket / BERTH_SOCKET at its socket', 125))
        } else {
          reject(err)
        }
      })
      req.end(payload)
    })
  }

  async json<T = any> (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.send(method, path, body, signal)
    const text = await readAll(res)
    if ((res.statusCode ?? 500) >= 400) throw errorFrom(text, res.statusCode)
    return (text === '' ? undefined : JSON.parse(text)) as T
  }

  /** A framed stream (logs, exec, attach): yields frames until the daemon ends the response. */
  async * frames (method: string, path: string, body?: unknown, signal?: AbortSignal): AsyncGenerator<Frame> {
    const res = await this.send(method, path, body, signal)
    if ((res.statusCode ?? 500) >= 400) throw errorFrom(await readAll(res), res.statusCode)
    const dec = new FrameDecoder()
    for await (const chunk of res) yield * dec.push(chunk as Buffer)
  }

  /** An ndjson stream (image import): yields parsed lines. */
  async * lines (method: string, path: string, body?: unknown): AsyncGenerator<any> {
    const res = await this.send(method, path, body)
    if ((res.statusCode ?? 500) >= 400) throw errorFrom(await readAll(res), res.statusCode)
    let buf = ''
    for await (const chunk of res) {
      buf += (chunk as Buffer).toString('utf8')
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (line.trim() !== '') yield JSON.parse(line)
      }
    }
  }
}

async function readAll (res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export function errorFrom (text: string, status?: number): BerthError {
  try {
    const e = JSON.parse(text).error
    // What the daemon refused is a daemon error (125) even when it is bad input the CLI could not
    // check itself (an unknown service); 126/127 (exec) pass through.
    if (e?.code !== undefined) return new BerthError(e.code, e.message, { hint: e.hint, exitCode: e.exitCode === 2 ? 125 : e.exitCode })
  } catch {}
  return berthError('BERTH_ERR_API', `berthd answered ${status ?? '?'}: ${text.slice(0, 200)}`, 'see the daemon log')
}
