// The benchmark's small C programs (bench/native/*.c), compiled at run time with the host's cc
// into the run's temp dir, so the same binary runs on the host and, bind-mounted, in containers.
import { runOk } from './proc.ts'
import { BenchError, ERR_BENCH_SETUP } from './errors.ts'

const CFLAGS = ['-O2', '-Wall', '-Wextra', '-pthread']

/** `cc --version`'s first line; rejects with a setup error when there is no working cc. */
export async function ccVersion (): Promise<string> {
  try {
    return (await runOk('cc', ['--version'], { timeoutMs: 10_000 })).split('\n')[0].trim()
  } catch (err) {
    throw new BenchError(ERR_BENCH_SETUP, 'no working C compiler (`cc`)', 'apt-get install gcc', { cause: err })
  }
}

/** Compiles SRC into the executable OUT. */
export async function compileC (src: string, out: string): Promise<void> {
  await runOk('cc', [...CFLAGS, '-o', out, src], { timeoutMs: 120_000 })
}
