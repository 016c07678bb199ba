// Membership and replicated-state tunables, and the profiles built from one base (like
// memberlist's DefaultLANConfig / DefaultLocalConfig). Units live in the names; each comment
// gives the formula the value feeds and the trade-off of moving it.

export interface ClusterConfig {
  /**
   * Every probeIntervalMs a node probes one member (round-robin over a shuffled list), so a
   * crashed node is first probed within ~N*probeIntervalMs worst case, ~probeIntervalMs expected
   * (every node probes). Lower detects failures sooner at the expense of bandwidth.
   */
  probeIntervalMs: number
  /**
   * Wait this long for a direct ack before asking indirectChecks others; scaled by the local
   * health multiplier (LHM+1). Should be above the network's p99 RTT: too low causes indirect
   * probes (and, under load, false suspicions).
   */
  probeTimeoutMs: number
  /** k members asked to probe a target that missed its direct ack. More is robust to partial loss, at more traffic. */
  indirectChecks: number
  /**
   * Suspicion timeout (Lifeguard):
   *   min = suspicionMult * max(1, log10(max(1, N))) * probeIntervalMs
   *   max = suspicionMaxTimeoutMult * min
   * A fresh suspicion starts at max and decays toward min as independent confirmations c of the
   * expected k = suspicionMult - 2 arrive: t = max(min, max - (max - min) * log(c+1)/log(k+1)).
   * Higher mult: fewer false deaths of slow nodes, slower detection of crashed ones.
   */
  suspicionMult: number
  suspicionMaxTimeoutMult: number
  /**
   * Lifeguard's local health multiplier saturates here: probe timeouts become
   * probeTimeoutMs * (LHM+1). A node that misses acks/nacks (it is itself slow or lossy) backs
   * off instead of suspecting healthy peers; higher tolerates worse local conditions, at slower
   * detection while unhealthy.
   */
  awarenessMaxMultiplier: number
  /**
   * A membership update is piggybacked retransmitMult * ceil(log10(N+1)) times. Higher
   * survives more loss, at the expense of bandwidth.
   */
  retransmitMult: number
  /** Every gossipIntervalMs, queued updates go to gossipNodes random members (only when the queue is not empty). */
  gossipIntervalMs: number
  gossipNodes: number
  /** Most membership updates piggybacked on one message (bounds datagram size). */
  maxPiggybackUpdates: number
  /**
   * Full membership sync with a random member every pushPullIntervalMs, stretched above 32
   * nodes as memberlist does (pushPullIntervalFor): 30 s up to 32 nodes, 90 s at 100, 180 s
   * at 1,000. Repairs what gossip lost; costs a stream round trip with the whole member list.
   */
  pushPullIntervalMs: number
  /**
   * Every reconnectIntervalMs, push-pull with one random dead (not left) member, so the two sides
   * of a healed partition find each other (serf's reconnect). Lower heals faster, at dials to
   * nodes that are really gone.
   */
  reconnectIntervalMs: number
  /** Dead/left members are kept (for `berth nodes`) this long, then forgotten. */
  deadReclaimMs: number
  /**
   * Anti-entropy of the replicated state with one random live member every
   * antiEntropyIntervalMs: digests of antiEntropyBuckets key-hash buckets, then pull/push of the
   * differing buckets' entries. All divergence is repaired in ~log2(N) rounds; lower repairs
   * faster, at one digest (16 bytes per bucket) per round.
   */
  antiEntropyIntervalMs: number
  antiEntropyBuckets: number
  /** Most entries sent in one anti-entropy reply; the rest wait for the next round. */
  antiEntropyMaxEntries: number
  /** A collected tombstone's key/version is remembered this long so a late copy is not resurrected. */
  tombstoneGraveMs: number
  /** Remote HLC versions further than this ahead of our wall clock are dropped (counted as clockSkew). */
  maxClockDriftMs: number
  /** Largest datagram/broadcast accepted (bytes, before decoding). */
  maxMessageBytes: number
  /** Largest request/response on the stream protocol (bytes). */
  maxRequestBytes: number
  /** Largest single record (its msgpack encoding). */
  maxRecordBytes: number
  /** Stream requests (push-pull, anti-entropy, join) give up after this. */
  requestTimeoutMs: number
  /** Join retries back off from joinRetryMinMs doubling up to joinRetryMaxMs. */
  joinRetryMinMs: number
  joinRetryMaxMs: number
}

