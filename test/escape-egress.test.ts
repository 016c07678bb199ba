// Egress never reaches the host itself: a connect the proxy namespace routes is made from the
// host's network namespace, so with the default `--egress all` a workload could reach every
// service the host listens on at its own addresses, and the cloud metadata service on
// link-local 169.254.169.254. The attacks below connect to listeners on addresses this test gives
// the host (a veth pair with a random name), and to a link-local one; everything stays on this
// machine. The one "outside" address is in a network namespace of the test's own.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { daemonWithBusybox, ROOT_DIR, skipReason } from './helpers.ts'

const SHIM = join(ROOT_DIR, 'addon', 'build', 'Release', 'berth-shim')
const TAG = `${process.pid % 1000}${randomInt(100, 1000)}`
const VETH = `begr${TAG}`             // the host's end holds the host addresses below
const OUT_VETH = `begq${TAG}`         // its peer goes into the "outside" namespace
const NETNS = `berth-egress-${TAG}`
const A = randomInt(100, 150)
const B = randomInt(2, 250)
const HOST4 = `198.18.${A}.${B}`                   // the host's own (this test's veth)
const HOST4_LATER = `198.18.${A}.${B + 1}`         // added while a container runs
const HOST6 = `fd00:b5:e9:${A.toString(16)}::${B.toString(16)}`
const LINK = `169.254.${A}.${B}`                   // link-local, like 169.254.169.254
const OUT_NET = `198.18.${A + 100}`                // the outside namespace's /30
const OUTSIDE = `${OUT_NET}.2`

function ip (...args: string[]): boolean {
  return spawnSync('ip', args, { stdio: 'ignore' }).status === 0
}

function shimSelftest (what: string, input: string): string {
  return spawnSync(SHIM, ['selftest', what, input], { encoding: 'utf8' }).stdout.trim()
}

async function hello (host: string, text: string): Promise<{ server: Server, port: number }> {
  const server = createServer(s => { s.end(`${text}\n`) })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, host, resolve) })
  return { server, port: (server.address() as { port: number }).port }
}

// Connects to each [name, address, port] from inside the container; prints {name: "ok TEXT" | "err ERRNO"}.
const PROBE = String.raw`
import json, socket, sys
out = {}
for name, host, port in json.loads(sys.argv[1]):
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
        out[name] = 'ok ' + s.recv(64).decode().strip()
    except OSError as e:
        out[name] = 'err %s' % e.errno
    s.close()
print(json.dumps(out))
`

