// A fast 64-bit non-cryptographic hash (two FNV-1a lanes with different offsets) for state
// digests and anti-entropy buckets. Peers are authenticated members, so collision resistance
// against an adversary is not needed; an accidental collision only delays a repair.

export function hash64 (s: string): [number, number] {
  let a = 0x811c9dc5
  let b = 0x050c5d1f
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15)
  }
  // final avalanche (murmur3 fmix32) so XOR-sets of hashes stay well spread
  return [fmix(a), fmix(b ^ a)]
}

function fmix (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export function hex32 (n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0')
}
