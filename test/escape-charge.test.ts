// The supervisor's work is the container's: a workload that makes the shim busy on its behalf
// (trapped calls by the thousand, routed sockets with full buffers) pays for it out of its own
// cgroup, instead of getting CPU and kernel memory charged to nobody. Each test performs the
// attack from inside a container and measures where the cost landed.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { daemonWithBusybox, inspect, ROOT_DIR, skipReason, sleep, until, type TestDaemon } from './helpers.ts'

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

// utime + stime (seconds) from a /proc/.../stat line; the command may contain spaces and ")".
function statSeconds (path: string): number {
  try {
    const s = readFileSync(path, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return 0
  }
}

// Where a controller lives: the v1 hierarchy that has it, or the v2 mount.
function controllerMount (controller: string): { version: 1 | 2, mount: string } | undefined {
  let v2: string | undefined
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ')
    const dash = f.indexOf('-')
    if (dash < 0 || f[3] !== '/') continue
    if (f[dash + 1] === 'cgroup' && f[dash + 3].split(',').includes(controller)) return { version: 1, mount: f[4] }
    if (f[dash + 1] === 'cgroup2') v2 = f[4]
  }
  if (v2 !== undefined && readFileSync(join(v2, 'cgroup.controllers'), 'utf8').split(/\s+/).includes(controller)) {
    return { version: 2, mount: v2 }
  }
  return undefined
}

// The cgroup path of one thread for CONTROLLER ("cpu", "memory"): its v1 line, else the v2 one.
function threadCgroup (pid: number, tid: number, controller: string): string {
  try {
    const lines = readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'utf8').trim().split('\n').map(l => l.split(':'))
    const v1 = lines.find(l => l[1].split(',').includes(controller))
    return (v1 ?? lines.find(l => l[0] === '0') ?? ['', '', ''])[2]
  } catch {
    return ''
  }
}

interface Sample { at: number, shim: number, workload: number, outside: number, threads: Map<number, number> }

// The shim's CPU (all its threads, dead ones included), the workload's, and what the shim's
// threads that sit outside the container's cpu cgroup used (per thread, summed).
function sample (shimPid: number, workloadPid: number, cgroupRel: string): Sample {
  const threads = new Map<number, number>()
  let outside = 0
  for (const tid of readdirSync(`/proc/${shimPid}/task`).map(Number)) {
    const secs = statSeconds(`/proc/${shimPid}/task/${tid}/stat`)
    threads.set(tid, secs)
    const cg = threadCgroup(shimPid, tid, 'cpu')
    if (cg !== `/${cgroupRel}` && !cg.startsWith(`/${cgroupRel}/`)) outside += secs
  }
  return {
    at: performance.now() / 1000,
    shim: statSeconds(`/proc/${shimPid}/stat`),
    workload: statSeconds(`/proc/${workloadPid}/stat`),
    outside,
    threads
  }
}

// 64 threads calling sysinfo (trapped and emulated by the supervisor) as fast as they can for
// SECONDS, then a summary line. The loop is a few bytes of machine code (x86_64) run through
// ctypes with the GIL released, so the workload spends almost nothing per call and the cost of
// each call is the supervisor's: what a hostile workload would do.
//   f(buf): rsi = buf; n = 0
//   loop: eax = sysinfo(rsi); if (eax) buf.errors++; n++; if (!buf[200]) goto loop; return n
const SYSINFO_LOOP = '4889fe31d2b8630000004889f70f0585c0740748ff86d000000048ffc280bec80000000074df4889d0c3'
const SYSINFO_STORM = (seconds: number): string => String.raw`
import ctypes, json, mmap, threading, time
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(bytes.fromhex('${SYSINFO_LOOP}'))
loop = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
bufs = [ctypes.create_string_buffer(256) for _ in range(64)]
calls = [0] * 64
def run(i):
    calls[i] = loop(ctypes.addressof(bufs[i]))
ts = [threading.Thread(target=run, args=(i,)) for i in range(64)]
for x in ts: x.start()
time.sleep(${seconds})
for b in bufs: b[200] = 1
for x in ts: x.join()
errors = sum(ctypes.c_uint64.from_buffer(b, 208).value for b in bufs)
print(json.dumps({"calls": sum(calls), "errors": errors}), flush=True)
`

