// The shape of a CLI command: a module with its name, options, help and a handler that returns
// data; main.ts parses, calls it and renders the result (a table for people, --json for scripts).
import type { ApiClient } from '../api/client.ts'
import type { OptionSpec } from './args.ts'

export interface Context {
  command: string
  args: string[]
  opts: Record<string, string | boolean | string[] | undefined>
  /** The daemon socket: --socket, else $BERTH_SOCKET, else the default. */
  socketPath: string
  client: ApiClient
}

export interface Result {
  /** What a person sees. */
  text?: string
  /** What --json prints. */
  data?: unknown
  exitCode?: number
  /** An error already reported by the daemon (e.g. inside an exec stream). */
  error?: { code: string, message: string, hint: string }
}

export interface Command {
  name: string
  usage: string
  summary: string
  options: OptionSpec[]
  /** Options stop at the first positional: the rest is a command line for the container. */
  passThrough?: boolean
  handler: (ctx: Context) => Promise<Result>
}
