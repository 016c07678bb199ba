// The policy that turns state into proxy-namespace rules (DESIGN.md: node/ owns it). It keeps
// the endpoint records and chaos rules, builds each running workload's rule table and hosts file
// (docs/proxy.md), and pushes them to the shims whenever something they depend on changes.
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ContainerRecord, ProxySpec, Store, Table } from '../../storage/index.ts'
import { NotFoundError, UsageError } from '../errors.ts'
import { logger } from '../log.ts'
import type { ProxyHooks, Runtime, RunSpec } from '../runtime/runtime.ts'
import { CallCounter } from './calls.ts'
import { parseChaosRule, type ChaosInput, type ChaosRule } from './chaos.ts'
import type { PortFilter } from './firewall.ts'
import { assignVips } from './net.ts'
import { HostPortAllocator, DEFAULT_PORT_RANGE } from './ports.ts'

const log = logger('berth:node:proxy')

/** `endpoint/<workload>/<port>` of DESIGN.md's data model. */
export interface EndpointRecord {
  workload: string
  name: string
  port: number
  proto: string
  node: string
  hostAddress: string
  hostPort: number
  updatedAt: number
}

/**
 * Where endpoints live. Locally a store sublevel; once the fleet's replicated state exists it
 * carries the same records (`endpoint/<workload>/<port>`, written only by the node running it).
 */
export interface EndpointRegistry {
  list (): EndpointRecord[]
  put (rec: EndpointRecord): Promise<void>
  /** Removes what `node` published for `workload`. */
  removeWorkload (workload: string, node: string): Promise<void>
  onChange (fn: () => void): void
}

export interface ProxyInit {
  nodeId: string
  portRange?: [number, number]
  /** how other nodes reach this one (published in endpoint records for ports bound to all addresses) */
  hostAddress?: () => string
}

interface Pushed { rules: string, hosts: string }

export interface PortView { workload: string, name: string, port: number, proto: string, hostAddress: string, hostPort: number, published: boolean, bound: boolean }
export interface ChaosView extends ChaosRule { hits: number, expired: boolean }
/**
 * What the supervisor did with one kind of trapped call of one workload: `action` is routed,
 * bound, denied, faulted or emulated; `target` the address:port it acted on ('' for calls
 * without one: sysinfo, mknod, mount, uname, open), or "other" for the targets past the bound
 * (node/proxy/calls.ts).
 */
export interface CallView { workload: string, call: string, action: string, target: string, count: number, lastAt: number }

export class ProxyController implements ProxyHooks {
  private readonly runtime: Runtime
  private readonly endpoints: EndpointRegistry
  private readonly chaosTable: Table<ChaosRule>
  private readonly chaos = new Map<string, ChaosRule>()
  /** Cumulative hits per rule, per container (each shim counts its own). */
  private readonly hits = new Map<string, Map<string, number>>()
  /** Trapped calls per container since this daemon started, by call/action/target (the shims' `calls` events), bounded. */
  private readonly calls = new Map<string, { workload: string, counter: CallCounter }>()
  private readonly ports: HostPortAllocator
  /** keeps internal ports private to this node and the fleet (firewall.ts); none in unit tests */
  private readonly filter: PortFilter | undefined
  /** claims made while the runtime loads its records are pushed to the filter all at once */
  private filterLive = false
  private readonly nodeId: string
  private readonly hostAddress: () => string
  private readonly pushed = new Map<string, Pushed>()
  private version = 0
  private refreshQueued = false
  private refreshing: Promise<void> = Promise.resolve()
  private expiryTimer?: NodeJS.Timeout

  constructor (components: { runtime: Runtime, store: Store, endpoints: EndpointRegistry, filter?: PortFilter }, init: ProxyInit) {
    this.runtime = components.runtime
    this.endpoints = components.endpoints
    this.filter = components.filter
    this.chaosTable = components.store.sublevel<ChaosRule>('chaos')
    this.ports = new HostPortAllocator(init.portRange ?? DEFAULT_PORT_RANGE)
    this.nodeId = init.nodeId
    this.hostAddress = init.hostAddress ?? (() => '127.0.0.1')
  }

  /** After the runtime has loaded (and claimed the ports of) every container record. */
  async start (): Promise<void> {
    // The first push replaces whatever an earlier run left in the filter with every port held
    // now; a failure stops the daemon rather than leave a port unguarded.
    this.filterLive = true
    this.filter?.setPorts(this.ports.internalPorts())
    await this.filter?.sync()
    for (const e of (await this.chaosTable.list()).entries) this.chaos.set(e.key, e.value)
    this.endpoints.onChange(() => this.refresh())
    this.runtime.on('container:started', () => this.refresh())
    this.runtime.on('container:exited', rec => {
      this.endpoints.removeWorkload(rec.name, this.nodeId).catch(err => log.error(err))
      this.refresh()
    })
    this.runtime.on('container:removed', rec => {
      this.hits.delete(rec.id)
      this.calls.delete(rec.id)
      this.pushed.delete(rec.id)
      this.endpoints.removeWorkload(rec.name, this.nodeId).catch(err => log.error(err))
      this.refresh()
    })
    this.scheduleExpiry()
    this.refresh()
  }

