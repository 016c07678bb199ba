// The berth CLI against the benchmark's private daemon: `node dist/node/cli/main.js --socket S …`,
// the compiled CLI a person runs, for what the benchmark measures through `berth run`.
import { join } from 'node:path'
import { exitError, runTimed } from './proc.ts'
import type { TimedExit } from './proc.ts'

export interface Cli {
  /** Runs `berth ARGS`, capturing stdout; resolves whatever the exit code. */
  run: (args: readonly string[], timeoutMs: number) => Promise<TimedExit>
  /** Runs `berth ARGS` and returns its stdout; a non-zero exit rejects with its stderr. */
  ok: (args: readonly string[], timeoutMs: number) => Promise<string>
}

export function createCli (repoDir: string, socketPath: string): Cli {
  const main = join(repoDir, 'dist/node/cli/main.js')
  const run = (args: readonly string[], timeoutMs: number): Promise<TimedExit> =>
    runTimed(process.execPath, [main, '--socket', socketPath, ...args], { timeoutMs, cwd: repoDir, captureStdout: true })
  return {
    run,
    async ok (args, timeoutMs) {
      const r = await run(args, timeoutMs)
      if (r.code !== 0) throw exitError(`berth ${args.join(' ')}`, r)
      return r.stdout
    }
  }
}
