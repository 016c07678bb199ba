// Errors a person can meet. Each has a stable code (tests assert on it), a one-line message and a
// hint; `exitCode` is what the CLI exits with (2 usage, 125 daemon/runtime, 126/127 exec), and
// httpStatus() what the API answers with.
import { BerthError } from '../storage/index.ts'

export { BerthError }

/** Bad flags or values: caught before anything is made. CLI exit 2. */
export class UsageError extends BerthError {
  constructor (code: string, message: string, hint: string) {
    super(code, message, { hint, exitCode: 2 })
  }
}

export class NotFoundError extends BerthError {
  constructor (code: string, message: string, hint: string) {
    super(code, message, { hint })
  }
}

export class ConflictError extends BerthError {
  constructor (code: string, message: string, hint: string) {
    super(code, message, { hint })
  }
}

/** A BerthError with just a hint: the common case in node/. */
export function berthError (code: string, message: string, hint: string, exitCode?: number): BerthError {
  return new BerthError(code, message, { hint, exitCode })
}

export function httpStatus (err: unknown): number {
  if (!(err instanceof BerthError)) return 500
  if (err instanceof UsageError || err.exitCode === 2) return 400
  if (err instanceof NotFoundError || err.code.endsWith('_NOT_FOUND')) return 404
  if (err instanceof ConflictError || /_(EXISTS|IN_USE|RUNNING|BUILTIN)$/.test(err.code)) return 409
  if (/_(INVALID|BAD)_|_INVALID$|_BAD$|INVALID_NAME/.test(err.code)) return 400
  return 500
}
