// The native addon: feature probe, the default seccomp program (run through a small classic-BPF
// interpreter here, and installed for real in a python3 child), capabilities.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { release } from 'node:os'
import {
  probeFeatures, seccompDeniedSyscalls, seccompProgram, defaultCapabilities, shimPath, addon, NativeError
} from './index.ts'
import {
  ALU_AND_K, AUDIT_ARCH_X86_64, decode, errnoRet, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JSET_K, LD_W_ABS, RET_ALLOW,
  RET_K, RET_KILL_PROCESS, run
} from './fixtures/bpf.ts'

const BINDING = fileURLToPath(new URL('./build/Release/berth.node', import.meta.url))
const IS_ROOT = process.getuid?.() === 0
const [KMAJOR = 0, KMINOR = 0] = release().split('.').map(Number)
const kernelAtLeast = (major: number, minor: number): boolean => KMAJOR > major || (KMAJOR === major && KMINOR >= minor)
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find(p => existsSync(p))

if (!existsSync(BINDING)) {
  t.plan(0, `the addon is not built (${BINDING}); sh scripts/build-addon.sh builds it`)
  process.exit(0)
}
if (process.arch !== 'x64') {
  t.plan(0, `the seccomp checks below use x86_64 syscall numbers; this is ${process.arch}`)
  process.exit(0)
}

// ---- classic BPF, as the kernel runs a seccomp program (fixtures/bpf.ts) -----------------
const EPERM = 1
const ENOSYS = 38
const EAFNOSUPPORT = 97

// x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl)
const NR = {
  read: 0, write: 1, openat: 257, getpid: 39, execve: 59, exit_group: 231, clone: 56, clone3: 435,
  personality: 135, mount: 165, umount2: 166, unshare: 272, setns: 308, ptrace: 101, bpf: 321,
  keyctl: 250, io_uring_setup: 425, open_by_handle_at: 304, kexec_load: 246, reboot: 169, fsopen: 430,
  mount_setattr: 442, userfaultfd: 323, perf_event_open: 298, pidfd_getfd: 438, landlock_create_ruleset: 444,
  adjtimex: 159, settimeofday: 164, sethostname: 170, socket: 41, get_mempolicy: 239, file_setattr: 469
}
const AF_INET = 2n
const AF_ALG = 38n
const AF_VSOCK = 40n
const CLONE_NEWUSER = 0x10000000n
const CLONE_NEWNET = 0x40000000n
const CLONE_NEWNS = 0x00020000n
const SIGCHLD = 17n
const X32_BIT = 0x40000000

const REQUIRED_DENIED = [
  'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'keyctl', 'add_key', 'request_key', 'bpf',
  'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'open_by_handle_at',
  'name_to_handle_at', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'mount', 'umount2', 'pivot_root',
  'unshare', 'setns', 'clone', 'clone3', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree',
  'mount_setattr', 'swapon', 'swapoff', 'reboot', 'acct', 'settimeofday', 'clock_settime', 'perf_event_open',
  'userfaultfd', 'lookup_dcookie', 'quotactl', 'nfsservctl', 'personality', 'syslog', 'vhangup', 'uselib',
  'ustat', 'sysfs', '_sysctl', 'create_module', 'get_kernel_syms', 'query_module', 'iopl', 'ioperm', 'kcmp',
  'mbind', 'set_mempolicy', 'move_pages', 'fanotify_init', 'get_mempolicy', 'pidfd_getfd', 'process_madvise',
  'socket', 'file_getattr', 'file_setattr', 'open_tree_attr'
  // stime and vm86 have no x86_64 syscall; the table includes them where the architecture has them
]

