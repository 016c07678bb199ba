// cluster/: everything that crosses machines — membership (SWIM + Lifeguard), the replicated
// last-writer-wins state with anti-entropy, the wire layer, and the libp2p adapter. The public
// surface: interfaces and factory functions; implementation classes stay private.

export { createClusterNode, defaultCapacity } from './node.ts'
export { createLocalTransport } from './local-transport.ts'
export type {
  Capacity, ClusterNode, ClusterNodeEvents, ClusterNodeInit, ClusterStats, DropCounters, KvApi, KvChange, MemberInfo,
  MemberRecord, StateApi
} from './node.ts'
export type { Member, MemberEventName } from './membership.ts'
export type { ClusterStore, StateEntry, WatchEvent } from './state.ts'

export { LAN_PROFILE, LOCAL_PROFILE, PROFILES, resolveConfig, retransmitLimit, suspicionTimeoutMs } from './config.ts'
export type { ClusterConfig, ProfileName } from './config.ts'

export type { Clock, PeerId, Random, RequestOptions, TimerHandle, Transport, TransportHandlers } from './types.ts'
export { systemClock } from './clock.ts'
export { createRandom } from './random.ts'
export { compareVersions, Hlc } from './hlc.ts'
export type { HlcVersion, Versioned } from './hlc.ts'
export { checkKey, checkWriter, splitKey, WRITER_RULES } from './rules.ts'
export type { WriterRule } from './rules.ts'
export { LIMITS, MSG, STATUS, WIRE_VERSION } from './wire.ts'
export type { DropReason, MemberStatus } from './wire.ts'

export { createSimNetwork } from './sim.ts'
export type { SimNetwork, SimNetworkInit, SimStats } from './sim.ts'
export { createSimFleet } from './simulation.ts'
export type { FalseDeath, SimFleet, SimFleetInit } from './simulation.ts'
export { createMemoryStore } from './memory-store.ts'
export type { MemoryStore } from './memory-store.ts'

export { ClusterNotStartedError, InvalidAddressError, InvalidRecordError, JoinError, PskError, WriteNotAllowedError } from './errors.ts'
