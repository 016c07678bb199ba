// berthd: wires storage → runtime → API, starts them in that order and stops them in reverse.
// Stopping the daemon never stops containers: their shims keep them, and the next start
// re-adopts them (DESIGN.md invariant 6).
import { chmod, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore, createImageStore, type Store, type ImageStore } from '../storage/index.ts'
import { shimPath, probeFeatures } from '../addon/index.ts'
import { ApiServer } from './api/server.ts'
import type { DaemonConfig } from './config.ts'
import { berthError } from './errors.ts'
import { logger } from './log.ts'
import { Runtime, type RuntimeStore } from './runtime/runtime.ts'
import { ProxyController } from './proxy/controller.ts'
import { PortFirewall } from './proxy/firewall.ts'
import { advertisedAddress, FleetEndpointRegistry, publishUsage, startFleet, watchMemberAddresses } from './fleet.ts'
import type { ClusterNode } from '../cluster/index.ts'

const log = logger('berth:node:daemon')
export const VERSION = '0.1.0'

export interface Daemon {
  readonly config: DaemonConfig
  readonly runtime: Runtime
  readonly store: Store
  readonly images: ImageStore
  readonly proxy: ProxyController
  readonly cluster: ClusterNode
  readonly nodeId: string
  stop (): Promise<void>
}

function runtimeStore (store: Store): RuntimeStore {
  return {
    loadContainers: async () => {
      const { entries, skipped } = await store.containers.list()
      for (const s of skipped) log.error('skipping corrupt container record %s: %s', s.key, s.reason)
      return entries.map(e => e.value)
    },
    saveContainer: async rec => await store.putContainer(rec),
    deleteContainer: async rec => await store.deleteContainer(rec.id)
  }
}

export async function startDaemon (config: DaemonConfig): Promise<Daemon> {
  if (process.getuid?.() !== 0) {
    throw berthError('BERTH_ERR_NOT_ROOT', 'berthd must run as root', 'run it with sudo, or as the systemd unit in deploy/', 125)
  }
  // Only root enters the data dir: it holds images (untrusted content with setuid binaries and
  // whatever else their archives carried) and containers' files. Nothing needs a container's
  // uid to traverse it: the shim opens and clones every path as host root. chmod also tightens
  // a data dir made 0711 by older versions (images/ and containers/ are tightened by their owners).
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
  await chmod(config.dataDir, 0o700)
  const store = await openStore({ path: join(config.dataDir, 'store') })
  let images: ImageStore | undefined
  let runtime: Runtime | undefined
  let proxy: ProxyController | undefined
  let cluster: ClusterNode | undefined
  let api: ApiServer | undefined
  let firewall: PortFirewall | undefined
  let unwatchMembers: (() => void) | undefined
  let adopted = false
  const stop = async (): Promise<void> => {
    // The cluster's timers are unref'd; once the API and the shims' sockets are closed nothing
    // else keeps the loop alive, and the leave's wait would end the process half-way.
    const keepAlive = setInterval(() => {}, 1000)
    try {
      await stopAll()
    } finally {
      clearInterval(keepAlive)
    }
  }
  const stopAll = async (): Promise<void> => {
    await api?.stop()
    proxy?.stop()
    unwatchMembers?.()
    // Workloads outlive the daemon, and so does the filter that guards their ports (fail-closed,
    // frozen at the last member set); with none running there is nothing to guard.
    await firewall?.stop({ keep: !adopted || runtime === undefined || runtime.list(false).length > 0 })
    await runtime?.stop()
    // A graceful leave: the others mark this node left at once instead of suspecting it.
    await cluster?.leave().catch(err => log.error(err))
    await cluster?.stop()
    await store.close()
  }
  try {
    // Before anything else: without the port filter the daemon does not start (docs/proxy.md).
    firewall = new PortFirewall({ dataDir: config.dataDir })
    await firewall.start()
    cluster = await startFleet(config, store, VERSION)
    const nodeId = cluster.id
    images = createImageStore({ store, dataDir: config.dataDir })
    await images.cleanup()
    await images.ensureHostImage()
    runtime = new Runtime({ store: runtimeStore(store), images }, {
      dataDir: config.dataDir,
      shimPath: shimPath(),
      logMaxBytes: config.logMaxBytes,
      routedMax: config.routedMax,
      pidsController: probeFeatures().cgroups.pids !== null,
      socketPath: config.socketPath
    })
    const fleet = cluster
    const endpoints = new FleetEndpointRegistry(fleet)
    proxy = new ProxyController({ runtime, store, endpoints, filter: firewall }, { nodeId, portRange: config.portRange, hostAddress: () => advertisedAddress(fleet) })
    runtime.setProxy(proxy)
    await runtime.start()
    adopted = true
    const fw = firewall
    unwatchMembers = watchMemberAddresses(fleet, addrs => fw.setMembers(addrs))
    await proxy.start()
    publishUsage(fleet, runtime)
    const features = probeFeatures()
    const rt = runtime
    api = new ApiServer({
      runtime: rt,
      images,
      proxy,
      cluster,
      info: () => ({
        version: VERSION,
        nodeId,
        nodeName: config.fleet.nodeName,
        fleet: config.fleet.enabled ? 'libp2p' : 'alone',
        dataDir: config.dataDir,
        socket: config.socketPath,
        pid: process.pid,
        features,
        containers: rt.list(true).length,
        running: rt.list(false).length
      })
    }, { socketPath: config.socketPath })
    await api.start()
  } catch (err) {
    await stop().catch(() => {})
    throw err
  }
  return { config, runtime, store, images, proxy, cluster, nodeId: cluster.id, stop }
}
