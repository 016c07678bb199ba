// The cluster's errors: one class per condition with a stable code (tests assert on `code`).

import { BerthError } from '../storage/index.ts'
import type { BerthErrorOptions } from '../storage/index.ts'

/** No seed could be reached or answered a join. */
export class JoinError extends BerthError {
  static readonly CODE = 'BERTH_ERR_JOIN'
  readonly addrs: string[]
  constructor (addrs: string[], reasons: string[], opts: BerthErrorOptions = {}) {
    super(JoinError.CODE, `could not join the fleet through ${addrs.join(', ')}: ${reasons.join('; ')}`, {
      hint: 'check the --join address (host:port or a multiaddr), that the seed is running, and that both nodes use the same --psk-file',
      ...opts
    })
    this.addrs = addrs
  }
}

/** An address that is neither host:port nor a multiaddr. */
export class InvalidAddressError extends BerthError {
  static readonly CODE = 'BERTH_ERR_INVALID_ADDRESS'
  constructor (addr: string, why: string) {
    super(InvalidAddressError.CODE, `invalid address ${JSON.stringify(addr)}: ${why}`, {
      hint: 'use host:port (e.g. 10.0.0.2:7946) or a multiaddr (e.g. /ip4/10.0.0.2/tcp/7946)', exitCode: 2
    })
  }
}

/** A write the writer table does not allow this node (kind unknown, or another node's record). */
export class WriteNotAllowedError extends BerthError {
  static readonly CODE = 'BERTH_ERR_WRITE_NOT_ALLOWED'
  constructor (key: string, why: string) {
    super(WriteNotAllowedError.CODE, `this node may not write ${key}: ${why}`, { key, exitCode: 2 })
  }
}

/** A record or key that breaks the size/type limits of the replicated state. */
export class InvalidRecordError extends BerthError {
  static readonly CODE = 'BERTH_ERR_INVALID_RECORD'
  constructor (key: string, why: string) {
    super(InvalidRecordError.CODE, `invalid record ${key}: ${why}`, { key, exitCode: 2 })
  }
}

/** The pre-shared key file is missing or not in the `generateKey` format. */
export class PskError extends BerthError {
  static readonly CODE = 'BERTH_ERR_PSK'
  constructor (path: string, why: string, opts: BerthErrorOptions = {}) {
    super(PskError.CODE, `pre-shared key ${path}: ${why}`, {
      hint: 'berth cluster init writes a new key; copy the same file to every node', path, ...opts
    })
  }
}

/** The cluster node is not started (or already stopped). */
export class ClusterNotStartedError extends BerthError {
  static readonly CODE = 'BERTH_ERR_CLUSTER_NOT_STARTED'
  constructor (what: string) {
    super(ClusterNotStartedError.CODE, `${what}: the cluster node is not running`)
  }
}