export type ProfileName = 'lan' | 'local'

/**
 * The base: memberlist's DefaultLANConfig, plus the replicated state's settings, except
 * suspicionMult 3 (memberlist: 4). With Lifeguard a lone suspicion still waits
 * suspicionMaxTimeoutMult * min (18 s at 10 nodes) for its refutation; only a suspicion that
 * independent members confirm shrinks to min (3 s at 10 nodes, 6 s at 100 instead of 4 and 8).
 * The simulator's 5%-loss soak (bench:gossip) saw no false death with it at 10 and 100 nodes.
 */
const BASE: Readonly<ClusterConfig> = Object.freeze({
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectChecks: 3,
  suspicionMult: 3,
  suspicionMaxTimeoutMult: 6,
  awarenessMaxMultiplier: 8,
  retransmitMult: 4,
  gossipIntervalMs: 200,
  gossipNodes: 3,
  maxPiggybackUpdates: 16,
  pushPullIntervalMs: 30_000,
  reconnectIntervalMs: 10_000,
  deadReclaimMs: 24 * 3600_000,
  antiEntropyIntervalMs: 2_000,
  antiEntropyBuckets: 64,
  antiEntropyMaxEntries: 2_000,
  tombstoneGraveMs: 600_000,
  maxClockDriftMs: 60_000,
  maxMessageBytes: 64 * 1024,
  maxRequestBytes: 4 * 1024 * 1024,
  maxRecordBytes: 32 * 1024,
  requestTimeoutMs: 5_000,
  joinRetryMinMs: 1_000,
  joinRetryMaxMs: 30_000
})

/** A LAN (one datacenter/site, RTT ≲ 10 ms): the base as is. */
export const LAN_PROFILE: Readonly<ClusterConfig> = BASE

/**
 * One machine or a loopback test fleet (memberlist's DefaultLocalConfig): RTT is tiny, so the
 * probe timeout is shorter, one indirect check is enough, retransmits and suspicion are cut —
 * faster detection, less tolerance of a loaded host.
 */
export const LOCAL_PROFILE: Readonly<ClusterConfig> = Object.freeze({
  ...BASE,
  probeTimeoutMs: 200,
  indirectChecks: 1,
  retransmitMult: 2,
  suspicionMult: 3,
  gossipIntervalMs: 100,
  pushPullIntervalMs: 15_000,
  reconnectIntervalMs: 5_000,
  antiEntropyIntervalMs: 1_000,
  requestTimeoutMs: 2_000
})

export const PROFILES: Readonly<Record<ProfileName, Readonly<ClusterConfig>>> = Object.freeze({
  lan: LAN_PROFILE,
  local: LOCAL_PROFILE
})

export function resolveConfig (profile: ProfileName = 'lan', overrides: Partial<ClusterConfig> = {}): Readonly<ClusterConfig> {
  const base = PROFILES[profile]
  if (base === undefined) throw new TypeError(`unknown cluster profile ${JSON.stringify(profile)} (lan|local)`)
  return Object.freeze({ ...base, ...overrides })
}

/** memberlist's suspicionTimeout: suspicionMult * max(1, log10(max(1, n))) * intervalMs */
export function suspicionTimeoutMs (suspicionMult: number, n: number, intervalMs: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, n)))
  return Math.round(suspicionMult * nodeScale * intervalMs)
}

/** memberlist's retransmitLimit: retransmitMult * ceil(log10(n+1)) */
export function retransmitLimit (retransmitMult: number, n: number): number {
  return retransmitMult * Math.ceil(Math.log10(n + 1))
}

/**
 * The push-pull period at N live members (memberlist's pushPullScale): intervalMs up to 32
 * members, then intervalMs * (ceil(log2 N - log2 32) + 1), so each node's share of full syncs
 * falls as the fleet grows while the fleet-wide rate still rises (slowly).
 */
export function pushPullIntervalFor (intervalMs: number, n: number): number {
  const threshold = 32
  if (n <= threshold) return intervalMs
  return intervalMs * (Math.ceil(Math.log2(n) - Math.log2(threshold)) + 1)
}
