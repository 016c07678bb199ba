// The local API (docs/api.md): HTTP/1.1 over a Unix socket, mode 0600. Handlers validate the
// request, call the runtime or the image store, and return JSON or a framed stream.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { chmod, mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { ImageStore } from '../../storage/index.ts'
import { BerthError, berthError, httpStatus, NotFoundError, UsageError } from '../errors.ts'
import { logger } from '../log.ts'
import type { Runtime, RunSpec } from '../runtime/runtime.ts'
import type { ProxyController } from '../proxy/controller.ts'
import type { ClusterNode } from '../../cluster/index.ts'
import { encodeFrame, STREAM_STATUS, STREAM_STDERR, STREAM_STDOUT } from '../runtime/logs.ts'
import { parseSignal } from '../units.ts'
import { containerView, imageView, validateRunSpec } from './views.ts'

const log = logger('berth:node:api')
const MAX_BODY_BYTES = 1024 * 1024

export interface ApiComponents {
  runtime: Runtime
  images: ImageStore
  proxy: ProxyController
  cluster: ClusterNode
  info: () => Record<string, unknown>
}

export interface ApiInit { socketPath: string }

type Handler = (req: IncomingMessage, res: ServerResponse, params: string[], query: URLSearchParams) => Promise<void>

export class ApiServer {
  private readonly components: ApiComponents
  private readonly socketPath: string
  private server?: Server
  private readonly routes: Array<{ method: string, re: RegExp, handler: Handler }> = []
  /** open `GET /v1/kv?watch=1` streams, ended on stop */
  private readonly watches = new Set<ServerResponse>()

