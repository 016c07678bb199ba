// berth run | ps | logs | inspect | stop | kill | rm | exec
import { UsageError } from '../../errors.ts'
import { exitCodeOf } from '../../runtime/runtime.ts'
import type { ExitStatus } from '../../runtime/shim.ts'
import { STREAM_STATUS, STREAM_STDERR, type Frame } from '../../runtime/logs.ts'
import { parseCpus, parseDurationMs, parsePositiveInt, parseSignal, parseSize, signalName } from '../../units.ts'
import type { Command, Context } from '../command.ts'
import { ago, table } from '../render.ts'
import { parseEgress, parsePortFlag, parsePublishFlag } from '../../proxy/net.ts'
import { parseMountFlag } from '../../api/views.ts'

function one (ctx: Context, what = 'NAME'): string {
  if (ctx.args.length !== 1) throw new UsageError('BERTH_ERR_USAGE', `"berth ${ctx.command}" takes exactly one ${what}`, `berth ${ctx.command} --help`)
  return ctx.args[0]
}

function ref (name: string): string { return encodeURIComponent(name) }

function envList (v: unknown): string[] {
  const list = (v as string[] | undefined) ?? []
  for (const kv of list) {
    if (!/^[^=\0]+=/.test(kv)) throw new UsageError('BERTH_ERR_BAD_ENV', `bad environment entry "${kv}"`, 'use -e KEY=VALUE')
  }
  return list
}

/** Writes output frames to our stdout/stderr; returns the status frames' JSON. */
async function pump (frames: AsyncIterable<Frame>): Promise<any[]> {
  const status: any[] = []
  for await (const f of frames) {
    if (f.stream === STREAM_STATUS) status.push(JSON.parse(f.data.toString('utf8')))
    else {
      const out = f.stream === STREAM_STDERR ? process.stderr : process.stdout
      if (!out.write(f.data)) await new Promise(resolve => out.once('drain', resolve))
    }
  }
  return status
}

