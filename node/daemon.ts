// berthd: wires storage → runtime → API, starts them in that order and stops them in reverse.
// Stopping the daemon never stops containers: their shims keep them, and the next start
// re-adopts them (DESIGN.md invariant 6).
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore, createImageStore, type Store, type ImageStore } from '../storage/index.ts'
import { shimPath, probeFeatures } from '../addon/index.ts'
import { ApiServer } from './api/server.ts'
import type { DaemonConfig } from './config.ts'
import { berthError } from './errors.ts'
import { logger } from './log.ts'
import { Runtime, type RuntimeStore } from './runtime/runtime.ts'
import { ProxyController, StoreEndpointRegistry } from './proxy/controller.ts'

const log = logger('berth:node:daemon')
export const VERSION = '0.1.0'

export interface Daemon {
  readonly config: DaemonConfig
  readonly runtime: Runtime
  readonly store: Store
  readonly images: ImageStore
  readonly proxy: ProxyController
  readonly nodeId: string
  stop (): Promise<void>
}

/** This node's id, made once and kept in the data dir (the fleet layer replaces it by its peer id). */
async function nodeIdOf (dataDir: string): Promise<string> {
  const path = join(dataDir, 'node-id')
  try {
    const id = (await readFile(path, 'utf8')).trim()
    if (/^[0-9a-f]{16,64}$/.test(id)) return id
  } catch {}
  const id = randomBytes(8).toString('hex')
  await writeFile(path, id + '\n', { mode: 0o644 })
  return id
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
  await mkdir(config.dataDir, { recursive: true, mode: 0o711 })
  // Containers' roots are unprivileged host uids that must traverse into their bundles.
  await chmod(config.dataDir, 0o711)
  const store = await openStore({ path: join(config.dataDir, 'store') })
  let images: ImageStore | undefined
  let runtime: Runtime | undefined
  let proxy: ProxyController | undefined
  let api: ApiServer | undefined
  const stop = async (): Promise<void> => {
    await api?.stop()
    proxy?.stop()
    await runtime?.stop()
    await store.close()
  }
  const nodeId = await nodeIdOf(config.dataDir)
  try {
    images = createImageStore({ store, dataDir: config.dataDir })
    await images.cleanup()
    await images.ensureHostImage()
    runtime = new Runtime({ store: runtimeStore(store), images }, {
      dataDir: config.dataDir,
      shimPath: shimPath(),
      logMaxBytes: config.logMaxBytes
    })
    const endpoints = new StoreEndpointRegistry(store)
    await endpoints.load()
    proxy = new ProxyController({ runtime, store, endpoints }, { nodeId, portRange: config.portRange })
    runtime.setProxy(proxy)
    await runtime.start()
    await proxy.start()
    const features = probeFeatures()
    const rt = runtime
    api = new ApiServer({
      runtime: rt,
      images,
      proxy,
      info: () => ({
        version: VERSION,
        nodeId,
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
  return { config, runtime, store, images, proxy, nodeId, stop }
}
