// A minimal client for berthd's HTTP-over-Unix-socket API (docs/api.md). Every request opens its
// own connection (`agent: false`, so no keep-alive pool): that is what a CLI invocation or a
// script pays, and it keeps one slow request from queueing behind another.
import http from 'node:http'
import { BenchError, ERR_BENCH_DAEMON, ERR_BENCH_RUN } from './errors.ts'

export interface ApiResponse {
  status: number
  contentType: string
  body: string
}

export interface ApiErrorBody {
  code: string
  message: string
  hint?: string
}

export interface RequestOptions {
  body?: unknown
  /** Per-request bound; the request is aborted past it. */
  timeoutMs?: number
}

export interface ApiClient {
  readonly socketPath: string
  /** The raw answer, whatever its status. Rejects only when no answer came (connect, timeout). */
  raw: (method: string, path: string, opts?: RequestOptions) => Promise<ApiResponse>
  /** The JSON answer of a 2xx; any other status rejects with a BenchError carrying the API's code. */
  json: <T>(method: string, path: string, opts?: RequestOptions) => Promise<T>
  /** POST /v1/images-style NDJSON answers: resolves with the parsed lines. */
  ndjson: (method: string, path: string, opts?: RequestOptions) => Promise<unknown[]>
}

export interface ApiClientInit {
  /** Default per-request bound. */
  timeoutMs?: number
}

const DEFAULT_TIMEOUT_MS = 30_000

export function createApiClient (socketPath: string, init: ApiClientInit = {}): ApiClient {
  const defaultTimeoutMs = init.timeoutMs ?? DEFAULT_TIMEOUT_MS

  function raw (method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const timeoutMs = opts.timeoutMs ?? defaultTimeoutMs
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body))
    const headers: Record<string, string | number> = {}
    if (payload !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = payload.length
    }
    return new Promise((resolve, reject) => {
      const req = http.request({
        socketPath,
        method,
        path,
        headers,
        agent: false,
        signal: AbortSignal.timeout(timeoutMs)
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', reject)
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            body: Buffer.concat(chunks).toString('utf8')
          })
        })
      })
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError' || err.name === 'TimeoutError') {
          reject(new BenchError(ERR_BENCH_DAEMON, `${method} ${path}: no answer within ${timeoutMs} ms`,
            'the daemon is stuck or overloaded; see its log above', { cause: err }))
        } else {
          reject(new BenchError(ERR_BENCH_DAEMON, `${method} ${path} on ${socketPath}: ${err.message}`,
            'is berthd running on that socket?', { cause: err }))
        }
      })
      req.end(payload)
    })
  }

  function failure (method: string, path: string, res: ApiResponse): ApiError {
    const e = parseErrorBody(res.body)
    const what = e === undefined ? res.body.slice(0, 200) : `${e.code}: ${e.message}`
    return new ApiError(res.status, e?.code, `${method} ${path}: HTTP ${res.status}: ${what}`,
      e?.hint ?? 'see the daemon log')
  }

  async function json<T> (method: string, path: string, opts?: RequestOptions): Promise<T> {
    const res = await raw(method, path, opts)
    if (res.status < 200 || res.status >= 300) throw failure(method, path, res)
    if (res.body === '') return undefined as T
    try {
      return JSON.parse(res.body) as T
    } catch (err) {
      throw new BenchError(ERR_BENCH_RUN, `${method} ${path}: answer is not JSON: ${res.body.slice(0, 200)}`,
        'the daemon does not follow docs/api.md', { cause: err })
    }
  }

  async function ndjson (method: string, path: string, opts?: RequestOptions): Promise<unknown[]> {
    const res = await raw(method, path, opts)
    if (res.status < 200 || res.status >= 300) throw failure(method, path, res)
    const out: unknown[] = []
    for (const line of res.body.split('\n')) {
      if (line.trim() === '') continue
      try {
        out.push(JSON.parse(line))
      } catch (err) {
        throw new BenchError(ERR_BENCH_RUN, `${method} ${path}: bad NDJSON line: ${line.slice(0, 200)}`,
          'the daemon does not follow docs/api.md', { cause: err })
      }
    }
    return out
  }

  return { socketPath, raw, json, ndjson }
}

/** A non-2xx answer: the HTTP status and the API's own error code (docs/api.md), when it sent one. */
export class ApiError extends BenchError {
  readonly status: number
  readonly apiCode: string | undefined

  constructor (status: number, apiCode: string | undefined, message: string, hint: string) {
    super(ERR_BENCH_RUN, message, hint)
    this.name = 'ApiError'
    this.status = status
    this.apiCode = apiCode
  }
}

function parseErrorBody (body: string): ApiErrorBody | undefined {
  try {
    const v = JSON.parse(body) as { error?: ApiErrorBody }
    return typeof v?.error?.code === 'string' ? v.error : undefined
  } catch {
    return undefined
  }
}