t.test('decisions: the host\'s addresses and link-local are reserved unless listed explicitly', async t => {
  const host = '192.0.2.10/32,2001:db8::10/128,10.9.0.0/16'
  const decide = (egress: unknown, addr: string): string =>
    shimSelftest('connect', `${JSON.stringify({ version: 1, egress })}\n${host}\n${addr} 80`)
  const all = { mode: 'all' }
  t.equal(decide(all, '198.51.100.7'), 'route', 'all: an outside address')
  for (const a of ['192.0.2.10', '::ffff:192.0.2.10', '2001:db8::10', '10.9.4.4', '169.254.169.254', '::ffff:169.254.169.254',
    'fe80::1', 'fd00:ec2::254', '0.1.2.3']) {
    t.equal(decide(all, a), 'unreach', `all: ${a} is refused`)
  }
  t.equal(decide(all, '192.0.2.11'), 'route', 'all: the host\'s neighbour is not the host')
  const cidrs = (...c: string[]): unknown => ({ mode: 'cidrs', cidrs: c })
  t.equal(decide(cidrs('192.0.2.10/32'), '192.0.2.10'), 'route', 'a host address listed as a /32')
  t.equal(decide(cidrs('192.0.2.10/32'), '::ffff:192.0.2.10'), 'route', 'and its mapped form')
  t.equal(decide(cidrs('192.0.2.0/24'), '192.0.2.10'), 'unreach', 'a wider CIDR does not list the host address')
  t.equal(decide(cidrs('192.0.2.0/24'), '192.0.2.11'), 'route', 'but reaches its neighbours')
  t.equal(decide(cidrs('0.0.0.0/0', '::/0'), '169.254.169.254'), 'unreach', '0.0.0.0/0 does not list link-local')
  t.equal(decide(cidrs('169.254.169.254/32'), '169.254.169.254'), 'route', 'the metadata address listed')
  t.equal(decide(cidrs('169.254.0.0/16'), '169.254.169.254'), 'route', 'link-local listed as a whole')
  t.equal(decide(cidrs('10.9.4.0/24'), '10.9.4.4'), 'route', 'a range inside a local (AnyIP) range')
  t.equal(decide(cidrs('10.0.0.0/8'), '10.9.4.4'), 'unreach', 'a range around it does not list it')
  t.equal(decide({ mode: 'none' }, '192.0.2.10'), 'unreach', 'none')
  t.equal(decide(all, '127.0.0.1'), 'continue', 'loopback stays the container\'s own')

  // What the shim reads from this machine: every address `ip` shows (before and after, so that
  // another test's interfaces coming and going meanwhile do not count) is in it.
  const shown = (): Set<string> => new Set([...spawnSync('ip', ['-o', 'addr', 'show'], { encoding: 'utf8' }).stdout
    .matchAll(/ inet6? ([0-9a-f.:]+)\//g)].map(m => `${m[1]}/${m[1].includes(':') ? 128 : 32}`))
  const before = shown()
  const mine = new Set(shimSelftest('hostaddrs', '').split(','))
  const after = shown()
  t.ok(mine.has('127.0.0.1/32') || mine.has('127.0.0.0/8'), 'loopback is in it')
  for (const a of before) if (after.has(a)) t.ok(mine.has(a), `the shim sees ${a}`)
})

const skip = skipReason() ?? (spawnSync('ip', ['-V']).status !== 0 ? 'needs iproute2 (ip)' : undefined)
if (skip !== undefined) {
  t.test('attacks', async t => { t.plan(0, skip) })
} else {
  t.test('a workload cannot reach the host\'s own or link-local addresses unless listed', async t => {
    // The host's end: HOST4, HOST6, LINK. The peer, in NETNS, holds OUTSIDE (not the host's).
    t.teardown(() => { ip('link', 'del', VETH); ip('link', 'del', OUT_VETH); ip('netns', 'del', NETNS) })
    const made = ip('link', 'add', VETH, 'type', 'veth', 'peer', 'name', OUT_VETH) &&
      ip('netns', 'add', NETNS) && ip('link', 'set', OUT_VETH, 'netns', NETNS) &&
      ip('addr', 'add', `${HOST4}/32`, 'dev', VETH) && ip('addr', 'add', `${LINK}/32`, 'dev', VETH) &&
      ip('addr', 'add', `${HOST6}/128`, 'dev', VETH, 'nodad') && ip('addr', 'add', `${OUT_NET}.1/30`, 'dev', VETH) &&
      ip('link', 'set', VETH, 'up') && ip('-n', NETNS, 'addr', 'add', `${OUTSIDE}/30`, 'dev', OUT_VETH) &&
      ip('-n', NETNS, 'link', 'set', OUT_VETH, 'up') && ip('-n', NETNS, 'link', 'set', 'lo', 'up')
    t.ok(made, 'veth pair, addresses and namespace made')
    if (!made) return

    const servers = await Promise.all([hello(HOST4, 'host4'), hello(LINK, 'link'), hello(HOST6, 'host6')])
    t.teardown(() => { for (const s of servers) s.server.close() })
    const [h4, ll, h6] = servers.map(s => s.port)
    // The outside listener, in the namespace (python3: the host's, as the host image uses).
    const outPort = randomInt(20000, 30000)
    const outside = spawn('ip', ['netns', 'exec', NETNS, 'python3', '-c',
      `import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(("${OUTSIDE}", ${outPort}))\ns.listen(16)\nprint("ready", flush=True)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b"outside\\n")\n    c.close()`],
    { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { outside.kill('SIGKILL') })
    await new Promise<void>((resolve, reject) => {
      outside.stdout.once('data', () => { resolve() })
      outside.once('exit', code => { reject(new Error(`the outside listener exited ${code}`)) })
    })

    const d = await daemonWithBusybox(t, 'berth-escape-egress')
    const targets = [['host4', HOST4, h4], ['mapped', `::ffff:${HOST4}`, h4], ['host6', HOST6, h6], ['link', LINK, ll], ['outside', OUTSIDE, outPort]]
    const probe = async (extra: string[]): Promise<Record<string, string>> => {
      const r = await d.cli(['run', '--rm', ...extra, 'host', 'python3', '-c', PROBE, JSON.stringify(targets)])
      t.equal(r.code, 0, r.stderr)
      return JSON.parse(r.stdout)
    }
    const refused = /^err (101|111)$/  // ENETUNREACH (egress policy) or ECONNREFUSED

    const all = await probe([])
    t.match(all.host4, refused, `default egress: the host's own ${HOST4} is refused (${all.host4})`)
    t.match(all.mapped, refused, `default egress: ::ffff:${HOST4} too (${all.mapped})`)
    t.match(all.host6, refused, `default egress: the host's own ${HOST6} is refused (${all.host6})`)
    t.match(all.link, refused, `default egress: link-local ${LINK} is refused (${all.link})`)
    t.equal(all.outside, 'ok outside', 'default egress still reaches an address that is not the host\'s')

    const listed = await probe(['--egress', `${HOST4}/32`])
    t.equal(listed.host4, 'ok host4', `--egress ${HOST4}/32 reaches it`)
    t.equal(listed.mapped, 'ok host4', 'also through its mapped form')
    t.match(listed.link, refused, 'but not link-local')
    t.match(listed.outside, refused, 'nor what is not listed')

    const listed2 = await probe(['--egress', `${LINK}/32,${HOST6}/128`])
    t.equal(listed2.link, 'ok link', `--egress ${LINK}/32 reaches it`)
    t.equal(listed2.host6, 'ok host6', `--egress ${HOST6}/128 reaches it`)
    t.match(listed2.host4, refused)

    const wide = await probe(['--egress', '198.18.0.0/15'])
    t.equal(wide.outside, 'ok outside', 'a wide CIDR reaches the outside address in it')
    t.match(wide.host4, refused, 'but not the host\'s own address in it (that needs its own /32)')

    // An address the host gains while the workload runs (DHCP, a new interface) is refused too.
    await d.ok(['run', '-d', '--name', 'egress-later', 'host', 'sleep', '600'])
    t.teardown(async () => { await d.cli(['rm', '-f', 'egress-later']) })
    t.ok(ip('addr', 'add', `${HOST4_LATER}/32`, 'dev', VETH), `${HOST4_LATER} added`)
    const later = await hello(HOST4_LATER, 'later')
    t.teardown(() => { later.server.close() })
    // One try, at once: the shim reloads on the kernel's notification, before any exec starts.
    const r = await d.cli(['exec', 'egress-later', 'python3', '-c', PROBE, JSON.stringify([['later', HOST4_LATER, later.port]])])
    t.equal(r.code, 0, r.stderr)
    t.match(JSON.parse(r.stdout).later, refused, `an address added after the start is refused (${r.stdout.trim()})`)
  })
}
