// The real clock: wall time and Node's timers (unref'd, so a cluster node never keeps a
// process alive on its own; the daemon's server does that).

import type { Clock, TimerHandle } from './types.ts'

export function systemClock (): Clock {
  return {
    now: () => Date.now(),
    setTimeout: (fn, ms) => {
      const t = setTimeout(fn, ms)
      t.unref()
      return t as unknown as TimerHandle
    },
    clearTimeout: (h) => { clearTimeout(h as unknown as NodeJS.Timeout) }
  }
}
