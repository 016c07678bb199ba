#!/usr/bin/env node
// The berth CLI. Parses flags, calls one command module, renders its result, and maps errors to
// exit codes: 2 for usage errors, 125 for daemon/runtime errors, the container's own code for
// `run` and `exec` (126/127 when the command cannot be executed).
import { ApiClient } from '../api/client.ts'
import { clientSocket } from '../config.ts'
import { BerthError, UsageError } from '../errors.ts'
import { VERSION } from '../daemon.ts'
import { optionsHelp, parseArgs, type OptionSpec } from './args.ts'
import type { Command, Result } from './command.ts'
import { exec, inspect, kill, logs, ps, rm, run, stop } from './commands/containers.ts'
import { imageImport, imageLs, imageRm } from './commands/images.ts'
import { up } from './commands/up.ts'
import { calls, chaosAdd, chaosLs, chaosRm, portLs } from './commands/proxy.ts'
import { clusterInit, kvGet, kvLs, kvRm, kvSet, kvWatch, nodes } from './commands/fleet.ts'

const COMMANDS: Command[] = [up, run, ps, logs, inspect, stop, kill, rm, exec, imageImport, imageLs, imageRm, portLs, calls, chaosAdd, chaosLs, chaosRm, clusterInit, nodes, kvSet, kvGet, kvLs, kvWatch, kvRm]

const GLOBAL: OptionSpec[] = [
  { name: 'socket', value: 'PATH', help: 'daemon socket (default $BERTH_SOCKET, else /run/berth/berth.sock)' },
  { name: 'help', short: 'h', help: 'show help' },
  { name: 'version', short: 'v', help: 'print the version' }
]

function mainHelp (): string {
  const w = Math.max(...COMMANDS.map(c => c.name.length))
  return [
    'berth — system containers on a fleet with no control plane',
    '',
    'Usage: berth [--socket PATH] COMMAND [ARGS...]',
    '',
    'Commands:',
    ...COMMANDS.map(c => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Global flags:',
    optionsHelp(GLOBAL),
    '',
    'Exit codes: 0 ok; 2 usage error; 125 daemon or runtime error; run/exec: the command\'s own code',
    '(126 not executable, 127 not found, 128+N killed by signal N, 137 after an OOM kill).',
    'Run "berth COMMAND --help" for a command\'s flags.'
  ].join('\n')
}

function commandHelp (c: Command): string {
  return [`Usage: ${c.usage}`, '', c.summary, ...(c.options.length > 0 ? ['', 'Flags:', optionsHelp(c.options)] : [])].join('\n')
}

/**
 * berthd is long-lived and mostly idle, and its JavaScript is glue between system calls: a 1 MiB
 * young generation, one V8 worker thread, V8's size-over-speed heuristics and no optimizing JS
 * compilers (TurboFan, Maglev) cut its RSS from ~86 to ~67 MB after a burst of starts
 * (bench:start prints it) while start latency stays within noise. Not --lite-mode: it implies
 * --jitless, which removes WebAssembly, and libp2p's Noise uses a wasm ChaCha20-Poly1305.
 * V8 reads these flags only at start-up, so `up` re-executes itself in place (same pid).
 */
const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1', '--v8-pool-size=1', '--optimize-for-size', '--no-opt', '--no-maglev']

function tuneDaemonHeap (): void {
  if (DAEMON_NODE_FLAGS.every(f => process.execArgv.includes(f))) return
  const execve = (process as unknown as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve
  if (typeof execve !== 'function') return
  execve(process.execPath, [process.execPath, ...process.execArgv, ...DAEMON_NODE_FLAGS, ...process.argv.slice(1)], process.env)
}

function printError (err: BerthError | { code: string, message: string, hint?: string }): void {
  const hint = err.hint !== undefined && err.hint !== '' ? `; hint: ${err.hint}` : ''
  process.stderr.write(`berth: ${err.code}: ${err.message}${hint}\n`)
}

export async function main (argv: string[]): Promise<number> {
  // Global flags come before the command.
  let socketFlag: string | undefined
  let i = 0
  for (; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--socket') { socketFlag = argv[++i]; continue }
    if (a.startsWith('--socket=')) { socketFlag = a.slice(9); continue }
    if (a === '-h' || a === '--help') { process.stdout.write(mainHelp() + '\n'); return 0 }
    if (a === '-v' || a === '--version') { process.stdout.write(`berth ${VERSION}\n`); return 0 }
    break
  }
  try {
    if (socketFlag === '') throw new UsageError('BERTH_ERR_USAGE', '--socket needs a PATH', 'berth --socket /run/berth/berth.sock ps')
    let rest = argv.slice(i)
    if (rest.length === 0) { process.stderr.write(mainHelp() + '\n'); return 2 }
    let name = rest[0]
    if (['image', 'port', 'chaos', 'cluster', 'kv'].includes(name) && rest.length > 1 && !rest[1].startsWith('-')) name = `${name} ${rest[1]}`
    const command = COMMANDS.find(c => c.name === name)
    if (command === undefined) {
      throw new UsageError('BERTH_ERR_USAGE', `unknown command "${name}"`, 'berth --help lists the commands')
    }
    rest = rest.slice(name.split(' ').length)
    if (rest[0] === '--help' || rest[0] === '-h') { process.stdout.write(commandHelp(command) + '\n'); return 0 }
    if (command.name === 'up') tuneDaemonHeap()
    const local = command.name === 'up' || command.name === 'cluster init'
    const specs = local ? command.options : [...command.options, { name: 'socket', value: 'PATH', help: 'daemon socket' }]
    const parsed = parseArgs(rest, specs, { stopAtPositional: command.passThrough, command: command.name })
    if (!local && parsed.opts.socket !== undefined) socketFlag = parsed.opts.socket as string
    const socketPath = command.name === 'up' ? (socketFlag ?? parsed.opts.socket as string | undefined ?? '') : clientSocket(socketFlag)
    if (command.name === 'up' && socketFlag !== undefined && parsed.opts.socket === undefined) parsed.opts.socket = socketFlag
    const result: Result = await command.handler({
      command: command.name,
      args: parsed.positionals,
      opts: parsed.opts,
      socketPath,
      client: new ApiClient(socketPath)
    })
    if (result.error !== undefined) printError(result.error)
    if (parsed.opts.json === true && result.data !== undefined) process.stdout.write(JSON.stringify(result.data, null, 2) + '\n')
    else if (result.text !== undefined && result.text !== '') process.stdout.write(result.text + '\n')
    return result.exitCode ?? 0
  } catch (err: any) {
    if (err instanceof BerthError) {
      printError(err)
      return err.exitCode ?? 125
    }
    process.stderr.write(`berth: BERTH_ERR_INTERNAL: ${String(err?.stack ?? err)}\n`)
    return 125
  }
}

process.exitCode = await main(process.argv.slice(2))
