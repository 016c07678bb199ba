// Hybrid logical clock (Kulkarni et al., 2014): versions are (wallMs, counter); wallMs tracks the
// largest physical time seen, the counter orders events within one millisecond. A version is
// totally ordered with the writer's node id as the last tie-break (compareVersions).

import type { Clock } from './types.ts'

export interface HlcVersion {
  wallMs: number
  counter: number
}

export interface Versioned extends HlcVersion {
  writer: string
}

/** <0 if a is older than b, >0 if newer, 0 if the same version by the same writer */
export function compareVersions (a: Versioned, b: Versioned): number {
  if (a.wallMs !== b.wallMs) return a.wallMs - b.wallMs
  if (a.counter !== b.counter) return a.counter - b.counter
  return a.writer < b.writer ? -1 : a.writer > b.writer ? 1 : 0
}

export class Hlc {
  wallMs: number
  counter: number
  readonly clock: Clock

  constructor (clock: Clock, start: HlcVersion = { wallMs: 0, counter: 0 }) {
    this.clock = clock
    this.wallMs = start.wallMs
    this.counter = start.counter
  }

  /** a new version for a local event, greater than every version this clock has issued or seen */
  now (): HlcVersion {
    const pt = this.clock.now()
    if (pt > this.wallMs) {
      this.wallMs = pt
      this.counter = 0
    } else {
      this.counter++
    }
    return { wallMs: this.wallMs, counter: this.counter }
  }

  /** merge a remote version (receive event): later local versions are greater than it */
  observe (v: HlcVersion): void {
    if (v.wallMs > this.wallMs) {
      this.wallMs = v.wallMs
      this.counter = v.counter
    } else if (v.wallMs === this.wallMs && v.counter > this.counter) {
      this.counter = v.counter
    }
  }

  current (): HlcVersion {
    return { wallMs: this.wallMs, counter: this.counter }
  }
}
