// berth's seccomp filters against Docker's default profile. test/fixtures/docker-seccomp-default.json
// lists the x86_64 calls Docker's default profile does not allow to a container with Docker's
// default capabilities; every one of them must be denied by every filter berth installs, except
// the few listed in EXCEPTIONS below with the reason (README.md, "Hardening", says the same).
// Then a hostile workload tries the socket families and calls that used to get through.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { seccompProgram, seccompProxyProgram, type ProxyTraps } from '../addon/index.ts'
import { decode, run, verdictName, errnoRet, RET_ALLOW, RET_USER_NOTIF, type Insn } from '../addon/fixtures/bpf.ts'
import { daemonWithBusybox, skipReason } from './helpers.ts'

interface Fixture {
  denied: Array<{ name: string, nr: number, why: string }>
  conditional: Array<{ name: string, nr: number, deniedArg0?: number[], allowedArg0?: number[], deniedArg0Mask?: number, errno?: number }>
  newerThanProfile: { fromNr: number, errno: number }
}
const DOCKER = JSON.parse(readFileSync(new URL('./fixtures/docker-seccomp-default.json', import.meta.url), 'utf8')) as Fixture

const ENOSYS = 38

/**
 * The calls Docker's profile refuses that berth lets through, on purpose. `verdicts` are the
 * answers allowed instead of a denial; `filters` the filters where that holds (the others deny).
 */
const EXCEPTIONS: Record<string, { reason: string, verdicts: number[], filters: FilterName[] }> = {
  mount: {
    reason: 'trapped, not allowed: the supervisor mounts tmpfs and proc on the workload\'s behalf and refuses everything else (docs/proxy.md); the plain filter denies it',
    verdicts: [RET_USER_NOTIF],
    filters: ['proxy', 'proxy --net host', 'proxy uname+open']
  }
}

// Every filter berth installs: the plain one (an --init's init, and the shim's own helpers) and
// the proxy filter a container's command runs under, with each set of traps.
type FilterName = 'plain' | 'proxy' | 'proxy --net host' | 'proxy uname+open'
const FILTERS: Array<[FilterName, () => Buffer]> = [
  ['plain', () => seccompProgram()],
  ['proxy', () => seccompProxyProgram({})],
  ['proxy --net host', () => seccompProxyProgram({ network: false } satisfies ProxyTraps)],
  ['proxy uname+open', () => seccompProxyProgram({ uname: true, open: true })]
]

