// A procfs the workload mounts itself: the supervisor mounts proc on the container root's behalf
// (docs/proxy.md, "mount"), and that proc must hide and protect what the container's own /proc
// does (Docker's masked and read-only paths), or `mount -t proc proc /mnt` undoes them.
import t from 'tap'
import { daemonWithBusybox, skipReason } from './helpers.ts'

// Masked files must read empty and masked directories list nothing, as in the container's own
// /proc (interrupts is world-readable: the proof that a plain procfs shows what the mask hides).
// The read-only paths are checked in mountinfo: /proc/sys and sysrq-trigger refuse container
// root's writes anyway (no CAP_NET_ADMIN, owned by the host's root), so the read-only bind is
// defence in depth, and mountinfo shows whether it is there. The same probe runs on the
// container's own /proc for comparison.
const probe = (dir: string, tag: string): string => [
  `for f in interrupts timer_list kcore keys latency_stats timer_stats sched_debug; do [ -e ${dir}/$f ] && echo "${tag} file $f $(head -c 4096 ${dir}/$f 2>/dev/null | wc -c)"; done`,
  `for f in acpi asound scsi; do [ -d ${dir}/$f ] && echo "${tag} dir $f $(ls -A ${dir}/$f 2>/dev/null | wc -l)"; done`,
  `v=$(cat ${dir}/sys/net/ipv4/ip_forward); (echo $v > ${dir}/sys/net/ipv4/ip_forward) 2>/dev/null && echo "${tag} written sys/net/ipv4/ip_forward"`,
  `(echo h > ${dir}/sysrq-trigger) 2>/dev/null && echo "${tag} written sysrq-trigger"`,
  // The mounts on the newest proc at DIR: "TAG child NAME ro|rw".
  `awk -v dir=${dir} -v tag=${tag} '{ for (i = 7; i <= NF && $i != "-"; i++); fs = $(i + 1) } fs == "proc" && $5 == dir { p = $1 } { par[NR] = $2; mp[NR] = $5; opt[NR] = substr($6, 1, 2) } END { for (n = 1; n <= NR; n++) if (par[n] == p) print tag, "child", substr(mp[n], length(dir) + 2), opt[n] }' /proc/self/mountinfo`,
  `echo "${tag} self $(head -1 ${dir}/self/status | cut -f1)"`
].join('\n')

interface Seen { files: Map<string, number>, dirs: Map<string, number>, written: string[], children: Map<string, string>, self: string }

function parse (out: string, tag: string): Seen {
  const s: Seen = { files: new Map(), dirs: new Map(), written: [], children: new Map(), self: '' }
  for (const line of out.split('\n')) {
    const [tg, kind, name, n] = line.trim().split(/\s+/)
    if (tg !== tag) continue
    if (kind === 'file') s.files.set(name, Number(n))
    else if (kind === 'dir') s.dirs.set(name, Number(n))
    else if (kind === 'written') s.written.push(name)
    else if (kind === 'child') s.children.set(name, n)
    else if (kind === 'self') s.self = name
  }
  return s
}

/** The assertions checkMasked uses (a tap Test has them). */
interface Asserts {
  equal: (found: unknown, wanted: unknown, message: string) => unknown
  ok: (value: unknown, message: string) => unknown
  same: (found: unknown, wanted: unknown, message: string) => unknown
}

function checkMasked (t: Asserts, out: string, tag: string): void {
  const own = parse(out, 'own')
  t.ok(own.children.has('sys') && own.children.has('interrupts'), 'the probe sees the masks of the container\'s own /proc')
  const mine = parse(out, tag)
  t.equal(mine.self, 'Name:', `${tag}: the new proc works (self/status reads)`)
  t.ok(own.files.has('interrupts') && mine.files.has('interrupts'), `${tag}: /proc/interrupts exists in both (the probe sees files)`)
  for (const [f, n] of mine.files) t.equal(n, 0, `${tag}: ${f} is masked (reads ${n} bytes; the container's own /proc: ${own.files.get(f)})`)
  for (const [f, n] of mine.dirs) t.equal(n, 0, `${tag}: ${f}/ is masked (${n} entries; the container's own /proc: ${own.dirs.get(f)})`)
  t.same(own.written, [], 'the container\'s own /proc/sys and sysrq-trigger are not writable')
  t.same(mine.written, [], `${tag}: /proc/sys and sysrq-trigger are not writable through the new proc`)
  for (const f of ['sys', 'fs', 'irq', 'bus', 'sysrq-trigger']) {
    if (!own.children.has(f)) continue  // not on this kernel
    t.equal(mine.children.get(f), 'ro', `${tag}: ${f} is a read-only mount, as in the container's own /proc`)
  }
  t.equal(mine.children.get('sys'), 'ro', `${tag}: sys is a read-only mount`)
  for (const f of [...mine.files.keys(), ...mine.dirs.keys()]) t.ok(mine.children.has(f), `${tag}: ${f} has a mask mounted on it`)
}

const skip = skipReason()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const d = await daemonWithBusybox(t, 'berth-escape-proc')

  t.test('mount -t proc proc /mnt: the new proc has the masked and read-only paths of /proc', async t => {
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c', [
      probe('/proc', 'own'),
      'mkdir -p /mnt/p && mount -t proc proc /mnt/p || echo mount-failed',
      probe('/mnt/p', 'new')
    ].join('\n')])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, /mount-failed/, 'the emulated proc mount itself still works')
    checkMasked(t, r.stdout, 'new')
  })

  t.test('mount -t proc proc /proc (over the masked one), from berth exec, with hidepid', async t => {
    await d.ok(['run', '-d', '--name', 'procx', 'bb', 'sleep', '600'])
    t.teardown(async () => { await d.cli(['rm', '-f', 'procx']) })
    const r = await d.cli(['exec', 'procx', 'sh', '-c', [
      probe('/proc', 'own'),
      'mount -t proc -o hidepid=invisible proc /proc || echo mount-failed',
      probe('/proc', 'over')
    ].join('\n')])
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, /mount-failed/)
    checkMasked(t, r.stdout, 'over')
  })

  t.test('a proc mount with subset=pid still works (nothing to mask)', async t => {
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c',
      'mkdir -p /mnt/q && mount -t proc -o subset=pid proc /mnt/q && ls /mnt/q | grep -c "^[0-9]" && ls /mnt/q/interrupts 2>/dev/null || echo no-interrupts'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /^[1-9][0-9]*\n/)
    t.match(r.stdout, /no-interrupts/)
  })

  t.test('a workload that replaced /dev/null cannot make it the mask: the proc mount is refused', async t => {
    const r = await d.cli(['run', '--rm', 'bb', 'sh', '-c',
      'mount -t tmpfs none /dev && echo fake > /dev/null && mkdir -p /mnt/p && (mount -t proc proc /mnt/p 2>/dev/null && echo mounted || echo refused); head -c 100 /mnt/p/interrupts 2>/dev/null | wc -c'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /^refused\n0$/m)
  })
}
