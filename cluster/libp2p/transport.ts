// The production Transport over libp2p 2.x: TCP, a private network (pnet PSK), Noise, Yamux,
// identify, ping, bootstrap, mDNS and gossipsub (StrictSign, explicit decode limits).
//
//   datagrams  → /berth/swim/1.0.0: one length-prefixed frame per stream (fire and forget;
//                a failure is a lost datagram, which SWIM expects)
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
export const SWIM_PROTOCOL = '/berth/swim/1.0.0'
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

async function readFrame (stream: Stream, maxBytes: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  let have = 0
  let want = -1
  for await (const chunk of stream.source) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    chunks.push(bytes)
    have += bytes.length
    if (want < 0 && have >= 4) {
      const head = concat(chunks, have)
      want = new DataView(head.buffer, head.byteOffset, 4).getUint32(0)
      if (want > maxBytes) throw new Error(`frame of ${want} bytes, at most ${maxBytes}`)
    }
    if (want >= 0 && have >= 4 + want) break
  }
  if (want < 0 || have < 4 + want) throw new Error('stream ended inside a frame')
  return concat(chunks, have).subarray(4, 4 + want)
}

function concat (chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array
  const out = new Uint8Array(total)
  let off = 0
  for (const c of chunks) { out.set(c, off); off += c.length }
  chunks.length = 0
  chunks.push(out)
  return out
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
      const from = connection.remotePeer.toString()
      readFrame(stream, this.maxMessageBytes).then(data => {
        stream.close().catch(() => {})
        this.handlers?.message(from, data)
      }, err => {
        log('swim stream from %s: %o', from, err)
        stream.abort(err as Error)
      })
    }, { maxInboundStreams: 256, maxOutboundStreams: 256 })
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
    ;(async () => {
      const stream = await this.node.dialProtocol(peerIdFromString(to), SWIM_PROTOCOL, { signal: AbortSignal.timeout(this.sendTimeoutMs) })
      await stream.sink([frame(data)])
    })().catch(err => { log('send to %s (datagram lost): %s', to, (err as Error).message) })
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
