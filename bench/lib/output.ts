// What every benchmark prints through, and how it reads its settings.
import { BenchError, ERR_BENCH_SETUP } from './errors.ts'

// A reader that goes away (`| head`) must not kill a run before its cleanup: once stdout or
// stderr fails (EPIPE), writes to it are dropped and the run goes on to clean up.
let stdoutOpen = true
let stderrOpen = true
process.stdout.on('error', () => { stdoutOpen = false })
process.stderr.on('error', () => { stderrOpen = false })

/** A line of the report (stdout). */
export const say = (line = ''): void => { if (stdoutOpen) process.stdout.write(`${line}\n`) }

/** A progress or diagnostic line (stderr). */
export const note = (line: string): void => { if (stderrOpen) process.stderr.write(`bench: ${line}\n`) }

/** An integer setting from the environment, at least `min`, else `def`. */
export function intFromEnv (name: string, def: number, min: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return def
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) {
    throw new BenchError(ERR_BENCH_SETUP, `bad ${name}="${raw}"`, `use an integer ≥ ${min}`)
  }
  return n
}