  constructor (components: ApiComponents, init: ApiInit) {
    this.components = components
    this.socketPath = init.socketPath
    const name = '([^/]+)'
    this.route('GET', '/v1/info', async (_q, res) => sendJson(res, 200, this.components.info()))
    this.route('GET', '/v1/containers', async (_q, res, _p, query) =>
      sendJson(res, 200, this.components.runtime.list(flag(query, 'all')).map(containerView)))
    this.route('POST', '/v1/containers', async (req, res, _p, query) => {
      const spec: RunSpec = validateRunSpec(await readJson(req))
      if (!flag(query, 'attach')) {
        sendJson(res, 201, containerView(await this.components.runtime.run(spec)))
        return
      }
      // Attached (berth run without -d): one response carries the container's view, its
      // output as it comes, and its exit status; an auto-removed container waits for us.
      const runtime = this.components.runtime
      const rec = await runtime.run(spec, { hold: true })
      try {
        const ac = abortOnClose(req, res)
        res.writeHead(200, { 'content-type': 'application/vnd.berth.frames' })
        res.write(encodeFrame(STREAM_STATUS, JSON.stringify({ container: containerView(rec) })))
        const exited = runtime.wait(rec.id, ac.signal)
        for await (const chunk of runtime.logs(rec.id, true, ac.signal)) {
          if (!res.write(chunk)) await new Promise(resolve => res.once('drain', resolve))
        }
        res.end(encodeFrame(STREAM_STATUS, JSON.stringify({ exit: await exited })))
      } finally {
        runtime.release(rec.id)
      }
    })
    this.route('GET', `/v1/containers/${name}`, async (_q, res, [ref]) =>
      sendJson(res, 200, containerView(this.components.runtime.get(ref))))
    this.route('GET', `/v1/containers/${name}/wait`, async (req, res, [ref]) => {
      const ac = abortOnClose(req, res)
      sendJson(res, 200, await this.components.runtime.wait(ref, ac.signal))
    })
    this.route('POST', `/v1/containers/${name}/stop`, async (_q, res, [ref], query) => {
      const t = query.get('t')
      const seconds = t === null ? 10 : Number(t)
      if (!Number.isFinite(seconds) || seconds < 0) throw new UsageError('BERTH_ERR_BAD_TIMEOUT', `bad timeout "${t}"`, 'use a number of seconds, e.g. -t 10')
      sendJson(res, 200, containerView(await this.components.runtime.stopContainer(ref, seconds * 1000)))
    })
    this.route('POST', `/v1/containers/${name}/kill`, async (_q, res, [ref], query) => {
      const signo = parseSignal(query.get('signal') ?? 'SIGKILL')
      sendJson(res, 200, containerView(await this.components.runtime.kill(ref, signo)))
    })
    this.route('DELETE', `/v1/containers/${name}`, async (_q, res, [ref], query) => {
      await this.components.runtime.remove(ref, flag(query, 'force'))
      res.writeHead(204).end()
    })
    this.route('GET', `/v1/containers/${name}/logs`, async (req, res, [ref], query) => {
      const ac = abortOnClose(req, res)
      const frames = this.components.runtime.logs(ref, flag(query, 'follow'), ac.signal)
      res.writeHead(200, { 'content-type': 'application/vnd.berth.frames' })
      for await (const chunk of frames) {
        if (!res.write(chunk)) await new Promise(resolve => res.once('drain', resolve))
      }
      res.end()
    })
    this.route('POST', `/v1/containers/${name}/exec`, async (req, res, [ref]) => {
      const body = await readJson(req)
      const command = stringArray(body.command, 'command')
      const env = body.env === undefined ? [] : stringArray(body.env, 'env')
      const child = this.components.runtime.exec(ref, command, env)
      res.writeHead(200, { 'content-type': 'application/vnd.berth.frames' })
      const report: Buffer[] = []
      child.stdin?.end()
      child.stdout?.on('data', (b: Buffer) => res.write(encodeFrame(STREAM_STDOUT, b)))
      child.stderr?.on('data', (b: Buffer) => res.write(encodeFrame(STREAM_STDERR, b)))
      const fd3 = child.stdio[3] as NodeJS.ReadableStream | null
      fd3?.on('data', (b: Buffer) => report.push(b))
      res.on('close', () => { if (child.exitCode === null) child.kill('SIGKILL') })
      const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.once('close', (c, s) => resolve([c, s])))
      let status: Record<string, unknown> = { exitCode: code ?? 128 + (sig != null ? 9 : 0) }
      const text = Buffer.concat(report).toString().trim()
      if (text !== '') {
        try { status = { ...status, error: JSON.parse(text) } } catch {}
      }
      res.end(encodeFrame(STREAM_STATUS, JSON.stringify(status)))
    })
    this.route('GET', '/v1/nodes', async (_q, res) => {
      const cluster = this.components.cluster
      const stats = cluster.stats()
      sendJson(res, 200, {
        self: cluster.id,
        digest: cluster.digest(),
        dropped: stats.dropped,
        // protocol messages by type, and membership counters (probes, suspicions raised,
        // refutations): what the benchmark turns into messages/s and false suspicions
        sent: stats.sent,
        received: stats.received,
        membership: stats.membership,
        members: cluster.members().map(m => ({
          name: m.name,
          peerId: m.id,
          address: hostPort(m.addrs[0] ?? ''),
          addrs: m.addrs,
          status: m.status,
          incarnation: m.incarnation,
          capacity: m.capacity,
          usage: m.usage,
          labels: m.labels,
          version: m.version,
          self: m.self
        }))
      })
    })
    this.route('GET', '/v1/kv', async (req, res, _p, query) => {
      const prefix = query.get('prefix') ?? ''
      if (!flag(query, 'watch')) return sendJson(res, 200, this.components.cluster.kv.list(prefix))
      // Every change under the prefix from now on, a JSON line each, until the client goes away
      // (or the daemon stops: the stream then ends).
      const ac = abortOnClose(req, res)
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write(JSON.stringify({ watching: prefix }) + '\n')
      const off = this.components.cluster.kv.watch(prefix, e => {
        res.write(JSON.stringify({ key: e.key, value: e.deleted ? undefined : e.value, deleted: e.deleted, writer: e.writer, version: e.version }) + '\n')
      })
      this.watches.add(res)
      await new Promise(resolve => { ac.signal.addEventListener('abort', resolve, { once: true }); res.once('close', resolve) })
      this.watches.delete(res)
      off()
      res.end()
    })
    this.route('GET', '/v1/kv/(.+)', async (_q, res, [key]) => {
      const value = this.components.cluster.kv.get(key)
      if (value === undefined) throw new NotFoundError('BERTH_ERR_KEY_NOT_FOUND', `no key "${key}"`, 'berth kv ls lists the keys')
      sendJson(res, 200, { key, value })
    })
    this.route('PUT', '/v1/kv/(.+)', async (req, res, [key]) => {
      const body = await readJson(req)
      if (typeof body.value !== 'string') throw new UsageError('BERTH_ERR_BAD_REQUEST', '"value" must be a string', 'berth kv set KEY VALUE')
      await this.components.cluster.kv.set(key, body.value)
      sendJson(res, 200, { key, value: body.value })
    })
    this.route('DELETE', '/v1/kv/(.+)', async (_q, res, [key]) => {
      if (this.components.cluster.kv.get(key) === undefined) throw new NotFoundError('BERTH_ERR_KEY_NOT_FOUND', `no key "${key}"`, 'berth kv ls lists the keys')
      await this.components.cluster.kv.delete(key)
      res.writeHead(204).end()
    })
    this.route('GET', '/v1/ports', async (_q, res) => sendJson(res, 200, this.components.proxy.listPorts()))
    this.route('GET', '/v1/chaos', async (_q, res) => sendJson(res, 200, this.components.proxy.listChaos()))
    this.route('GET', '/v1/calls', async (_q, res, _p, query) => sendJson(res, 200, this.components.proxy.listCalls(query.get('workload') ?? undefined)))
    this.route('POST', '/v1/chaos', async (req, res) => {
      const b = await readJson(req)
      for (const k of ['workload', 'call', 'target', 'errno', 'delay', 'for']) {
        if (b[k] !== undefined && typeof b[k] !== 'string') throw new UsageError('BERTH_ERR_BAD_REQUEST', `"${k}" must be a string`, 'see docs/api.md')
      }
      if (b.probability !== undefined && typeof b.probability !== 'number' && typeof b.probability !== 'string') {
        throw new UsageError('BERTH_ERR_BAD_REQUEST', '"probability" must be a number', 'see docs/api.md')
      }
      sendJson(res, 201, await this.components.proxy.addChaos(b))
    })
    this.route('DELETE', `/v1/chaos/${name}`, async (_q, res, [id]) => {
      await this.components.proxy.removeChaos(id)
      res.writeHead(204).end()
    })
    this.route('GET', '/v1/images', async (_q, res) =>
      sendJson(res, 200, (await this.components.images.list()).map(imageView)))
    this.route('POST', '/v1/images', async (req, res) => {
      const body = await readJson(req)
      if (typeof body.name !== 'string' || typeof body.source !== 'string') {
        throw new UsageError('BERTH_ERR_BAD_REQUEST', 'an image import needs "name" and "source"', 'berth image import NAME SOURCE')
      }
      const ac = abortOnClose(req, res)
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      try {
        const image = await this.components.images.import(body.name, body.source, {
          signal: ac.signal,
          onProgress: (p: unknown) => res.write(JSON.stringify({ progress: p }) + '\n')
        })
        res.end(JSON.stringify({ image: imageView(image) }) + '\n')
      } catch (err) {
        res.end(JSON.stringify({ error: errorBody(err) }) + '\n')
      }
    })
    this.route('DELETE', `/v1/images/${name}`, async (_q, res, [ref]) => {
      await this.components.images.remove(ref, {
        inUse: (image: string) => this.components.runtime.list(true).some(c => c.image === image)
      })
      res.writeHead(204).end()
    })
  }

  private route (method: string, path: string, handler: Handler): void {
    this.routes.push({ method, re: new RegExp(`^${path}$`), handler })
  }

  async start (): Promise<void> {
    if (this.server !== undefined) return
    await mkdir(dirname(this.socketPath), { recursive: true, mode: 0o755 })
    if (await socketAnswers(this.socketPath)) {
      throw berthError('BERTH_ERR_DAEMON_RUNNING', `another berthd is listening on ${this.socketPath}`, 'stop it first, or give this one another --socket and --data-dir')
    }
    await rm(this.socketPath, { force: true })
    const server = createServer((req, res) => { this.dispatch(req, res) })
    server.keepAliveTimeout = 5000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // Created with a umask so the socket is never briefly open to others; chmod makes it exact.
      const old = process.umask(0o177)
      server.listen(this.socketPath, () => { process.umask(old); resolve() })
    })
    await chmod(this.socketPath, 0o600)
    this.server = server
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    // open watches end cleanly (their clients see the stream end, not a reset)
    for (const res of this.watches) res.end()
    await new Promise(resolve => setImmediate(resolve))
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
    await rm(this.socketPath, { force: true })
  }

  private dispatch (req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://berth')
    const handle = async (): Promise<void> => {
      let pathMatched = false
      for (const r of this.routes) {
        const m = r.re.exec(url.pathname)
        if (m == null) continue
        pathMatched = true
        if (r.method !== req.method) continue
        await r.handler(req, res, m.slice(1).map(decodeURIComponent), url.searchParams)
        return
      }
      if (pathMatched) throw berthError('BERTH_ERR_BAD_METHOD', `${req.method ?? ''} is not allowed on ${url.pathname}`, 'see docs/api.md')
      throw new NotFoundError('BERTH_ERR_NO_ROUTE', `no API route ${url.pathname}`, 'see docs/api.md')
    }
    handle().catch(err => {
      if (!(err instanceof BerthError)) log.error(err)
      if (res.headersSent) { res.destroy(); return }
      const status = httpStatus(err)
      sendJson(res, status, { error: errorBody(err) })
    })
  }
}

