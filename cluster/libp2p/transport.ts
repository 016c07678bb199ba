// The production Transport over libp2p 2.x: TCP, a private network (pnet PSK), Noise, Yamux,
// identify, ping, bootstrap, mDNS and gossipsub (StrictSign, explicit decode limits).
//
//   datagrams  → /berth/swim/1.1.0: one long-lived stream per peer and direction, carrying
//                length-prefixed frames (fire and forget: a frame that cannot be written, or
//                finds no stream, is a lost datagram, which SWIM expects)
//   broadcast  → the gossipsub topic `berth/state/1`
//   requests   → /berth/ae/1.0.0: one frame each way (anti-entropy, push-pull)

import { debuglog } from 'node:util'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { bootstrap } from '@libp2p/bootstrap'
import { mdns } from '@libp2p/mdns'
import { preSharedKey } from '@libp2p/pnet'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import type { GossipSub } from '@chainsafe/libp2p-gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerDiscovery, PrivateKey, Stream } from '@libp2p/interface'
import { loadOrCreateIdentity } from './identity.ts'
import { readPsk, validatePsk } from './psk.ts'
import { parseAddr } from './addr.ts'
import type { PeerId, RequestOptions, Transport, TransportHandlers } from '../types.ts'

const log = debuglog('berth:cluster:libp2p')

/** Protocol ids. The version is part of the protocol: a new framing gets a new id. */
export const SWIM_PROTOCOL = '/berth/swim/1.1.0'
export const AE_PROTOCOL = '/berth/ae/1.0.0'
export const STATE_TOPIC = 'berth/state/1'

export interface Libp2pTransportInit {
  /** the node's data dir: the identity key lives at <dataDir>/cluster/identity.key */
  dataDir?: string
  /** or an identity given directly (tests) */
  privateKey?: PrivateKey
  /** listen ADDRs (host:port or multiaddr); default 0.0.0.0:7946 */
  listen?: string[]
  /** the pre-shared key file (`berth cluster init`), or its bytes */
  pskFile?: string
  psk?: Uint8Array
  /** seeds also given to libp2p's bootstrap discovery, which redials them */
  bootstrap?: string[]
  /** discover peers on the LAN (edge sites); default false */
  mdns?: boolean
  /** largest datagram / request frame (bytes) */
  maxMessageBytes?: number
  maxRequestBytes?: number
  /** dial timeout for datagram streams */
  sendTimeoutMs?: number
}

const DEFAULT_LISTEN = ['0.0.0.0:7946']
/** Bytes of datagrams that may wait for one peer's stream before new ones are dropped. */
const OUTBOUND_QUEUE_BYTES = 256 * 1024

/**
 * Splits a byte stream into length-prefixed frames (a 4-byte big-endian length, then that many
 * bytes). A frame longer than maxBytes is an error: the stream is broken or hostile.
 */
class FrameSplitter {
  private buf: Uint8Array = new Uint8Array(0)
  private readonly maxBytes: number
  constructor (maxBytes: number) { this.maxBytes = maxBytes }

  /** the frames completed by CHUNK, in order */
  push (chunk: Uint8Array): Uint8Array[] {
    this.buf = this.buf.length === 0 ? chunk : concat([this.buf, chunk])
    const out: Uint8Array[] = []
    while (this.buf.length >= 4) {
      const want = new DataView(this.buf.buffer, this.buf.byteOffset, 4).getUint32(0)
      if (want > this.maxBytes) throw new Error(`frame of ${want} bytes, at most ${this.maxBytes}`)
      if (this.buf.length < 4 + want) break
      out.push(this.buf.subarray(4, 4 + want))
      this.buf = this.buf.subarray(4 + want)
    }
    return out
  }

  /** bytes of an unfinished frame are waiting */
  get partial (): boolean { return this.buf.length > 0 }
}

function chunkBytes (chunk: Uint8Array | { subarray: () => Uint8Array }): Uint8Array {
  return chunk instanceof Uint8Array ? chunk : chunk.subarray()
}

/** The first frame on STREAM (request/response streams carry one each way). */
async function readFrame (stream: Stream, maxBytes: number): Promise<Uint8Array> {
  const split = new FrameSplitter(maxBytes)
  for await (const chunk of stream.source) {
    const [first] = split.push(chunkBytes(chunk))
    if (first !== undefined) return first
  }
  throw new Error(split.partial ? 'stream ended inside a frame' : 'stream ended before a frame')
}

function concat (parts: Uint8Array[]): Uint8Array {
  let total = 0
  for (const p of parts) total += p.length
  const out = new Uint8Array(total)
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}

/**
 * The write side of one peer's datagram stream: frames queue here and the stream's sink drains
 * them. Bounded: when the stream is slower than SWIM's sends (a stalled connection), new frames
 * are dropped, as a full socket buffer drops datagrams.
 */
class FrameQueue implements AsyncIterable<Uint8Array> {
  private readonly frames: Uint8Array[] = []
  private bytes = 0
  private wake: (() => void) | undefined
  private ended = false
  private readonly maxBytes: number
  constructor (maxBytes: number) { this.maxBytes = maxBytes }