t.test('probeFeatures reports this machine', async t => {
  const start = process.hrtime.bigint()
  const f = probeFeatures()
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.ok(ms < 50, `took ${ms.toFixed(1)} ms (< 50 ms: it runs on the event loop)`)
  for (const k of ['userns', 'idmappedMounts', 'seccompUserNotif', 'seccompAddfd', 'pidfd', 'overlay'] as const) {
    t.type(f[k], 'boolean', k)
  }
  t.equal(f.kernel, release(), 'kernel is uname -r')
  t.equal(f.seccompUserNotif, kernelAtLeast(5, 0), 'USER_NOTIF exists from 5.0')
  t.equal(f.seccompAddfd, kernelAtLeast(5, 9), 'ADDFD exists from 5.9')
  t.equal(f.pidfd, kernelAtLeast(5, 3), 'pidfd_open exists from 5.3')
  if (IS_ROOT) {
    // root may make user namespaces whatever the unprivileged-userns sysctls say; ext4 (and most
    // root filesystems) take idmapped mounts from 5.12 on.
    t.equal(f.userns, true, 'root can make a user namespace')
    const rootFs = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map(l => l.split(' '))
      .filter(p => p[4] === '/').map(p => p[p.indexOf('-') + 1]).at(-1)
    if (kernelAtLeast(5, 19) && ['ext4', 'xfs', 'btrfs', 'overlay', 'tmpfs'].includes(rootFs ?? '')) {
      t.equal(f.idmappedMounts, true, `idmapped mounts work on / (${rootFs})`)
    }
  }
  if (/\toverlay\n/.test(readFileSync('/proc/filesystems', 'utf8'))) t.equal(f.overlay, true, 'overlay is registered')

  // Where cpu, memory, pids live, worked out independently from mountinfo.
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map(l => {
    const p = l.split(' ')
    const dash = p.indexOf('-')
    return { mount: p[4], fstype: p[dash + 1], superOpts: (p[dash + 3] ?? '').split(',') }
  })
  const unified = mounts.find(m => m.fstype === 'cgroup2')
  const v2 = unified ? readFileSync(`${unified.mount}/cgroup.controllers`, 'utf8').trim().split(/\s+/) : []
  for (const c of ['cpu', 'memory', 'pids'] as const) {
    const expected = mounts.some(m => m.fstype === 'cgroup' && m.superOpts.includes(c)) ? 'v1' : v2.includes(c) ? 'v2' : null
    t.equal(f.cgroups[c], expected, `${c} controller: ${expected}`)
  }
})

t.test('the default seccomp program is well-formed', async t => {
  const buf = seccompProgram()
  t.ok(Buffer.isBuffer(buf))
  t.equal(buf.length % 8, 0, '8 bytes per instruction')
  const prog = decode(buf)
  t.ok(prog.length > 10 && prog.length <= 4096, `${prog.length} instructions, within BPF_MAXINSNS`)
  t.same(prog[0], { code: LD_W_ABS, jt: 0, jf: 0, k: 4 }, 'loads seccomp_data.arch first')
  t.same(prog[1], { code: JMP_JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 }, 'compares it with AUDIT_ARCH_X86_64')
  t.same(prog[2], { code: RET_K, jt: 0, jf: 0, k: RET_KILL_PROCESS }, 'kills another ABI')
  t.same(prog.at(-1), { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW }, 'ends in RET ALLOW')
  const known = new Set([LD_W_ABS, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JSET_K, ALU_AND_K, RET_K])
  prog.forEach((insn, pc) => {
    if (!known.has(insn.code)) t.fail(`unexpected opcode 0x${insn.code.toString(16)} at ${pc}`)
    const targets = insn.code === JMP_JA ? [insn.k] : (insn.code & 0x07) === 0x05 ? [insn.jt, insn.jf] : []
    for (const off of targets) {
      if (pc + 1 + off >= prog.length) t.fail(`jump at ${pc} leaves the program`)
    }
    if (insn.code === LD_W_ABS && !(insn.k === 0 || insn.k === 4 || (insn.k >= 16 && insn.k < 64))) {
      t.fail(`load outside seccomp_data at ${pc}`)
    }
  })
  t.same(addon.seccompProgram(), buf, 'deterministic')
})

