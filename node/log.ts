// One logger per component, named by path (`berth:node:runtime`). Debug lines appear when
// BERTH_DEBUG matches the name (`BERTH_DEBUG=berth:*` or a comma list of prefixes); errors and
// info lines always do. Lines go to stderr with an ISO timestamp, so journald and files both work.
import { format } from 'node:util'

export interface Logger {
  (fmt: string, ...args: unknown[]): void
  info (fmt: string, ...args: unknown[]): void
  error (fmt: string | Error, ...args: unknown[]): void
  enabled: boolean
}

function enabledFor (name: string): boolean {
  const spec = process.env.BERTH_DEBUG ?? ''
  return spec.split(',').map(s => s.trim()).filter(s => s !== '').some(p =>
    p === '*' || p === name || (p.endsWith('*') && name.startsWith(p.slice(0, -1))))
}

function write (level: string, name: string, fmt: string | Error, args: unknown[]): void {
  const text = fmt instanceof Error ? format('%s', fmt.stack ?? fmt.message) : format(fmt, ...args)
  process.stderr.write(`${new Date().toISOString()} ${level} ${name} ${text}\n`)
}

export function logger (name: string): Logger {
  const enabled = enabledFor(name)
  const log = ((fmt: string, ...args: unknown[]) => { if (enabled) write('debug', name, fmt, args) }) as Logger
  log.info = (fmt, ...args) => write('info', name, fmt, args)
  log.error = (fmt, ...args) => write('error', name, fmt, args)
  log.enabled = enabled
  return log
}
