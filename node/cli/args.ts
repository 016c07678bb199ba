// A small, strict argument parser: each command declares its options; anything else is a usage
// error (exit 2). Options stop at the first positional when the command passes a command line
// through (`run IMAGE CMD --flag` gives --flag to CMD), and always at `--`.
import { UsageError } from '../errors.ts'

export interface OptionSpec {
  /** Long name without dashes, e.g. "memory". */
  name: string
  short?: string
  /** Takes a value (`--memory 64M` or `--memory=64M`). */
  value?: string
  repeat?: boolean
  help: string
}

export interface Parsed {
  opts: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

export function parseArgs (argv: string[], specs: OptionSpec[], opts: { stopAtPositional?: boolean, command: string }): Parsed {
  const out: Parsed = { opts: {}, positionals: [] }
  const byLong = new Map(specs.map(s => [s.name, s]))
  const byShort = new Map(specs.filter(s => s.short !== undefined).map(s => [s.short as string, s]))
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') { out.positionals.push(...argv.slice(i + 1)); break }
    let spec: OptionSpec | undefined
    let inline: string | undefined
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=')
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq)
      if (eq >= 0) inline = arg.slice(eq + 1)
      spec = byLong.get(name)
      if (spec === undefined) throw unknown(arg, opts.command)
    } else if (arg.startsWith('-') && arg.length > 1 && !/^-[0-9]/.test(arg)) {
      spec = byShort.get(arg.slice(1, 2))
      if (spec === undefined) throw unknown(arg, opts.command)
      if (arg.length > 2) {
        if (spec.value === undefined) throw unknown(arg, opts.command)
        inline = arg.slice(2)
      }
    } else {
      out.positionals.push(arg)
      if (opts.stopAtPositional === true) {
        // `run IMAGE -- CMD`: the `--` only separates; it is not part of the command.
        const rest = argv.slice(i + 1)
        out.positionals.push(...(rest[0] === '--' ? rest.slice(1) : rest))
        break
      }
      continue
    }
    if (spec.value === undefined) {
      if (inline !== undefined) throw new UsageError('BERTH_ERR_USAGE', `--${spec.name} takes no value`, `berth ${opts.command} --help`)
      out.opts[spec.name] = true
      continue
    }
    const value = inline ?? argv[++i]
    if (value === undefined) {
      throw new UsageError('BERTH_ERR_USAGE', `--${spec.name} needs a value (${spec.value})`, `berth ${opts.command} --help`)
    }
    if (spec.repeat === true) {
      const list = (out.opts[spec.name] as string[] | undefined) ?? []
      list.push(value)
      out.opts[spec.name] = list
    } else {
      out.opts[spec.name] = value
    }
  }
  return out
}

function unknown (arg: string, command: string): UsageError {
  return new UsageError('BERTH_ERR_USAGE', `unknown flag ${arg} for "berth ${command}"`, `berth ${command} --help lists the flags`)
}

export function optionsHelp (specs: OptionSpec[]): string {
  const rows = specs.map(s => {
    const flag = `${s.short !== undefined ? `-${s.short}, ` : '    '}--${s.name}${s.value !== undefined ? ` ${s.value}` : ''}`
    return [flag, s.help + (s.repeat === true ? ' (repeatable)' : '')]
  })
  const w = Math.max(0, ...rows.map(r => r[0].length))
  return rows.map(([f, h]) => `  ${f.padEnd(w)}  ${h}`).join('\n')
}
