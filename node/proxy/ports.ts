// Host ports for declared ports: from the node's range unless published on a fixed one. Taken
// ports are the union of what running or stopped containers hold (their records), so a restart
// of the daemon or the container keeps them. Internal ports (allocated from the range) are the
// ones the port filter (firewall.ts) keeps private to this node and the fleet; published ones are
// public on purpose, even when they fall inside the range.
import { ConflictError } from '../errors.ts'

export const DEFAULT_PORT_RANGE: [number, number] = [30000, 32767]

export class HostPortAllocator {
  private readonly lo: number
  private readonly hi: number
  private readonly used = new Map<number, string>()
  private readonly internal = new Set<number>()
  private next: number

  constructor (range: [number, number] = DEFAULT_PORT_RANGE) {
    this.lo = range[0]
    this.hi = range[1]
    this.next = range[0]
  }

  /** A port named by the container (`--publish`), or one it already holds (its record; `internal` unless published). */
  claim (port: number, owner: string, internal = false): void {
    const holder = this.used.get(port)
    if (holder !== undefined && holder !== owner) {
      throw new ConflictError('BERTH_ERR_PORT_IN_USE', `host port ${port} is already used by ${holder}`, 'choose another --publish port, or remove that container')
    }
    this.used.set(port, owner)
    if (internal) this.internal.add(port)
  }

  /** The next free port of the range, round-robin so a just-freed port is not reused at once. */
  allocate (owner: string): number {
    const size = this.hi - this.lo + 1
    for (let i = 0; i < size; i++) {
      const p = this.lo + ((this.next - this.lo + i) % size)
      if (!this.used.has(p)) {
        this.used.set(p, owner)
        this.internal.add(p)
        this.next = p + 1 > this.hi ? this.lo : p + 1
        return p
      }
    }
    throw new ConflictError('BERTH_ERR_PORTS_EXHAUSTED', `no free host port in ${this.lo}-${this.hi}`, 'remove containers, or widen the range (portRange in the daemon config)')
  }

  releaseOwner (owner: string): void {
    for (const [p, o] of this.used) {
      if (o === owner) { this.used.delete(p); this.internal.delete(p) }
    }
  }

  /** Every internal port taken now, by running or stopped containers. */
  internalPorts (): number[] {
    return [...this.internal]
  }
}