  /** false if the frame was dropped (queue full or ended) */
  push (f: Uint8Array): boolean {
    if (this.ended || this.bytes + f.length > this.maxBytes) return false
    this.frames.push(f)
    this.bytes += f.length
    this.wake?.()
    return true
  }

  end (): void { this.ended = true; this.wake?.() }

  async * [Symbol.asyncIterator] (): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.frames.length > 0) {
        // everything queued goes out as one write (one yamux frame, one noise message)
        const batch = this.frames.length === 1 ? this.frames[0] as Uint8Array : concat(this.frames)
        this.frames.length = 0
        this.bytes = 0
        yield batch
        continue
      }
      if (this.ended) return
      await new Promise<void>(resolve => { this.wake = resolve })
      this.wake = undefined
    }
  }
}

interface Outbound {
  queue: FrameQueue
  stream?: Stream
}

function frame (data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.length)
  new DataView(out.buffer).setUint32(0, data.length)
  out.set(data, 4)
  return out
}

class Libp2pTransport implements Transport {
  readonly localId: PeerId
  private readonly node: Libp2p<{ pubsub: GossipSub }>
  private handlers: TransportHandlers | undefined
  private started = false
  private readonly maxMessageBytes: number
  private readonly maxRequestBytes: number
  private readonly sendTimeoutMs: number
  private readonly outbound = new Map<PeerId, Outbound>()

  constructor (node: Libp2p<{ pubsub: GossipSub }>, init: Libp2pTransportInit) {
    this.node = node
    this.localId = node.peerId.toString()
    this.maxMessageBytes = init.maxMessageBytes ?? 64 * 1024
    this.maxRequestBytes = init.maxRequestBytes ?? 4 * 1024 * 1024
    this.sendTimeoutMs = init.sendTimeoutMs ?? 2_000
  }

  async start (handlers: TransportHandlers): Promise<void> {
    if (this.started) return
    this.started = true
    this.handlers = handlers
    await this.node.start()
    await this.node.handle(SWIM_PROTOCOL, ({ stream, connection }) => {
      // a peer's datagram stream: frames until it closes; we never write on it
      const from = connection.remotePeer.toString()
      stream.closeWrite().catch(() => {})
      const split = new FrameSplitter(this.maxMessageBytes)
      ;(async () => {
        for await (const chunk of stream.source) {
          for (const data of split.push(chunkBytes(chunk))) this.handlers?.message(from, data)
        }
      })().catch(err => {
        log('swim stream from %s: %o', from, err)
        stream.abort(err as Error)
      })
    }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
    await this.node.handle(AE_PROTOCOL, ({ stream, connection }) => {
      const from = connection.remotePeer.toString()
      ;(async () => {
        const req = await readFrame(stream, this.maxRequestBytes)
        const h = this.handlers
        if (h === undefined) throw new Error('stopped')
        const res = await h.request(from, req)
        await stream.sink([frame(res)])
      })().catch(err => {
        log('request stream from %s: %o', from, err)
        stream.abort(err as Error)
      })
    }, { maxInboundStreams: 64, maxOutboundStreams: 64 })
    const pubsub = this.node.services.pubsub
    pubsub.addEventListener('message', evt => {
      const msg = evt.detail
      // StrictSign: every message is signed; `from` is its publisher, not the relay
      if (msg.topic !== STATE_TOPIC || msg.type !== 'signed') return
      this.handlers?.broadcast(msg.from.toString(), msg.data)
    })
    pubsub.subscribe(STATE_TOPIC)
    this.node.addEventListener('peer:connect', evt => {
      this.handlers?.peer?.(evt.detail.toString(), [])
    })
    this.node.addEventListener('peer:disconnect', evt => {
      this.handlers?.peerDown?.(evt.detail.toString())
    })
    this.node.addEventListener('peer:discovery', evt => {
      // mDNS/bootstrap: connect, and membership joins through the connection (peer:connect)
      const id = evt.detail.id
      if (id.equals(this.node.peerId)) return
      this.node.dial(id, { signal: AbortSignal.timeout(this.sendTimeoutMs) }).catch(err => { log('dial discovered %s: %o', id, err) })
    })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.handlers = undefined
    for (const out of this.outbound.values()) out.queue.end()
    this.outbound.clear()
    await this.node.stop()
  }

  localAddrs (): string[] {
    return this.node.getMultiaddrs().map(String)
  }

  addPeer (id: PeerId, addrs: string[]): void {
    if (addrs.length === 0 || id === this.localId) return
    try {
      const peer = peerIdFromString(id)
      const multiaddrs = addrs.map(a => parseAddr(a.replace(/\/p2p\/[^/]+$/, '')))
      this.node.peerStore.merge(peer, { multiaddrs }).catch(err => { log('peer store %s: %o', id, err) })
    } catch (err) {
      log('addPeer %s: %o', id, err)
    }
  }

  send (to: PeerId, data: Uint8Array): void {
    if (!this.started) return
    const out = this.outbound.get(to) ?? this.openOutbound(to)
    if (!out.queue.push(frame(data))) log('send to %s: queue full (datagram lost)', to)
  }

  /**
   * The long-lived datagram stream to TO: opened on first use and replaced after it fails, so
   * a datagram costs one frame on an open stream instead of a stream set-up (and multistream
   * negotiation) of its own. Frames sent while it opens wait in its queue.
   */
  private openOutbound (to: PeerId): Outbound {
    const out: Outbound = { queue: new FrameQueue(OUTBOUND_QUEUE_BYTES) }
    this.outbound.set(to, out)
    ;(async () => {
      const stream = await this.node.dialProtocol(peerIdFromString(to), SWIM_PROTOCOL, { signal: AbortSignal.timeout(this.sendTimeoutMs) })
      out.stream = stream
      stream.closeRead().catch(() => {})
      await stream.sink(out.queue)
    })().catch(err => { log('datagram stream to %s: %s', to, (err as Error).message) })
      .finally(() => {
        out.queue.end()
        if (this.outbound.get(to) === out) this.outbound.delete(to)
      })
    return out
  }

  peerGone (id: PeerId): void {
    const out = this.outbound.get(id)
    if (out !== undefined) {
      this.outbound.delete(id)
      out.queue.end()
      out.stream?.abort(new Error('peer declared gone'))
    }
    // a crashed host leaves half-open connections behind; a rejoin must not reuse them
    if (this.started) this.node.hangUp(peerIdFromString(id)).catch(err => { log('hang up %s: %o', id, err) })
  }

  broadcast (data: Uint8Array): void {
    if (!this.started) return
    this.node.services.pubsub.publish(STATE_TOPIC, data).catch(err => { log('publish: %o', err) })
  }

  async request (to: PeerId, data: Uint8Array, opts: RequestOptions): Promise<Uint8Array> {
    const signal = opts.signal === undefined ? AbortSignal.timeout(opts.timeoutMs) : AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)])
    const stream = await this.node.dialProtocol(peerIdFromString(to), AE_PROTOCOL, { signal })
    try {
      const onAbort = (): void => { stream.abort(new Error(`request to ${to} timed out after ${opts.timeoutMs} ms`)) }
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        await stream.sink([frame(data)])
        return await readFrame(stream, this.maxRequestBytes)
      } finally {
        signal.removeEventListener('abort', onAbort)
      }
    } finally {
      stream.close().catch(() => {})
    }
  }

  async dial (addr: string, opts: RequestOptions): Promise<PeerId> {
    const ma = parseAddr(addr)
    const signal = opts.signal === undefined ? AbortSignal.timeout(opts.timeoutMs) : AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)])
    const conn = await this.node.dial(ma, { signal })
    return conn.remotePeer.toString()
  }
}

