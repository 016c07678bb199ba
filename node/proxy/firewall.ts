// Who may reach an internal (`--port`) host port: this node and the fleet's live members, nobody
// else (docs/proxy.md, "Who reaches a port"). The supervisor binds internal ports on every
// address of the host, so without a filter anyone who reaches the machine reaches every service
// with no credential. Each daemon keeps one nftables table of its own (`inet berth_<hash of its
// data dir>`, so several daemons on one machine never touch each other's) with three sets:
//
//   internal  the host ports this daemon allocated from its range for --port (not --publish)
//   members4  the IPv4 / IPv6 addresses the fleet's live members announce
//   members6
//
// and one input chain: a TCP or UDP packet to an internal port is accepted from loopback, from
// any address of this host (`fib saddr type local`: containers reach local endpoints through
// host sockets) and from a member; anything else gets a TCP reset or an ICMP port-unreachable,
// as if nothing listened. Published ports are never in `internal`, so they stay public even
// when they fall inside the range. Every change is one `nft -f` transaction that replaces a
// whole set: the kernel switches from the old set to the new one atomically.
//
// The table outlives the daemon on purpose (containers do): a crash or a stop with workloads
// still running leaves it as it was — fail-closed, the last known members keep access until
// the next start rebuilds it. A stop with no running container removes it.
import { createHash } from 'node:crypto'
import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { isIPv4, isIPv6 } from 'node:net'
import { delimiter, join, resolve } from 'node:path'
import { BerthError } from '../errors.ts'
import { logger } from '../log.ts'

const log = logger('berth:node:firewall')

const NFT_TIMEOUT_MS = 15_000
const RETRY_MS = 5_000
/** how often the table is checked for having been removed behind berthd's back */
const CHECK_MS = 10_000

/** The nftables port filter cannot be found, installed or updated. CLI exit 125. */
export class FirewallError extends BerthError {
  static readonly CODE = 'BERTH_ERR_FIREWALL'
  constructor (message: string, hint: string, cause?: unknown) {
    super(FirewallError.CODE, message, { hint, exitCode: 125, cause })
  }
}

const INSTALL_HINT = 'berthd keeps --port services private to this node and its fleet with nftables: install it (apt-get install nftables; npm start does), or set BERTH_NFT to the nft binary'
const KERNEL_HINT = 'berthd needs the kernel\'s nf_tables (CONFIG_NF_TABLES, with nft_fib_inet and nft_reject_inet; modprobe nf_tables) and a working nft; see docs/proxy.md'

/** `berth_` + 12 hex digits of the data dir's path: unique per daemon, stable across restarts. */
export function firewallTableName (dataDir: string): string {
  return 'berth_' + createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12)
}

/** `BERTH_NFT`, else `nft` on PATH or in the sbin directories (a non-root PATH may lack them). */
export function findNft (env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.BERTH_NFT !== undefined && env.BERTH_NFT !== '') return env.BERTH_NFT
  const dirs = [...(env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    if (dir === '') continue
    const p = join(dir, 'nft')
    try {
      accessSync(p, constants.X_OK)
      return p
    } catch {}
  }
  return undefined
}

/** What the controller needs: the internal ports to guard, applied before a workload can bind. */
export interface PortFilter {
  setPorts (ports: Iterable<number>): void
  /** Resolves once everything set so far is in the kernel; rejects with a FirewallError if not. */
  sync (): Promise<void>
}

/** Each set's elements; undefined: not given yet, the kernel's set is left as it is. */
interface Sets { ports?: string[], v4?: string[], v6?: string[] }

export class PortFirewall implements PortFilter {
  readonly table: string
  private readonly dataDir: string
  private nft: string | undefined
  private started = false
  private stopped = false
  /** what the sets should hold, and what they are known to hold (nothing known at start) */
  private readonly want: Sets = {}
  private readonly applied: Sets = {}
  private queue: Promise<void> = Promise.resolve()
  private retryTimer?: NodeJS.Timeout
  private checkTimer?: NodeJS.Timeout

