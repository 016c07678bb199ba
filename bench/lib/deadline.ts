// Bounds the whole benchmark in time: every loop calls check() each step, so a stuck or slow
// daemon ends the run with one clear line instead of hanging a CI job.
import { BenchError, ERR_BENCH_INTERRUPTED, ERR_BENCH_TIMEOUT } from './errors.ts'

export interface Deadline {
  /** Throws BERTH_ERR_BENCH_TIMEOUT past the deadline, BERTH_ERR_BENCH_INTERRUPTED after abort(). */
  check: (what: string) => void
  abort: () => void
  readonly aborted: boolean
}

export function createDeadline (totalMs: number, envName: string): Deadline {
  const end = performance.now() + totalMs
  let aborted = false
  return {
    check (what: string): void {
      if (aborted) {
        throw new BenchError(ERR_BENCH_INTERRUPTED, `interrupted during ${what}`, 'cleaning up')
      }
      if (performance.now() > end) {
        throw new BenchError(ERR_BENCH_TIMEOUT, `the benchmark ran past ${Math.round(totalMs / 1000)} s, during ${what}`,
          `the machine or the daemon is too slow; lower BENCH_RUNS or raise ${envName}`)
      }
    },
    abort (): void { aborted = true },
    get aborted (): boolean { return aborted }
  }
}