async function shimOf (d: TestDaemon, name: string): Promise<{ id: string, pid: number, shimPid: number }> {
  const info = await inspect(d, name)
  const state = await until(() => {
    const p = join(d.dataDir, 'containers', info.id, 'state')
    return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : undefined
  })
  if (state === undefined) throw new Error(`no state file for ${name}`)
  return { id: info.id, pid: state.pid, shimPid: state.shimPid }
}

// Opens routed connections (to a service: the supervisor makes each host socket and puts it in
// place of the workload's) to HOST:PORT, where nobody reads, and fills their send buffers.
const SOCKET_STUFFER = String.raw`
import json, socket, sys, time
total = 0
socks = []
for i in range(8):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    s.setblocking(False)
    try:
        while True:
            total += s.send(b"x" * 65536)
    except BlockingIOError:
        pass
    socks.append(s)
print(json.dumps({"queued": total}), flush=True)
time.sleep(120)
`

function knob (path: string): number {
  try {
    return Number(readFileSync(path, 'utf8').trim())
  } catch {
    return -1
  }
}

const skip = skipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-charge')
  const cpu = controllerMount('cpu')

  t.test('a --cpu 0.2 container calling sysinfo from 64 threads cannot make its shim burn CPU outside its cgroup', { skip: cpu === undefined ? 'no cpu cgroup controller on this machine' : false }, async t => {
    const name = `charge-cpu-${process.pid}`
    t.teardown(async () => { await d.cli(['rm', '-f', name]) })
    await d.ok(['run', '-d', '--name', name, '--cpu', '0.2', 'host', 'python3', '-c', SYSINFO_STORM(14)])
    const c = await shimOf(d, name)
    const rel = `berth/${c.id}`

    await sleep(2500)  // every thread is in its loop
    const a = sample(c.shimPid, c.pid, rel)
    await sleep(8000)
    const b = sample(c.shimPid, c.pid, rel)
    const wall = b.at - a.at
    const shimRate = (b.shim - a.shim) / wall
    const workloadRate = (b.workload - a.workload) / wall
    const outsideRate = (b.outside - a.outside) / wall
    t.comment(`over ${wall.toFixed(1)} s: shim ${shimRate.toFixed(2)} CPU (outside the container's cgroup ${outsideRate.toFixed(2)}), workload ${workloadRate.toFixed(2)} CPU`)

    // Before: the shim alone ran at ~1 CPU for a container limited to 0.2. Now the supervisor's
    // threads are in the container's cpu cgroup (or pace themselves to its quota where they
    // cannot be), so the shim stays near the quota and the two together do too. Generous bounds:
    // the machine is shared, and the CFS quota lets a period's worth overshoot.
    t.ok(shimRate < 0.3, `the shim uses ${shimRate.toFixed(2)} CPU, not ~1 (limit 0.2)`)
    t.ok(shimRate + workloadRate < 0.35, `shim + workload use ${(shimRate + workloadRate).toFixed(2)} CPU (limit 0.2)`)
    if (cpu?.version === 1) {
      // Per-thread membership (v1): the supervisor's threads are charged to the container.
      t.ok(outsideRate < 0.1, `the shim's threads outside the container's cpu cgroup use ${outsideRate.toFixed(2)} CPU`)
      const inside = [...b.threads.keys()].filter(tid => threadCgroup(c.shimPid, tid, 'cpu').startsWith(`/${rel}/`))
      t.ok(inside.length >= 4, `the supervisor's threads are in a child of the container's cpu cgroup (${inside.length})`)
      t.notOk(inside.includes(c.shimPid), 'the shim\'s main thread is not (it must outlive the container)')
    }
    // The container's --pids is for its own tasks: no supervisor thread counts against it.
    const inPids = [...b.threads.keys()].filter(tid => threadCgroup(c.shimPid, tid, 'pids').startsWith(`/${rel}`))
    t.same(inPids, [], 'no shim thread is in the container\'s pids cgroup')

    const r = await until(async () => {
      const l = await d.cli(['logs', name])
      return l.stdout.includes('"calls"') ? l : undefined
    }, 30_000, 250)
    t.ok(r, 'the workload finished')
    const out = JSON.parse(r?.stdout.trim().split('\n').at(-1) ?? '{}')
    t.ok(out.calls > 0, `sysinfo was answered (${out.calls} calls)`)
    t.equal(out.errors, 0, 'every trapped sysinfo succeeded')
  })

  const memory = controllerMount('memory')
  t.test('the host sockets the supervisor makes for a container are charged to the container\'s memory', {
    skip: memory === undefined
      ? 'no memory cgroup controller on this machine'
      : memory.version !== 1
        ? 'the memory controller is on cgroup v2, where the supervisor\'s sockets stay the shim\'s (docs/shim.md)'
        : false
  }, async t => {
    // The sink: a service that accepts and never reads.
    const sink = `charge-sink-${process.pid}`
    t.teardown(async () => { await d.cli(['rm', '-f', sink]) })
    await d.ok(['run', '-d', '--name', sink, '--port', 'sink:7000', 'host', 'python3', '-c',
      'import socket, time\ns = socket.socket()\ns.bind(("0.0.0.0", 7000))\ns.listen(64)\nprint("listening", flush=True)\nheld = []\nwhile True:\n    held.append(s.accept()[0])'])
    t.ok(await until(async () => (await d.cli(['logs', sink])).stdout.includes('listening'), 30_000), 'the sink listens')
    const name = `charge-mem-${process.pid}`
    t.teardown(async () => { await d.cli(['rm', '-f', name]) })
    await d.ok(['run', '-d', '--name', name, '--memory', '256M', '--egress', 'none', 'host', 'python3', '-c', SOCKET_STUFFER, sink, '7000'])
    const c = await shimOf(d, name)
    const r = await until(async () => {
      const l = await d.cli(['logs', name])
      return l.stdout.includes('"queued"') ? l : undefined
    }, 30_000, 250)
    t.ok(r, 'the workload filled its sockets')
    const queued = JSON.parse(r?.stdout.trim().split('\n').at(-1) ?? '{}').queued as number
    const dir = join((memory as { mount: string }).mount, 'berth', c.id)
    const tcp = knob(join(dir, 'memory.kmem.tcp.usage_in_bytes'))
    const calls = await d.cli(['calls', name, '--json'])
    t.comment(`queued ${queued} bytes on 8 routed sockets; the container's memory cgroup holds ${tcp} bytes of TCP buffers, ${knob(join(dir, 'memory.usage_in_bytes'))} in all`)
    t.match(calls.stdout, /routed/, 'the connects were routed through host sockets')
    // Before: the host sockets were the shim's (made on a thread in the shim's memory cgroup, and
    // v1 did not account TCP buffers at all), so the container's cgroup held none of it.
    t.ok(queued > 1 << 20, 'more than 1 MiB was queued')
    t.ok(tcp > 1 << 20, `the routed sockets' buffers are charged to the container (${tcp} bytes)`)
  })

  // Where the supervisor's threads cannot be charged (cgroup v2: a thread cannot leave its
  // process's cgroup), they pace themselves to the container's CPU quota. The pacing on its own,
  // so that it is tested on any host: four threads that would each burn a whole CPU.
  t.test('work paced to 0.2 CPU uses about 0.2 CPU', async t => {
    const shim = join(ROOT_DIR, 'addon', 'build', 'Release', 'berth-shim')
    const r = spawnSync(shim, ['selftest', 'pace', '0.2'], { encoding: 'utf8' })
    t.equal(r.status, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    t.comment(`${out.cpu} s of CPU in ${out.wall} s`)
    t.ok(out.cpu / out.wall < 0.3, `${(out.cpu / out.wall).toFixed(2)} CPU, not up to 4`)
    t.ok(out.cpu / out.wall > 0.05, 'and the paced threads did run')
  })
}