/** `/ip4/10.0.0.1/tcp/7946/p2p/…` → `10.0.0.1:7946` (the multiaddr stays in `addrs`). */
function hostPort (multiaddr: string): string {
  const m = /^\/ip([46])\/([^/]+)\/tcp\/([0-9]+)/.exec(multiaddr)
  if (m == null) return multiaddr
  return m[1] === '6' ? `[${m[2]}]:${m[3]}` : `${m[2]}:${m[3]}`
}

export function errorBody (err: any): { code: string, message: string, hint: string, exitCode?: number } {
  if (err instanceof BerthError) return { code: err.code, message: err.message, hint: err.hint ?? '', exitCode: err.exitCode }
  return { code: 'BERTH_ERR_INTERNAL', message: String(err?.message ?? err), hint: 'see the daemon log (berthd stderr)' }
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readJson (req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES) throw new UsageError('BERTH_ERR_BODY_TOO_LARGE', 'request body over 1 MiB', 'send less')
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return {}
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object')
    return v
  } catch {
    throw new UsageError('BERTH_ERR_BAD_REQUEST', 'the request body is not a JSON object', 'see docs/api.md')
  }
}

export function stringArray (v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) {
    throw new UsageError('BERTH_ERR_BAD_REQUEST', `"${what}" must be an array of strings`, 'see docs/api.md')
  }
  return v
}

function flag (q: URLSearchParams, name: string): boolean {
  const v = q.get(name)
  return v !== null && v !== '0' && v !== 'false'
}

function abortOnClose (req: IncomingMessage, res: ServerResponse): AbortController {
  const ac = new AbortController()
  res.on('close', () => { if (!res.writableFinished) ac.abort() })
  req.on('error', () => ac.abort())
  return ac
}

/** True when something accepts connections on the socket (a live daemon). */
export async function socketAnswers (path: string): Promise<boolean> {
  return await new Promise(resolve => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}
