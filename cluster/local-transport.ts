// A Transport for a node that runs alone (no --listen, --join or --psk-file): no peers, no
// sockets, nothing loaded from libp2p. The replicated state, kv and membership work as on a
// one-member fleet; restarting the daemon with fleet flags moves it onto libp2p.
import type { PeerId, RequestOptions, Transport, TransportHandlers } from './types.ts'
import { JoinError } from './errors.ts'

export function createLocalTransport (localId: PeerId): Transport {
  return {
    localId,
    start: async (_handlers: TransportHandlers) => {},
    stop: async () => {},
    localAddrs: () => [],
    addPeer: () => {},
    send: () => {},
    broadcast: () => {},
    request: async (to: PeerId, _data: Uint8Array, _opts: RequestOptions) => {
      throw new JoinError([to], ['this node runs alone (berth up without --listen/--join/--psk-file)'])
    },
    dial: async (addr: string) => {
      throw new JoinError([addr], ['this node runs alone (berth up without --listen/--join/--psk-file)'])
    }
  }
}