  stop (): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer)
  }

  // ---- ProxyHooks ------------------------------------------------------------------------

  allocate (name: string, spec: RunSpec): ProxySpec {
    for (const m of spec.mounts ?? []) {
      if (!existsSync(m.src)) throw new UsageError('BERTH_ERR_BAD_MOUNT', `--mount source ${m.src} does not exist on this node`, 'give a host path that exists')
    }
    const ports: ProxySpec['ports'] = []
    const seen = new Set<string>()
    try {
      for (const p of spec.publish ?? []) {
        this.ports.claim(p.hostPort, name)
        ports.push({ name: `p${p.port}`, port: p.port, proto: p.proto, hostPort: p.hostPort, hostAddress: '0.0.0.0', published: true })
      }
      for (const p of spec.ports ?? []) {
        if (seen.has(p.name) || ports.some(q => q.name === p.name)) {
          throw new UsageError('BERTH_ERR_BAD_PORT', `port name "${p.name}" is declared twice`, 'give each --port its own NAME')
        }
        seen.add(p.name)
        ports.push({ name: p.name, port: p.port, proto: p.proto, hostPort: this.ports.allocate(name), hostAddress: '0.0.0.0', published: false })
      }
    } catch (err) {
      this.ports.releaseOwner(name)
      throw err
    }
    this.updateFilter()
    return {
      ports,
      egress: spec.egress ?? { mode: 'all', cidrs: [] },
      ...(spec.unameRelease !== undefined ? { unameRelease: spec.unameRelease } : {}),
      mounts: spec.mounts ?? [],
      chaosCalls: spec.chaosCalls ?? []
    }
  }

  claim (rec: ContainerRecord): void {
    for (const p of rec.proxy?.ports ?? []) this.ports.claim(p.hostPort, rec.name, !p.published)
    this.updateFilter()
  }

  release (name: string): void {
    this.ports.releaseOwner(name)
    this.updateFilter()
  }

  private updateFilter (): void {
    if (this.filterLive) this.filter?.setPorts(this.ports.internalPorts())
  }

  async prepare (rec: ContainerRecord, bundle: string): Promise<{ rulesFile: string, hostsFile: string }> {
    // The workload must not bind an internal port before the filter guards it.
    if ((rec.proxy?.ports ?? []).some(p => !p.published)) {
      this.filter?.setPorts(this.ports.internalPorts())
      await this.filter?.sync()
    }
    const rulesFile = join(bundle, 'rules.json')
    const hostsFile = join(bundle, 'hosts')
    const { rules, hosts } = this.build(rec, this.serviceView())
    await writeFile(rulesFile, rules, { mode: 0o600 })
    await writeFile(hostsFile, hosts, { mode: 0o644 })
    this.pushed.set(rec.id, { rules: stripVersion(rules), hosts })
    return { rulesFile, hostsFile }
  }

  onShimEvent (rec: ContainerRecord, ev: Record<string, unknown>): void {
    if (ev.event === 'port' && typeof ev.name === 'string' && typeof ev.hostPort === 'number') {
      this.endpoints.put({
        workload: rec.name,
        name: ev.name,
        port: Number(ev.port),
        proto: String(ev.proto ?? 'tcp'),
        node: this.nodeId,
        // Bound to every address: others reach it on this node's advertised one.
        hostAddress: ev.hostAddress === undefined || ev.hostAddress === '0.0.0.0' || ev.hostAddress === '::' ? this.hostAddress() : String(ev.hostAddress),
        hostPort: ev.hostPort,
        updatedAt: Date.now()
      }).catch(err => log.error(err))
    } else if (ev.event === 'totals' && typeof ev.chaosHits === 'object' && ev.chaosHits !== null) {
      this.setHitTotals(rec, ev.chaosHits as Record<string, number>)
    } else if (ev.event === 'calls') {
      // Events carry what happened since the previous one; the shim's `state` has the hit totals.
      if (typeof ev.chaosHits === 'object' && ev.chaosHits !== null) {
        const mine = this.hits.get(rec.id) ?? new Map<string, number>()
        for (const [id, n] of Object.entries(ev.chaosHits as Record<string, number>)) {
          if (typeof n === 'number') mine.set(id, (mine.get(id) ?? 0) + n)
        }
        this.hits.set(rec.id, mine)
      }
      if (Array.isArray(ev.counts)) this.countCalls(rec, ev.counts)
    }
  }

  private countCalls (rec: ContainerRecord, counts: unknown[]): void {
    let mine = this.calls.get(rec.id)
    if (mine === undefined) {
      mine = { workload: rec.name, counter: new CallCounter() }
      this.calls.set(rec.id, mine)
    }
    const now = Date.now()
    for (const c of counts) {
      if (typeof c !== 'object' || c === null) continue
      const { call, action, target, n } = c as Record<string, unknown>
      if (typeof call !== 'string' || typeof action !== 'string' || typeof n !== 'number') continue
      mine.counter.add(call, action, typeof target === 'string' ? target : '', n, now)
    }
  }

  /**
   * What the proxy namespace did with the trapped calls of every workload on this node (or of
   * WORKLOAD, by name or id), counted since this daemon started; sorted by workload, call,
   * action, target.
   */
  listCalls (workload?: string): CallView[] {
    const ids = workload === undefined ? [...this.calls.keys()] : [this.runtime.get(workload).id]
    const out: CallView[] = []
    for (const id of ids) {
      const mine = this.calls.get(id)
      for (const r of mine?.counter.rows() ?? []) out.push({ workload: mine?.workload ?? '', ...r })
    }
    const cmp = (a: string, b: string): number => a < b ? -1 : a > b ? 1 : 0
    return out.sort((a, b) => cmp(a.workload, b.workload) || cmp(a.call, b.call) || cmp(a.action, b.action) || cmp(a.target, b.target))
  }

  /** After (re-)adoption: the shim's running totals replace what this process counted. */
  setHitTotals (rec: ContainerRecord, totals: Record<string, number>): void {
    const mine = new Map<string, number>()
    for (const [id, n] of Object.entries(totals)) if (typeof n === 'number') mine.set(id, n)
    this.hits.set(rec.id, mine)
  }

  // ---- services and rules ----------------------------------------------------------------

  /**
   * Every workload with declared ports is a service, reachable by name at its VIPs: the ones
   * here (declared, bound or not yet) and, through the fleet's endpoint records, the ones on
   * other nodes.
   */
  private serviceView (): { vips: Map<string, { v4: string, v6: string }>, ports: Map<string, Array<{ name: string, port: number }>> } {
    const ports = new Map<string, Array<{ name: string, port: number }>>()
    const add = (service: string, name: string, port: number): void => {
      const list = ports.get(service) ?? []
      if (!list.some(p => p.name === name)) list.push({ name, port })
      ports.set(service, list)
    }
    for (const c of this.runtime.list(true)) {
      if (c.state === 'removing') continue
      for (const p of c.proxy?.ports ?? []) add(c.name, p.name, p.port)
    }
    for (const e of this.endpoints.list()) add(e.workload, e.name, e.port)
    return { vips: assignVips(ports.keys()), ports }
  }

  serviceNames (): string[] { return [...this.serviceView().ports.keys()] }

  private build (rec: ContainerRecord, view: ReturnType<ProxyController['serviceView']>): Pushed {
    const endpoints = this.endpoints.list()
    const services = []
    for (const [name, ports] of view.ports) {
      const vip = view.vips.get(name)
      if (vip === undefined) continue
      for (const p of ports) {
        const targets = endpoints
          .filter(e => e.workload === name && e.name === p.name)
          .map(e => ({ address: e.node === this.nodeId ? '127.0.0.1' : e.hostAddress, port: e.hostPort }))
        services.push({ name, vips: [vip.v4, vip.v6], port: p.port, targets })
      }
    }
    const now = Date.now()
    const chaos = []
    for (const r of this.chaos.values()) {
      if (r.workload !== rec.name || (r.expiresAt !== 0 && r.expiresAt <= now)) continue
      // A service target matches both of its VIPs (a client may resolve either); an IP literal
      // itself; bind rules and `:PORT` targets any address (no `address` key).
      const vip = view.vips.get(r.service)
      const addresses = r.call === 'bind' || r.call === 'open' || r.service === ''
        ? [undefined]
        : vip !== undefined ? [vip.v4, vip.v6] : [r.service]
      for (const address of addresses) {
        chaos.push({
          id: r.id,
          call: r.call,
          ...(address !== undefined ? { address } : {}),
          port: r.port,
          ...(r.call === 'open' ? { path: r.path } : {}),
          errno: r.errno,
          delayMs: r.delayMs,
          probability: r.probability,
          expiresAt: r.expiresAt
        })
      }
    }
    const rules = JSON.stringify({
      version: this.nextVersion(),
      ports: (rec.proxy?.ports ?? []).map(p => ({ name: p.name, port: p.port, proto: p.proto, hostAddress: p.hostAddress, hostPort: p.hostPort })),
      services,
      egress: rec.proxy?.egress ?? { mode: 'all', cidrs: [] },
      chaos
    })
    const lines = [
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      `127.0.1.1\t${rec.name}`
    ]
    for (const [name, vip] of [...view.vips].sort((a, b) => a[0].localeCompare(b[0]))) {
      lines.push(`${vip.v4}\t${name} ${name}.berth`, `${vip.v6}\t${name} ${name}.berth`)
    }
    return { rules, hosts: lines.join('\n') + '\n' }
  }

  /** Rule versions only go up, also across daemon restarts (the shim ignores older tables). */
  private nextVersion (): number {
    this.version = Math.max(this.version + 1, Date.now())
    return this.version
  }

  /** Recomputes and pushes, coalescing bursts of changes into one pass. */
  refresh (): void {
    if (this.refreshQueued) return
    this.refreshQueued = true
    this.refreshing = this.refreshing.then(async () => {
      this.refreshQueued = false
      await this.push()
    }).catch(err => log.error(err))
  }

  /** Resolves once every change so far has been pushed. */
  async settled (): Promise<void> {
    await this.refreshing
  }

  private async push (): Promise<void> {
    const view = this.serviceView()
    for (const rec of this.runtime.list(false)) {
      const next = this.build(rec, view)
      const last = this.pushed.get(rec.id)
      const bare = stripVersion(next.rules)
      try {
        if (last?.hosts !== next.hosts) await writeFile(join(this.runtime.bundleOf(rec.id), 'hosts'), next.hosts)
        if (last?.rules !== bare) {
          if (!await this.runtime.sendRules(rec.id, next.rules)) continue
        }
        this.pushed.set(rec.id, { rules: bare, hosts: next.hosts })
      } catch (err: any) {
        log.error('pushing rules to %s: %s', rec.name, err.message)
      }
    }
  }

  // ---- ports and chaos, for the API ------------------------------------------------------

  listPorts (): PortView[] {
    const bound = new Set(this.endpoints.list().filter(e => e.node === this.nodeId).map(e => `${e.workload}/${e.name}`))
    const out: PortView[] = []
    for (const c of this.runtime.list(true)) {
      if (c.state !== 'running') continue
      for (const p of c.proxy?.ports ?? []) {
        out.push({ workload: c.name, name: p.name, port: p.port, proto: p.proto, hostAddress: p.hostAddress, hostPort: p.hostPort, published: p.published, bound: bound.has(`${c.name}/${p.name}`) })
      }
    }
    return out
  }

  async addChaos (input: ChaosInput): Promise<ChaosRule> {
    if (input.workload !== undefined && !this.runtime.list(true).some(c => c.name === input.workload)) {
      throw new NotFoundError('BERTH_ERR_CONTAINER_NOT_FOUND', `no workload "${input.workload}"`, 'berth ps -a lists them')
    }
    const names = new Set(this.serviceNames())
    const rule = parseChaosRule(input, name => names.has(name))
    if (rule.call === 'open') {
      const rec = this.runtime.get(rule.workload)
      if (!(rec.proxy?.chaosCalls ?? []).includes('open')) {
        throw new UsageError('BERTH_ERR_CALL_NOT_TRAPPED', `workload "${rule.workload}" does not trap open`, 'start it with berth run --chaos-calls open (trapping open costs every open a round trip)')
      }
    }
    await this.chaosTable.put(rule.id, rule)
    this.chaos.set(rule.id, rule)
    this.scheduleExpiry()
    this.refresh()
    await this.settled()
    return rule
  }

  listChaos (): ChaosView[] {
    const now = Date.now()
    return [...this.chaos.values()].sort((a, b) => a.createdAt - b.createdAt).map(r => ({
      ...r,
      hits: this.hitsOf(r.id),
      expired: r.expiresAt !== 0 && r.expiresAt <= now
    }))
  }

  private hitsOf (id: string): number {
    let n = 0
    for (const m of this.hits.values()) n += m.get(id) ?? 0
    return n
  }

  async removeChaos (id: string): Promise<void> {
    if (!this.chaos.has(id)) throw new NotFoundError('BERTH_ERR_CHAOS_NOT_FOUND', `no chaos rule "${id}"`, 'berth chaos ls lists them')
    await this.chaosTable.del(id)
    this.chaos.delete(id)
    this.refresh()
    await this.settled()
  }

  /** Expired rules leave the shims' tables at once (the shims also skip them by expiresAt). */
  private scheduleExpiry (): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer)
    const now = Date.now()
    const next = Math.min(...[...this.chaos.values()].filter(r => r.expiresAt > now).map(r => r.expiresAt))
    if (!Number.isFinite(next)) return
    this.expiryTimer = setTimeout(() => { this.refresh(); this.scheduleExpiry() }, Math.min(next - now + 10, 2 ** 31 - 1))
    this.expiryTimer.unref()
  }
}

function stripVersion (rules: string): string {
  return rules.replace(/^\{"version":[0-9]+,/, '{')
}
