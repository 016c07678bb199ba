// The small interfaces the cluster's logic is written against, so it runs both on libp2p and
// inside the deterministic simulator (sim.ts): a Transport, a Clock and a Random.

/** A peer's id: the libp2p peer id string in production, any unique string in the simulator. */
export type PeerId = string

export interface TransportHandlers {
  /** a datagram-like message (membership: ping, ack, …); `from` is authenticated by the transport */
  message: (from: PeerId, data: Uint8Array) => void
  /** a broadcast (state deltas; a gossipsub topic on libp2p); `from` is the signer, not the relay */
  broadcast: (from: PeerId, data: Uint8Array) => void
  /** a request on the stream protocol (anti-entropy, push-pull); resolves to the response */
  request: (from: PeerId, data: Uint8Array) => Promise<Uint8Array>
  /** a peer was discovered or connected (mDNS, an inbound connection); membership may join it */
  peer?: (id: PeerId, addrs: string[]) => void
  /** every connection to a peer closed (a hint that it may be gone; membership probes it) */
  peerDown?: (id: PeerId) => void
}

export interface RequestOptions {
  timeoutMs: number
  signal?: AbortSignal
}

export interface Transport {
  /** this node's id */
  readonly localId: PeerId
  /** starts delivering to `handlers`; safe to call twice */
  start: (handlers: TransportHandlers) => Promise<void>
  /** safe to call twice */
  stop: () => Promise<void>
  /** addresses others can reach this node on (multiaddrs on libp2p) */
  localAddrs: () => string[]
  /** how to reach a peer learned through gossip (no-op where the transport routes by id) */
  addPeer: (id: PeerId, addrs: string[]) => void
  /** unreliable, unordered, fire-and-forget: may be lost, delayed, reordered */
  send: (to: PeerId, data: Uint8Array) => void
  /** to every member of the fleet, best effort */
  broadcast: (data: Uint8Array) => void
  /** request/response over a reliable stream; rejects on timeout or an unreachable peer */
  request: (to: PeerId, data: Uint8Array, opts: RequestOptions) => Promise<Uint8Array>
  /** connect to a seed address and resolve the id of the peer behind it */
  dial: (addr: string, opts: RequestOptions) => Promise<PeerId>
  /** membership declared the peer dead or gone: drop what is kept open to it */
  peerGone?: (id: PeerId) => void
}

export type TimerHandle = { readonly __timer: unique symbol } | object

export interface Clock {
  /** milliseconds since the epoch (wall clock; virtual in the simulator) */
  now: () => number
  setTimeout: (fn: () => void, ms: number) => TimerHandle
  clearTimeout: (handle: TimerHandle) => void
}

export interface Random {
  /** uniform in [0, 1) */
  next: () => number
  /** uniform integer in [0, n) */
  int: (n: number) => number
  /** shuffles in place and returns the array */
  shuffle: <T>(items: T[]) => T[]
}