if (process.arch !== 'x64') {
  t.plan(0, `the fixture lists x86_64 syscall numbers; this is ${process.arch}`)
} else {
  for (const [filter, load] of FILTERS) {
    t.test(`the ${filter} filter denies everything Docker's default profile denies`, async t => {
      const prog: Insn[] = decode(load())
      const verdict = (nr: number, args: bigint[] = []): number => run(prog, { nr, args })
      t.ok(DOCKER.denied.length > 60, `${DOCKER.denied.length} calls in the fixture`)
      for (const { name, nr, why } of DOCKER.denied) {
        const v = verdict(nr)
        const ex = EXCEPTIONS[name]
        if (ex !== undefined && ex.filters.includes(filter)) {
          t.ok(ex.verdicts.includes(v), `${name}: ${verdictName(v)}, a listed exception (${ex.reason})`)
        } else {
          t.not(v, RET_ALLOW, `${name} (${nr}; Docker: ${why}) -> ${verdictName(v)}`)
          t.not(v, RET_USER_NOTIF, `${name} is not left to the supervisor`)
        }
      }
    })

    t.test(`the ${filter} filter denies what Docker denies only with some arguments`, async t => {
      const prog: Insn[] = decode(load())
      const verdict = (nr: number, args: bigint[] = []): number => run(prog, { nr, args })
      for (const c of DOCKER.conditional) {
        for (const a of c.deniedArg0 ?? []) {
          t.not(verdict(c.nr, [BigInt(a)]), RET_ALLOW, `${c.name}(${a}) denied`)
          // socket takes an int: bits above 32 are ignored by the kernel and must not hide it.
          t.not(verdict(c.nr, [BigInt(a) | 0x1_00000000n]), RET_ALLOW, `${c.name}(${a} | 1<<32) denied`)
        }
        for (const a of c.allowedArg0 ?? []) t.equal(verdict(c.nr, [BigInt(a)]), RET_ALLOW, `${c.name}(${a}) allowed, as in Docker`)
        if (c.deniedArg0Mask !== undefined) {
          for (let bit = 0; bit < 32; bit++) {
            const flag = 1 << bit
            if ((c.deniedArg0Mask & flag) === 0) continue
            t.not(verdict(c.nr, [BigInt(flag >>> 0) | 17n]), RET_ALLOW, `${c.name} with 0x${(flag >>> 0).toString(16)} denied`)
          }
          t.equal(verdict(c.nr, [17n]), RET_ALLOW, `${c.name}(SIGCHLD) allowed`)
        }
        if (c.errno !== undefined) t.equal(verdict(c.nr), errnoRet(c.errno), `${c.name} -> ERRNO(${c.errno})`)
        if (c.name === 'personality') t.not(verdict(c.nr, [0x0040000n]), RET_ALLOW, 'personality(ADDR_NO_RANDOMIZE) denied')
      }
      // Calls newer than Docker's profile (runc answers them with ENOSYS), and numbers no kernel
      // has yet: ENOSYS, so that callers fall back to older calls.
      for (let nr = DOCKER.newerThanProfile.fromNr; nr < 1024; nr++) {
        const v = verdict(nr)
        if (v !== errnoRet(DOCKER.newerThanProfile.errno)) t.fail(`nr ${nr} -> ${verdictName(v)}, not ENOSYS`)
      }
      t.pass(`${DOCKER.newerThanProfile.fromNr}..1023 -> ENOSYS`)
    })
  }

  t.test('every exception is used and names a call Docker denies', async t => {
    for (const name of Object.keys(EXCEPTIONS)) t.ok(DOCKER.denied.some(d => d.name === name), name)
  })

  // The attack: from a default container, the calls and socket families that used to get through.
  const PROBE = String.raw`
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return [r, ctypes.get_errno()]
def sock(family, kind):
    try:
        s = socket.socket(family, kind)
        s.close()
        return [0, 0]
    except OSError as e:
        return [-1, e.errno]
buf = ctypes.create_string_buffer(4096)
size = ctypes.c_uint32(4096)
pidfd = sc(434, os.getpid(), 0)[0]
out = {}
out['socket_vsock'] = sock(40, socket.SOCK_STREAM)
out['socket_alg'] = sock(38, socket.SOCK_SEQPACKET)
out['get_mempolicy'] = sc(239, 0, 0, 0, 0, 0)
out['pidfd_getfd'] = sc(438, pidfd, 0, 0)
out['process_madvise'] = sc(440, -1, 0, 0, 0, 0)
out['lsm_list_modules'] = sc(461, buf, ctypes.byref(size), 0)
out['file_getattr'] = sc(468, -100, b"/", buf, 64, 0)
out['sethostname'] = sc(170, b"renamed", 7)
print(json.dumps(out))
`
  const EPERM = 1
  const EAFNOSUPPORT = 97
  const EXPECT: Record<string, number> = {
    socket_vsock: EAFNOSUPPORT,
    socket_alg: EAFNOSUPPORT,
    get_mempolicy: EPERM,
    pidfd_getfd: EPERM,
    process_madvise: EPERM,
    lsm_list_modules: EPERM,
    sethostname: EPERM,
    file_getattr: ENOSYS
  }

  const skip = skipReason()
  t.test('a workload cannot open vsock or AF_ALG sockets, nor make the calls Docker denies', { skip: skip ?? false }, async t => {
    const d = await daemonWithBusybox(t, 'berth-escape-seccomp')
    for (const extra of [[], ['--net', 'host'], ['--init']]) {
      const r = await d.cli(['run', '--rm', ...extra, 'host', 'python3', '-c', PROBE])
      t.equal(r.code, 0, r.stderr)
      const out = JSON.parse(r.stdout) as Record<string, [number, number]>
      const how = extra.length > 0 ? ` (${extra.join(' ')})` : ''
      for (const [name, errno] of Object.entries(EXPECT)) {
        t.same(out[name], [-1, errno], `${name} fails with errno ${errno}${how}`)
      }
    }
  })
}
