// Loopback ports for the benchmark's host-side servers: a free one to listen on, and a wait until
// a server accepts connections.
import net from 'node:net'
import { BenchError, ERR_BENCH_RUN } from './errors.ts'
import { sleep } from './proc.ts'

/**
 * A TCP port that is free on 127.0.0.1 right now (the kernel's pick for port 0, from the
 * ephemeral range, so clear of berthd's port range). Another process may take it before the
 * caller listens on it; waitForPort() then fails clearly rather than measuring a stranger.
 */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

function tryConnect (host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, timeout: timeoutMs })
    const done = (ok: boolean): void => { sock.destroy(); resolve(ok) }
    sock.once('connect', () => { done(true) })
    sock.once('timeout', () => { done(false) })
    sock.once('error', () => { done(false) })
  })
}

/** Resolves once HOST:PORT accepts a TCP connection; rejects after timeoutMs, naming WHAT. */
export async function waitForPort (host: string, port: number, timeoutMs: number, what: string): Promise<void> {
  const t0 = performance.now()
  while (!(await tryConnect(host, port, 1000))) {
    if (performance.now() - t0 > timeoutMs) {
      throw new BenchError(ERR_BENCH_RUN, `${what} did not accept connections on ${host}:${port} within ${timeoutMs} ms`,
        'is the port taken by something else? run the command by hand to see why')
    }
    await sleep(50)
  }
}