/** Builds (does not start) a libp2p node and wraps it as a Transport. */
export async function createLibp2pTransport (init: Libp2pTransportInit): Promise<Transport> {
  const privateKey = init.privateKey ?? (init.dataDir !== undefined ? await loadOrCreateIdentity(init.dataDir) : undefined)
  if (privateKey === undefined) throw new TypeError('libp2pInit: give dataDir (identity kept there) or privateKey')
  const psk = init.psk !== undefined ? validatePsk(init.psk) : init.pskFile !== undefined ? await readPsk(init.pskFile) : undefined
  const maxMessageBytes = init.maxMessageBytes ?? 64 * 1024
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = [] // eslint-disable-line @typescript-eslint/no-explicit-any
  const seeds = (init.bootstrap ?? []).filter(a => a.includes('/p2p/')).map(a => parseAddr(a).toString())
  if (seeds.length > 0) peerDiscovery.push(bootstrap({ list: seeds }))
  if (init.mdns === true) peerDiscovery.push(mdns())
  const node = await createLibp2p({
    start: false,
    privateKey,
    addresses: { listen: (init.listen ?? DEFAULT_LISTEN).map(a => parseAddr(a).toString()) },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(psk === undefined ? {} : { connectionProtector: preSharedKey({ psk }) }),
    peerDiscovery,
    // Every connection is pinged on a stream of its own (~20 packets a ping, from both ends)
    // every pingInterval. SWIM already probes members every second; this stays only as the
    // backstop that closes a half-open connection to a host that vanished without being
    // declared dead (a dead member's connections are closed at once: peerGone).
    connectionMonitor: { pingInterval: 60_000 },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        fallbackToFloodsub: false,
        // 14.x decodes RPCs without limits by default: bound every list and the payload
        maxInboundDataLength: maxMessageBytes,
        decodeRpcLimits: {
          maxSubscriptions: 16,
          maxMessages: 256,
          maxIhaveMessageIDs: 1024,
          maxIwantMessageIDs: 1024,
          maxIdontwantMessageIDs: 1024,
          maxControlMessages: 256,
          maxPeerInfos: 32
        },
        allowedTopics: [STATE_TOPIC]
      })
    }
  })
  return new Libp2pTransport(node as unknown as Libp2p<{ pubsub: GossipSub }>, init)
}