  constructor (init: { dataDir: string }) {
    this.dataDir = resolve(init.dataDir)
    this.table = firewallTableName(this.dataDir)
  }

  /**
   * Finds nft and installs the table's skeleton (sets and chains). An existing table keeps its
   * sets' contents — after a crash or restart they still guard the running workloads' ports
   * until the first sync replaces them with the current ones.
   */
  async start (): Promise<void> {
    this.nft = findNft()
    if (this.nft === undefined) {
      throw new FirewallError('cannot guard internal ports: nft (nftables) not found', INSTALL_HINT)
    }
    await this.run(this.skeleton())
    this.started = true
    log('table inet %s installed', this.table)
    // `flush ruleset` (e.g. a restart of Debian's nftables.service) removes every table, ours
    // too: put it back, sets and all, rather than leave the ports open until the next change.
    this.checkTimer = setInterval(() => {
      const next = this.queue.then(async () => await this.check())
      this.queue = next.catch(err => log.error('%s', err instanceof BerthError ? err.toDisplayString() : err.message))
    }, CHECK_MS)
    this.checkTimer.unref()
  }

  private skeleton (): string[] {
    const t = `inet ${this.table}`
    // A comment says whose table it is to someone reading `nft list ruleset`.
    const owner = `berthd ${this.dataDir}`.replace(/[^A-Za-z0-9 ._/:-]/g, '_').slice(0, 100)
    return [
      `add table ${t} { comment "${owner}: --port only from this node and fleet members"; }`,
      `add set ${t} internal { type inet_service; }`,
      `add set ${t} members4 { type ipv4_addr; }`,
      `add set ${t} members6 { type ipv6_addr; }`,
      // An accept in another table's chain does not end the hook, a reject here does: this
      // chain's verdict on internal ports holds whatever else the host's ruleset says.
      `add chain ${t} input { type filter hook input priority filter - 10; policy accept; }`,
      `add chain ${t} guard`,
      `flush chain ${t} input`,
      `flush chain ${t} guard`,
      `add rule ${t} input meta l4proto { tcp, udp } th dport @internal jump guard`,
      `add rule ${t} guard iif "lo" accept`,
      `add rule ${t} guard fib saddr type local accept`,
      `add rule ${t} guard ip saddr @members4 accept`,
      `add rule ${t} guard ip6 saddr @members6 accept`,
      // As if no one listened: a reset for TCP, port-unreachable for the rest.
      `add rule ${t} guard meta l4proto tcp counter reject with tcp reset`,
      `add rule ${t} guard counter reject`
    ]
  }

  private async check (): Promise<void> {
    if (!this.started || this.stopped) return
    try {
      await this.exec(['list', 'table', 'inet', this.table])
      return
    } catch {}
    log.error('nftables table inet %s was removed (flush ruleset?); putting it back', this.table)
    // Skeleton and every set in one transaction: no moment with the chain but empty sets.
    for (const key of ['ports', 'v4', 'v6'] as const) delete this.applied[key]
    await this.apply(this.skeleton())
  }

  setPorts (ports: Iterable<number>): void {
    this.want.ports = [...new Set([...ports].filter(p => Number.isInteger(p) && p > 0 && p < 65536))].sort((a, b) => a - b).map(String)
    this.syncInBackground()
  }

  /** The live members' addresses (IPv4 and IPv6; anything else is ignored). */
  setMembers (addrs: Iterable<string>): void {
    const all = [...new Set(addrs)]
    this.want.v4 = all.filter(a => isIPv4(a)).sort()
    this.want.v6 = all.filter(a => isIPv6(a)).map(a => a.toLowerCase()).sort()
    this.syncInBackground()
  }

  sync (): Promise<void> {
    const next = this.queue.then(async () => await this.apply())
    this.queue = next.catch(() => {})
    return next
  }