t.test('the default seccomp program decides calls as Docker does', async t => {
  const prog = decode(seccompProgram())
  const verdict = (nr: number, args: bigint[] = [], arch?: number): number => run(prog, { nr, args, arch })
  for (const name of ['read', 'write', 'openat', 'getpid', 'execve', 'exit_group', 'landlock_create_ruleset', 'adjtimex'] as const) {
    t.equal(verdict(NR[name]), RET_ALLOW, `${name} allowed`)
  }
  for (const name of ['mount', 'umount2', 'unshare', 'setns', 'ptrace', 'bpf', 'keyctl', 'io_uring_setup', 'open_by_handle_at', 'kexec_load', 'reboot', 'fsopen', 'mount_setattr', 'userfaultfd', 'perf_event_open', 'settimeofday', 'pidfd_getfd', 'get_mempolicy', 'sethostname'] as const) {
    t.equal(verdict(NR[name]), errnoRet(EPERM), `${name} -> EPERM`)
  }
  t.equal(verdict(NR.clone3), errnoRet(ENOSYS), 'clone3 -> ENOSYS, so libc falls back to clone')
  t.equal(verdict(NR.clone, [SIGCHLD]), RET_ALLOW, 'fork-style clone allowed')
  t.equal(verdict(NR.clone, [0x3d0f00n]), RET_ALLOW, 'thread-style clone allowed')
  for (const flag of [CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS]) {
    t.equal(verdict(NR.clone, [flag | SIGCHLD]), errnoRet(EPERM), `clone with 0x${flag.toString(16)} -> EPERM`)
  }
  for (const p of [0n, 8n, 0x20000n, 0x20008n, 0xffffffffn]) {
    t.equal(verdict(NR.personality, [p]), RET_ALLOW, `personality(0x${p.toString(16)}) allowed`)
  }
  for (const p of [0x0040000n /* ADDR_NO_RANDOMIZE */, 1n, 0x1_00000000n]) {
    t.equal(verdict(NR.personality, [p]), errnoRet(EPERM), `personality(0x${p.toString(16)}) -> EPERM`)
  }
  t.equal(verdict(NR.getpid, [], 0x40000003 /* AUDIT_ARCH_I386 */), RET_KILL_PROCESS, 'i386 ABI killed')
  t.equal(verdict(NR.getpid | X32_BIT), errnoRet(ENOSYS), 'x32 getpid -> ENOSYS')
  t.equal(verdict(NR.mount | X32_BIT), errnoRet(ENOSYS), 'x32 mount -> ENOSYS')
  t.equal(verdict(-1), errnoRet(ENOSYS), 'nr -1 fails')
  t.equal(verdict(NR.socket, [AF_INET]), RET_ALLOW, 'socket(AF_INET) allowed')
  t.equal(verdict(NR.socket, [AF_VSOCK]), errnoRet(EAFNOSUPPORT), 'socket(AF_VSOCK) -> EAFNOSUPPORT')
  t.equal(verdict(NR.socket, [AF_ALG]), errnoRet(EAFNOSUPPORT), 'socket(AF_ALG) -> EAFNOSUPPORT')
  t.equal(verdict(NR.socket, [AF_VSOCK | 0x1_00000000n]), errnoRet(EAFNOSUPPORT), 'high bits the kernel ignores do not hide AF_VSOCK')
  t.equal(verdict(NR.file_setattr), errnoRet(ENOSYS), 'file_setattr -> ENOSYS (newer than Docker\'s profile)')
  t.equal(verdict(NR.file_setattr + 1), errnoRet(ENOSYS), 'a number newer than the table -> ENOSYS')
  t.equal(verdict(1000), errnoRet(ENOSYS), 'nr 1000 -> ENOSYS')
  // Every number up to the last reviewed one that the table does not name is allowed: count the
  // non-ALLOW verdicts, with arguments that the conditional rules deny.
  let denied = 0
  for (let nr = 0; nr <= NR.file_setattr; nr++) {
    const args = nr === NR.socket ? [AF_VSOCK] : [SIGCHLD | CLONE_NEWUSER, 0n]
    if (verdict(nr, args) !== RET_ALLOW) denied++
  }
  const names = seccompDeniedSyscalls()
  t.equal(denied, names.length, 'one denied number per denied name (personality, clone and socket with bad args)')
})

