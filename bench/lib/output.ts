// What every benchmark prints through, and how it reads its settings.
import { logTail } from './daemon.ts'
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

/** How a benchmark's run failed, with the daemon's last log lines when one was up. */
export function reportFailure (err: unknown, daemonLog?: string): void {
  if (err instanceof BenchError) {
    note(err.toLine())
    if (daemonLog !== undefined && err.code !== 'BERTH_ERR_BENCH_INTERRUPTED') note(`berthd log (last lines):\n${logTail(daemonLog)}`)
  } else {
    note(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  }
}

/** Runs a benchmark's main and sets the exit code; bad settings fail before anything is made (exit 2). */
export async function runBench (main: () => Promise<number>): Promise<void> {
  process.exitCode = await main().catch((err: unknown) => {
    note(err instanceof BenchError ? err.toLine() : String(err))
    return 2
  })
}
