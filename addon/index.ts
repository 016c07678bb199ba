// The one file that loads the native addon (addon/build/Release/berth.node) and gives it types.
// Everything else imports from here, so tests can substitute a fake `Addon`.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

export type CgroupVersion = 'v1' | 'v2' | null

/** What this kernel and machine can do, asked of the kernel itself (fast: a few ms). */
export interface Features {
  /** a new user namespace can be made */
  userns: boolean
  /** open_tree + mount_setattr(MOUNT_ATTR_IDMAP) works on "/" with a fresh user namespace */
  idmappedMounts: boolean
  /** SECCOMP_RET_USER_NOTIF is available */
  seccompUserNotif: boolean
  /** SECCOMP_IOCTL_NOTIF_ADDFD is understood (5.9+) */
  seccompAddfd: boolean
  /** pidfd_open works */
  pidfd: boolean
  /** overlayfs is available (registered or loadable) */
  overlay: boolean
  /** where each controller lives: a v1 hierarchy, the v2 one, or nowhere */
  cgroups: { cpu: CgroupVersion, memory: CgroupVersion, pids: CgroupVersion }
  /** uname -r */
  kernel: string
}

/** What the proxy filter traps: network (default true; off with --net host), uname, open. */
export interface ProxyTraps { network?: boolean, uname?: boolean, open?: boolean }

/** The addon's surface. `addon` below is the real one; tests may pass a fake. */
export interface Addon {
  probeFeatures(): Features
  /** syscalls the default seccomp filter denies (some only with certain arguments: clone, personality, socket) */
  seccompDeniedSyscalls(): string[]
  /** the default filter as the kernel takes it: struct sock_filter[], 8 bytes each, host byte order */
  seccompProgram(): Buffer
  /** the filter a container's command runs under (docs/proxy.md, "What the filter traps"), same layout */
  seccompProxyProgram(traps: ProxyTraps): Buffer
  /** capability names a container keeps (Docker's default set), e.g. "CAP_CHOWN" */
  defaultCapabilities(): string[]
  /** absolute path of the per-container helper executable */
  shimPath(): string
}

/**
 * A failure in native code. `code` is a stable BERTH_ERR_* code; `errno` is the positive errno
 * (as in the shim's JSON lines), `syscall` and `path` say what was being done.
 */
export class NativeError extends Error {
  code: string
  errno?: number
  syscall?: string
  path?: string

  constructor (message: string, fields: { code: string, errno?: number, syscall?: string, path?: string }, options?: ErrorOptions) {
    super(message, options)
    this.name = 'NativeError'
    this.code = fields.code
    if (fields.errno !== undefined) this.errno = fields.errno
    if (fields.syscall !== undefined) this.syscall = fields.syscall
    if (fields.path !== undefined) this.path = fields.path
  }
}

/** The raw binding, as berth.node exports it. */
interface Binding {
  probeFeatures(): Features
  seccompDeniedSyscalls(): string[]
  seccompProgram(): Buffer
  seccompProxyProgram(traps: ProxyTraps): Buffer
  defaultCapabilities(): string[]
}

// This module runs from addon/index.ts (tests, development) or from its build output
// dist/addon/index.js (the daemon); the binaries are in addon/build/Release either way.
const ADDON_DIR = new URL(import.meta.url.includes('/dist/addon/') ? '../../addon/' : './', import.meta.url)
const BINDING_PATH = fileURLToPath(new URL('build/Release/berth.node', ADDON_DIR))
const SHIM_PATH = fileURLToPath(new URL('build/Release/berth-shim', ADDON_DIR))

let binding: Binding | undefined

// Loaded on first use, so importing this module (for its types, or with a fake) needs no build.
function load (): Binding {
  if (binding === undefined) {
    const require = createRequire(import.meta.url)
    try {
      binding = require(BINDING_PATH) as Binding
    } catch (err) {
      throw new NativeError(
        `BERTH_ERR_ADDON: cannot load ${BINDING_PATH}: ${(err as Error).message}; hint: sh scripts/build-addon.sh builds it (npm ci runs it)`,
        { code: 'BERTH_ERR_ADDON', path: BINDING_PATH }, { cause: err })
    }
  }
  return binding
}

// Native errors arrive as plain Errors carrying code/errno/syscall/path; give them our class.
function call<T> (fn: (b: Binding) => T): T {
  const b = load()
  try {
    return fn(b)
  } catch (err) {
    const e = err as { message?: string, code?: unknown, errno?: unknown, syscall?: unknown, path?: unknown }
    if (typeof e?.code === 'string' && e.code.startsWith('BERTH_ERR_')) {
      throw new NativeError(String(e.message), {
        code: e.code,
        errno: typeof e.errno === 'number' ? e.errno : undefined,
        syscall: typeof e.syscall === 'string' ? e.syscall : undefined,
        path: typeof e.path === 'string' ? e.path : undefined
      }, { cause: err })
    }
    throw err
  }
}

export function probeFeatures (): Features {
  return call(b => b.probeFeatures())
}

export function seccompDeniedSyscalls (): string[] {
  return call(b => b.seccompDeniedSyscalls())
}

export function seccompProgram (): Buffer {
  return call(b => b.seccompProgram())
}

export function seccompProxyProgram (traps: ProxyTraps = {}): Buffer {
  return call(b => b.seccompProxyProgram(traps))
}

export function defaultCapabilities (): string[] {
  return call(b => b.defaultCapabilities())
}

export function shimPath (): string {
  return SHIM_PATH
}

export const addon: Addon = { probeFeatures, seccompDeniedSyscalls, seccompProgram, seccompProxyProgram, defaultCapabilities, shimPath }
