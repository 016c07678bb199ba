// Each unprivileged container gets its own host uid/gid range, so two containers' roots are
// different host users and neither can touch the other's files. Ranges are 65536 wide (a full
// 16-bit uid space, as LXD and Podman give) and start high, far from the distribution's
// /etc/subuid allocations (100000…) and from any real user.
export const UID_RANGE_SIZE = 65536
export const UID_RANGE_START = 1_000_000_000
export const UID_RANGE_SLOTS = 16384 // 1e9 + 16384·65536 ≈ 2.07e9 < 2^31

export class UidAllocator {
  private readonly used = new Set<number>()

  /** Marks a base (from a stored record) as taken. */
  claim (base: number): void { this.used.add(base) }

  release (base: number | undefined): void { if (base !== undefined) this.used.delete(base) }

  /** The lowest free base; undefined when every slot is taken. */
  allocate (): number | undefined {
    for (let i = 0; i < UID_RANGE_SLOTS; i++) {
      const base = UID_RANGE_START + i * UID_RANGE_SIZE
      if (!this.used.has(base)) {
        this.used.add(base)
        return base
      }
    }
    return undefined
  }
}