export const run: Command = {
  name: 'run',
  usage: 'berth run [-d] [--rm] [--name NAME] [--cpu CPUS] [--memory SIZE] [--pids N] [-e KEY=VALUE]...\n          [--restart no|on-failure|always] [--net host] [--userns host] [--init]\n          [--port NAME:PORT]... [--publish HOSTPORT:PORT]... [--egress all|none|CIDR[,CIDR...]]\n          [--uname-release STRING] [--mount HOSTPATH:CONTAINERPATH[:ro|rw[,idmap]]]... [--chaos-calls open]\n          IMAGE [--] COMMAND [ARG...]',
  summary: 'Run a command in a new system container',
  passThrough: true,
  options: [
    { name: 'detach', short: 'd', help: 'run in the background and print the container id' },
    { name: 'rm', help: 'remove the container when it exits' },
    { name: 'name', value: 'NAME', help: 'container name (also its hostname); default IMAGE-<6 hex digits>' },
    { name: 'cpu', value: 'CPUS', help: 'CPU limit, e.g. 0.5' },
    { name: 'memory', value: 'SIZE', help: 'memory limit, e.g. 64M; past it the container is OOM-killed' },
    { name: 'pids', value: 'N', help: 'limit on processes and threads (default 2048)' },
    { name: 'env', short: 'e', value: 'KEY=VALUE', repeat: true, help: 'set an environment variable' },
    { name: 'restart', value: 'POLICY', help: 'no (default), on-failure or always; restarts back off from 100 ms to 30 s' },
    { name: 'net', value: 'host', help: "share the host's network namespace (default: own namespace, loopback only)" },
    { name: 'userns', value: 'host', help: 'run without a user namespace (container root is host root)' },
    { name: 'init', help: 'run a tiny init as PID 1 that reaps zombies and forwards signals' },
    { name: 'workdir', short: 'w', value: 'DIR', help: 'working directory inside the container' },
    { name: 'port', short: 'p', value: 'NAME:PORT', repeat: true, help: "declare a port: binding it binds a host port from the node's range; the workload becomes a service reachable by its name" },
    { name: 'publish', value: 'HOSTPORT:PORT', repeat: true, help: 'declare a port on a fixed host port, like docker run -p' },
    { name: 'egress', value: 'POLICY', help: 'all (default: all but this host\'s own and link-local addresses), none (services only), or CIDR[,CIDR...]' },
    { name: 'uname-release', value: 'STRING', help: 'make uname report this kernel release (legacy software)' },
    { name: 'mount', value: 'HOST:CONTAINER[:ro|rw[,idmap]]', repeat: true, help: "bind a host directory or file (the host's own, not a copy): read-only unless :rw, nosuid and nodev, host owners unless :idmap; berth's data dir and socket, /, /etc, /run, /boot and /proc, /sys, /dev are refused" },
    { name: 'chaos-calls', value: 'open', help: 'also trap open for chaos rules (costs every open a round trip)' }
  ],
  async handler (ctx) {
    const [image, ...command] = ctx.args
    if (image === undefined) throw new UsageError('BERTH_ERR_USAGE', 'berth run needs an IMAGE', 'berth run IMAGE [COMMAND...]; berth image ls lists images')
    const o = ctx.opts
    const restart = o.restart as string | undefined
    if (restart !== undefined && !['no', 'on-failure', 'always'].includes(restart)) {
      throw new UsageError('BERTH_ERR_BAD_RESTART', `bad restart policy "${restart}"`, 'use no, on-failure or always')
    }
    for (const k of ['net', 'userns'] as const) {
      if (o[k] !== undefined && o[k] !== 'host') throw new UsageError('BERTH_ERR_USAGE', `--${k} takes only "host"`, `omit --${k} for the container's own namespace`)
    }
    if (o.rm === true && restart !== undefined && restart !== 'no') {
      throw new UsageError('BERTH_ERR_CONFLICTING_OPTIONS', '--rm and --restart cannot be used together', 'drop one of them: a container with a restart policy is kept')
    }
    const workdir = o.workdir as string | undefined
    if (workdir !== undefined && !workdir.startsWith('/')) throw new UsageError('BERTH_ERR_USAGE', `--workdir must be absolute, not "${workdir}"`, 'e.g. -w /srv')
    const spec = {
      image,
      command: command.length > 0 ? command : undefined,
      name: o.name as string | undefined,
      env: envList(o.env),
      cwd: workdir,
      cpus: o.cpu === undefined ? undefined : parseCpus(o.cpu as string),
      memoryBytes: o.memory === undefined ? undefined : parseSize(o.memory as string, 'memory size'),
      pids: o.pids === undefined ? undefined : parsePositiveInt(o.pids as string, 'pids limit', 'BERTH_ERR_BAD_PIDS'),
      restart: restart as 'no' | 'on-failure' | 'always' | undefined,
      net: o.net === 'host' ? 'host' : undefined,
      userns: o.userns === 'host' ? 'host' : undefined,
      init: o.init === true ? true : undefined,
      autoRemove: o.rm === true ? true : undefined,
      ports: o.port as string[] | undefined,
      publish: o.publish as string[] | undefined,
      egress: o.egress as string | undefined,
      unameRelease: o['uname-release'] as string | undefined,
      mounts: o.mount as string[] | undefined,
      chaosCalls: o['chaos-calls'] === undefined ? undefined : (o['chaos-calls'] as string).split(',')
    }
    // The same parsers the daemon uses: bad values fail here with exit 2, before any request.
    spec.ports?.forEach(parsePortFlag)
    spec.publish?.forEach(parsePublishFlag)
    if (spec.egress !== undefined) parseEgress(spec.egress)
    spec.mounts?.forEach(parseMountFlag)
    for (const c of spec.chaosCalls ?? []) {
      if (c !== 'open') throw new UsageError('BERTH_ERR_BAD_CALL', `bad --chaos-calls "${c}"`, 'only open needs opting in: connect, bind and sendto are always trapped')
    }
    if (o.detach === true) {
      const c = await ctx.client.json('POST', '/v1/containers', spec)
      return { text: c.id, data: c }
    }
    let name: string | undefined
    // Ctrl-C and TERM go to the container, as a terminal user expects; the run ends when it exits.
    const forward = (sig: NodeJS.Signals): void => {
      if (name === undefined) return
      ctx.client.json('POST', `/v1/containers/${ref(name)}/kill?signal=${sig}`).catch(() => {})
    }
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    try {
      let exit: ExitStatus | undefined
      for await (const f of ctx.client.frames('POST', '/v1/containers?attach=1', spec)) {
        if (f.stream === STREAM_STATUS) {
          const s = JSON.parse(f.data.toString('utf8'))
          if (s.container !== undefined) name = s.container.name
          if (s.exit !== undefined) exit = s.exit
          continue
        }
        const out = f.stream === STREAM_STDERR ? process.stderr : process.stdout
        if (!out.write(f.data)) await new Promise(resolve => out.once('drain', resolve))
      }
      if (exit === undefined) throw new UsageError('BERTH_ERR_DETACHED', 'lost the connection to berthd before the container exited', `berth logs -f ${name ?? 'NAME'} follows it`)
      if (exit.oomKilled) process.stderr.write(`berth: container ${name ?? ''} was killed for exceeding its memory limit (OOM)\n`)
      return { exitCode: exitCodeOf(exit) }
    } finally {
      process.off('SIGINT', forward)
      process.off('SIGTERM', forward)
    }
  }
}

export const ps: Command = {
  name: 'ps',
  usage: 'berth ps [-a] [--json]',
  summary: 'List containers (running ones; -a for all)',
  options: [
    { name: 'all', short: 'a', help: 'include stopped containers' },
    { name: 'json', help: 'print JSON' }
  ],
  async handler (ctx) {
    if (ctx.args.length > 0) throw new UsageError('BERTH_ERR_USAGE', 'berth ps takes no arguments', 'berth ps [-a] [--json]')
    const list: any[] = await ctx.client.json('GET', `/v1/containers${ctx.opts.all === true ? '?all=1' : ''}`)
    return {
      data: list,
      text: table(['CONTAINER ID', 'NAME', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS'], list.map(c => [
        c.id.slice(0, 12), c.name, c.image, JSON.stringify(c.command.join(' ')).slice(0, 32), ago(c.createdAt), status(c)
      ]))
    }
  }
}

