// Random: xoshiro128** seeded through splitmix32. Deterministic for a seed (the simulator's
// replay depends on it); production seeds it from the OS's CSPRNG. Not for cryptography.

import { randomBytes } from 'node:crypto'
import type { Random } from './types.ts'

class Xoshiro128 implements Random {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  constructor (seed: number) {
    let x = seed >>> 0
    const sm = (): number => {
      x = (x + 0x9e3779b9) >>> 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      return (z ^ (z >>> 16)) >>> 0
    }
    this.s0 = sm(); this.s1 = sm(); this.s2 = sm(); this.s3 = sm()
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1
  }

  private u32 (): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0
    const t = (this.s1 << 9) >>> 0
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return result
  }

  next (): number {
    return this.u32() / 4294967296
  }

  int (n: number): number {
    return Math.floor(this.next() * n)
  }

  shuffle<T> (items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const tmp = items[i] as T
      items[i] = items[j] as T
      items[j] = tmp
    }
    return items
  }
}

function rotl (x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

/** A seeded Random; without a seed, one drawn from the OS's CSPRNG. */
export function createRandom (seed?: number): Random {
  return new Xoshiro128(seed ?? randomBytes(4).readUInt32LE(0))
}