t.test('the denied names cover Docker\'s list', async t => {
  const names = seccompDeniedSyscalls()
  t.same([...names].sort(), names, 'sorted')
  t.equal(new Set(names).size, names.length, 'no duplicates')
  for (const n of REQUIRED_DENIED) t.ok(names.includes(n), `${n} denied`)
  for (const n of ['read', 'adjtimex', 'seccomp', 'landlock_create_ruleset', 'chroot']) t.notOk(names.includes(n), `${n} allowed`)
})

t.test('the program works in the kernel (python3 child with no_new_privs)', { skip: PYTHON ? false : 'needs python3 (ctypes) to install a filter in a child' }, async t => {
  // Installing a filter needs no root once no_new_privs is set, and affects only that child.
  const script = `
import ctypes, json, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
prog = bytes.fromhex(sys.stdin.read().strip())
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
fp = Fprog(len(prog) // 8, prog)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
if libc.prctl(22, 2, ctypes.byref(fp), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    print(json.dumps({"installed": False, "errno": ctypes.get_errno()})); sys.exit(0)
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return 0 if r >= 0 else ctypes.get_errno()
out = {"installed": True}
out["unshare_user"] = call(272, 0x10000000)
out["mount"] = call(165, 0, 0, 0, 0, 0)
out["clone3"] = call(435, 0, 0)
out["keyctl"] = call(250, 0)
out["x32_getpid"] = call(39 | 0x40000000)
out["personality_query"] = call(135, 0xffffffff)
out["personality_norandom"] = call(135, 0x0040000)
out["getpid"] = call(39)
out["fork_exec"] = subprocess.run(["/bin/true"]).returncode
print(json.dumps(out))
`
  const r = spawnSync(PYTHON as string, ['-c', script], { input: seccompProgram().toString('hex'), encoding: 'utf8' })
  t.equal(r.status, 0, `python3 exited 0 (${r.stderr.trim()})`)
  const out = JSON.parse(r.stdout)
  t.equal(out.installed, true, 'the kernel accepted the program')
  t.equal(out.unshare_user, EPERM, 'unshare(CLONE_NEWUSER) -> EPERM')
  t.equal(out.mount, EPERM, 'mount -> EPERM')
  t.equal(out.clone3, ENOSYS, 'clone3 -> ENOSYS')
  t.equal(out.keyctl, EPERM, 'keyctl -> EPERM')
  t.equal(out.x32_getpid, ENOSYS, 'x32 getpid -> ENOSYS')
  t.equal(out.personality_query, 0, 'personality(0xffffffff) allowed')
  t.equal(out.personality_norandom, EPERM, 'personality(ADDR_NO_RANDOMIZE) -> EPERM')
  t.equal(out.getpid, 0, 'getpid allowed')
  t.equal(out.fork_exec, 0, 'fork (clone falling back from clone3) and execve work')
})

t.test('capabilities and paths', async t => {
  t.same(defaultCapabilities().sort(), [
    'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_MKNOD',
    'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT'
  ], "Docker's default set")
  t.equal(shimPath(), fileURLToPath(new URL('./build/Release/berth-shim', import.meta.url)))
  t.ok(shimPath().startsWith('/'), 'absolute')
})

t.test('the binding checks its arguments; native errors carry Node fields', async t => {
  const raw = createRequire(import.meta.url)(BINDING) as Record<string, (...a: unknown[]) => unknown>
  t.throws(() => raw.probeFeatures(1), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => raw.seccompProxyProgram(), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => raw.seccompProxyProgram({ network: 1 }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  const e = new NativeError('open `/x`: No such file or directory', { code: 'BERTH_ERR_SYSCALL', errno: 2, syscall: 'open', path: '/x' })
  t.match(e, { name: 'NativeError', code: 'BERTH_ERR_SYSCALL', errno: 2, syscall: 'open', path: '/x' })
  t.ok(e instanceof Error)
})
