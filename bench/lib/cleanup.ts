// Undo steps, run in reverse order once: at the end of a run, on an error, or on SIGINT/SIGTERM.
// A second signal during cleanup exits at once (the person asked twice).

export interface Cleanup {
  /** Registers an undo step; steps run last-registered first. */
  add: (what: string, fn: () => Promise<void> | void) => void
  /** Runs every step once; a failing step is reported and the others still run. */
  run: () => Promise<void>
}

export function createCleanup (log: (line: string) => void): Cleanup {
  const steps: Array<{ what: string, fn: () => Promise<void> | void }> = []
  let running: Promise<void> | undefined

  async function runAll (): Promise<void> {
    while (steps.length > 0) {
      const step = steps.pop()
      if (step === undefined) break
      try {
        await step.fn()
      } catch (err) {
        log(`cleanup: ${step.what}: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
  }

  return {
    add (what, fn): void { steps.push({ what, fn }) },
    run (): Promise<void> {
      running ??= runAll()
      return running
    }
  }
}

/**
 * On SIGINT/SIGTERM: calls onSignal (which should stop the work), runs cleanup, exits 130/143.
 * Returns a function that removes the handlers.
 */
export function onInterrupt (cleanup: Cleanup, onSignal: (sig: NodeJS.Signals) => void,
  log: (line: string) => void): () => void {
  let seen = false
  const handler = (sig: NodeJS.Signals): void => {
    if (seen) {
      log(`${sig} again: exiting without finishing cleanup`)
      process.exit(sig === 'SIGINT' ? 130 : 143)
    }
    seen = true
    log(`${sig}: stopping and cleaning up (again to exit at once)`)
    onSignal(sig)
    cleanup.run().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  return () => {
    process.off('SIGINT', handler)
    process.off('SIGTERM', handler)
  }
}