  /**
   * Ends updates. With `keep` (workloads still running) the table stays as it is, guarding
   * their ports while no daemon runs; without, it is removed.
   */
  async stop (opts: { keep: boolean }): Promise<void> {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    if (this.checkTimer !== undefined) clearInterval(this.checkTimer)
    this.stopped = true
    await this.queue
    if (!this.started || opts.keep) return
    this.started = false
    await this.run([`delete table inet ${this.table}`]).catch(err => log.error('removing nftables table %s: %s', this.table, err.message))
  }

  /** Errors are loud and retried: a stale member set is a hole, a missing port one too. */
  private syncInBackground (): void {
    if (!this.started || this.stopped) return
    this.sync().catch(err => {
      log.error('%s (retrying in %d s)', err instanceof BerthError ? err.toDisplayString() : err.message, RETRY_MS / 1000)
      if (this.retryTimer !== undefined || this.stopped) return
      this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.syncInBackground() }, RETRY_MS)
      this.retryTimer.unref()
    })
  }

  /** Brings the kernel's sets to what is wanted, after `prefix` (in the same transaction). */
  private async apply (prefix: string[] = []): Promise<void> {
    if (!this.started) return
    const want: Sets = { ...this.want }
    const t = `inet ${this.table}`
    const lines: string[] = [...prefix]
    // A set not given yet keeps what an earlier run left in it: the ports of workloads that
    // outlived that run stay guarded until the controller has claimed them again.
    for (const [set, key] of [['internal', 'ports'], ['members4', 'v4'], ['members6', 'v6']] as const) {
      const elems = want[key]
      const had = this.applied[key]
      if (elems === undefined || (had !== undefined && same(had, elems))) continue
      lines.push(`flush set ${t} ${set}`)
      if (elems.length > 0) lines.push(`add element ${t} ${set} { ${elems.join(', ')} }`)
    }
    if (lines.length === 0) return
    await this.run(lines)
    Object.assign(this.applied, want)
    log('%s: internal ports [%s], members [%s]', this.table, (want.ports ?? ['(kept)']).join(' '), [...(want.v4 ?? ['(kept)']), ...(want.v6 ?? [])].join(' '))
  }

  /** One `nft -f -` run: the whole script is one transaction (all of it or none). */
  private async run (lines: string[]): Promise<void> {
    await this.exec(['-f', '-'], lines.join('\n') + '\n')
  }

  private async exec (args: string[], input = ''): Promise<void> {
    const nft = this.nft
    if (nft === undefined) throw new FirewallError('cannot guard internal ports: nft (nftables) not found', INSTALL_HINT)
    await new Promise<void>((resolve, reject) => {
      let stderr = ''
      let child
      try {
        child = spawn(nft, args, { stdio: ['pipe', 'ignore', 'pipe'] })
      } catch (err: any) {
        reject(new FirewallError(`cannot run ${nft}: ${err.message}`, INSTALL_HINT, err))
        return
      }
      const timer = setTimeout(() => { child.kill('SIGKILL') }, NFT_TIMEOUT_MS)
      child.stderr.on('data', (b: Buffer) => { if (stderr.length < 4096) stderr += b.toString() })
      child.stdin.on('error', () => {})
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        reject(new FirewallError(`cannot run ${nft}: ${err.code ?? err.message}`, INSTALL_HINT, err))
      })
      child.on('close', (code, signal) => {
        clearTimeout(timer)
        if (code === 0) { resolve(); return }
        // nft prints the failing line and a caret under it; the "Error:" line says why.
        const why = stderr.split('\n').find(l => l.startsWith('Error:')) ?? stderr.split('\n').find(l => l.trim() !== '')
        const status = signal !== null ? `killed by ${signal}` : `exit ${code ?? '?'}`
        reject(new FirewallError(`nftables table ${this.table}: ${nft} failed (${status})${why !== undefined ? `: ${why.trim()}` : ''}`, KERNEL_HINT))
      })
      child.stdin.end(input)
    })
  }
}

function same (a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
