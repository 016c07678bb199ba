// The benchmark's own error: a stable code, a one-line message and a hint, like the daemon's
// errors, but without depending on daemon code (the bench must run against any daemon build).

export class BenchError extends Error {
  readonly code: string
  readonly hint: string

  constructor (code: string, message: string, hint: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BenchError'
    this.code = code
    this.hint = hint
  }

  /** `BERTH_ERR_X: message; hint: ...`, the one line a person sees. */
  toLine (): string {
    return `${this.code}: ${this.message}; hint: ${this.hint}`
  }
}

/** Thrown by Deadline.check() once the whole run has taken too long. */
export const ERR_BENCH_TIMEOUT = 'BERTH_ERR_BENCH_TIMEOUT'
/** A measured command or request failed (non-zero exit, HTTP error). */
export const ERR_BENCH_RUN = 'BERTH_ERR_BENCH_RUN'
/** The daemon did not start or answer. */
export const ERR_BENCH_DAEMON = 'BERTH_ERR_BENCH_DAEMON'
/** Something the bench needs on the machine is missing (busybox-static, runc, unshare). */
export const ERR_BENCH_SETUP = 'BERTH_ERR_BENCH_SETUP'
/** The run was interrupted (SIGINT/SIGTERM). */
export const ERR_BENCH_INTERRUPTED = 'BERTH_ERR_BENCH_INTERRUPTED'
