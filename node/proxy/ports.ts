// Host ports for declared ports: from the node's range unless published on a fixed one. Taken
// ports are the union of what running or stopped containers hold (their records), so a restart
// of the daemon or the container keeps them.
import { ConflictError } from '../errors.ts'

export const DEFAULT_PORT_RANGE: [number, number] = [30000, 32767]

export class HostPortAllocator {
  private readonly lo: number
  private readonly hi: number
  private readonly used = new Map<number, string>()
  private next: number

  constructor (range: [number, number] = DEFAULT_PORT_RANGE) {
    this.lo = range[0]
    this.hi = range[1]
    this.next = range[0]
  }

  claim (port: number, owner: string): void {
    const holder = this.used.get(port)
    if (holder !== undefined && holder !== owner) {
      throw new ConflictError('BERTH_ERR_PORT_IN_USE', `host port ${port} is already used by ${holder}`, 'choose another --publish port, or remove that container')
    }
    this.used.set(port, owner)
  }

  /** The next free port of the range, round-robin so a just-freed port is not reused at once. */
  allocate (owner: string): number {
    const size = this.hi - this.lo + 1
    for (let i = 0; i < size; i++) {
      const p = this.lo + ((this.next - this.lo + i) % size)
      if (!this.used.has(p)) {
        this.used.set(p, owner)
        this.next = p + 1 > this.hi ? this.lo : p + 1
        return p
      }
    }
    throw new ConflictError('BERTH_ERR_PORTS_EXHAUSTED', `no free host port in ${this.lo}-${this.hi}`, 'remove containers, or widen the range (portRange in the daemon config)')
  }

  releaseOwner (owner: string): void {
    for (const [p, o] of this.used) if (o === owner) this.used.delete(p)
  }
}