function status (c: any): string {
  if (c.state === 'running') return `running ${ago(c.startedAt, '')} (pid ${c.pid as number})`
  if (c.state === 'exited') {
    const how = c.oomKilled === true ? 'oom-killed' : c.signal > 0 ? signalName(c.signal) : `exit ${c.exitCode as number}`
    return `exited (${how}) ${ago(c.finishedAt)}${c.reason === 'stopped' ? ', stopped' : ''}`
  }
  return c.state
}

export const logs: Command = {
  name: 'logs',
  usage: 'berth logs [-f] NAME',
  summary: "Print a container's output (stdout and stderr)",
  options: [{ name: 'follow', short: 'f', help: 'keep printing new output until the container exits' }],
  async handler (ctx) {
    const name = one(ctx)
    await pump(ctx.client.frames('GET', `/v1/containers/${ref(name)}/logs${ctx.opts.follow === true ? '?follow=1' : ''}`))
    return {}
  }
}

export const inspect: Command = {
  name: 'inspect',
  usage: 'berth inspect NAME',
  summary: 'Show everything about a container, as JSON',
  options: [],
  async handler (ctx) {
    const c = await ctx.client.json('GET', `/v1/containers/${ref(one(ctx))}`)
    return { data: c, text: JSON.stringify(c, null, 2) }
  }
}

export const stop: Command = {
  name: 'stop',
  usage: 'berth stop [-t SECONDS] NAME',
  summary: 'Stop a container: SIGTERM, then SIGKILL after the timeout (default 10 s)',
  options: [{ name: 'time', short: 't', value: 'SECONDS', help: 'seconds to wait before SIGKILL (default 10)' }],
  async handler (ctx) {
    const name = one(ctx)
    const t = ctx.opts.time === undefined ? 10 : parseDurationMs(ctx.opts.time as string, 'timeout') / 1000
    const c = await ctx.client.json('POST', `/v1/containers/${ref(name)}/stop?t=${t}`)
    return { text: c.name, data: c }
  }
}

export const kill: Command = {
  name: 'kill',
  usage: 'berth kill [-s SIGNAL] NAME',
  summary: "Send a signal to a container's PID 1 (default SIGKILL)",
  options: [{ name: 'signal', short: 's', value: 'SIGNAL', help: 'signal name or number (default KILL)' }],
  async handler (ctx) {
    const name = one(ctx)
    const sig = parseSignal((ctx.opts.signal as string | undefined) ?? 'KILL')
    const c = await ctx.client.json('POST', `/v1/containers/${ref(name)}/kill?signal=${sig}`)
    return { text: c.name, data: c }
  }
}

export const rm: Command = {
  name: 'rm',
  usage: 'berth rm [-f] NAME',
  summary: 'Remove a container (-f kills it first if it runs)',
  options: [{ name: 'force', short: 'f', help: 'kill the container first if it is running' }],
  async handler (ctx) {
    const name = one(ctx)
    await ctx.client.json('DELETE', `/v1/containers/${ref(name)}${ctx.opts.force === true ? '?force=1' : ''}`)
    return { text: name }
  }
}

export const exec: Command = {
  name: 'exec',
  usage: 'berth exec [-e KEY=VALUE]... NAME [--] COMMAND [ARG...]',
  summary: "Run a command inside a running container (all of its namespaces and its cgroup)",
  passThrough: true,
  options: [{ name: 'env', short: 'e', value: 'KEY=VALUE', repeat: true, help: 'set an environment variable' }],
  async handler (ctx) {
    const [name, ...command] = ctx.args
    if (name === undefined || command.length === 0) throw new UsageError('BERTH_ERR_USAGE', 'berth exec needs a NAME and a COMMAND', 'berth exec NAME COMMAND [ARG...]')
    const status = await pump(ctx.client.frames('POST', `/v1/containers/${ref(name)}/exec`, { command, env: envList(ctx.opts.env) }))
    const last = status.at(-1)
    if (last === undefined) throw new UsageError('BERTH_ERR_DETACHED', 'lost the connection to berthd before the command finished', 'see the daemon log')
    if (last.error !== undefined) {
      return { error: { code: last.error.code, message: last.error.message, hint: hintForExec(last.error.code) }, exitCode: last.exitCode }
    }
    return { exitCode: last.exitCode }
  }
}

function hintForExec (code: string): string {
  if (code === 'BERTH_ERR_EXEC_NOT_FOUND') return 'check the command exists inside the container'
  if (code === 'BERTH_ERR_EXEC_DENIED') return 'the command must be an executable file inside the container'
  return 'berth ps shows whether the container is running'
}
