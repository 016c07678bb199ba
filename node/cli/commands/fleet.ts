// berth cluster init | nodes | kv set|get|ls|watch|rm
import { resolve } from 'node:path'
import { berthError, UsageError } from '../../errors.ts'
import { formatSize } from '../../units.ts'
import type { Command } from '../command.ts'
import { table } from '../render.ts'

export const clusterInit: Command = {
  name: 'cluster init',
  usage: 'berth cluster init [--psk-file FILE]',
  summary: "Write a new pre-shared key for a fleet and print how nodes join with it",
  options: [{ name: 'psk-file', value: 'FILE', help: 'where to write the key (default ./berth-fleet.psk); never overwritten' }],
  async handler (ctx) {
    if (ctx.args.length > 0) throw new UsageError('BERTH_ERR_USAGE', 'berth cluster init takes only flags', 'berth cluster init --psk-file FILE')
    const file = resolve((ctx.opts['psk-file'] as string | undefined) ?? 'berth-fleet.psk')
    // Loaded only here: the daemon and the other commands do not need libp2p's pnet.
    const { writePsk } = await import('../../../cluster/libp2p/psk.ts')
    await writePsk(file)
    return {
      data: { pskFile: file },
      text: [
        `wrote a new pre-shared key to ${file} (mode 0600); copy it to every node of the fleet.`,
        'first node:',
        `  berth up --psk-file ${file} --listen 0.0.0.0:7946`,
        'every other node:',
        `  berth up --psk-file ${file} --listen 0.0.0.0:7946 --join FIRST_NODE_ADDRESS:7946`
      ].join('\n')
    }
  }
}

export const nodes: Command = {
  name: 'nodes',
  usage: 'berth nodes [--json]',
  summary: 'List the fleet\'s nodes: name, peer id, address, status, incarnation, capacity, usage',
  options: [{ name: 'json', help: 'print JSON (also the counters of dropped messages)' }],
  async handler (ctx) {
    const view = await ctx.client.json('GET', '/v1/nodes')
    const statusNames = ['alive', 'suspect', 'dead', 'left']
    return {
      data: view,
      text: table(['NAME', 'PEER ID', 'ADDRESS', 'STATUS', 'INC', 'CAPACITY', 'USAGE'], (view.members as any[]).map(m => [
        `${m.name as string}${m.self === true ? ' (self)' : ''}`,
        m.peerId,
        m.address,
        typeof m.status === 'number' ? statusNames[m.status] ?? String(m.status) : String(m.status),
        String(m.incarnation),
        m.capacity === undefined ? '-' : `${m.capacity.cpu as number} cpu, ${formatSize(m.capacity.memoryBytes)}`,
        m.usage === undefined ? '-' : Object.entries(m.usage).map(([k, v]) => `${k}=${String(v)}`).join(' ')
      ]))
    }
  }
}

function key (ctx: { args: string[] }, n: number, usage: string): string[] {
  if (ctx.args.length !== n) throw new UsageError('BERTH_ERR_USAGE', `expected ${usage}`, `berth ${usage}`)
  return ctx.args
}

export const kvSet: Command = {
  name: 'kv set',
  usage: 'berth kv set KEY VALUE',
  summary: 'Set fleet-wide metadata (last writer wins)',
  options: [],
  async handler (ctx) {
    const [k, v] = key(ctx, 2, 'kv set KEY VALUE')
    await ctx.client.json('PUT', `/v1/kv/${encodeURIComponent(k)}`, { value: v })
    return {}
  }
}

export const kvGet: Command = {
  name: 'kv get',
  usage: 'berth kv get KEY',
  summary: 'Print a key\'s value alone',
  options: [],
  async handler (ctx) {
    const [k] = key(ctx, 1, 'kv get KEY')
    const r = await ctx.client.json('GET', `/v1/kv/${encodeURIComponent(k)}`)
    return { text: String(r.value), data: r }
  }
}

export const kvLs: Command = {
  name: 'kv ls',
  usage: 'berth kv ls [PREFIX] [--json]',
  summary: 'List keys and values',
  options: [{ name: 'json', help: 'print JSON' }],
  async handler (ctx) {
    if (ctx.args.length > 1) throw new UsageError('BERTH_ERR_USAGE', 'expected kv ls [PREFIX]', 'berth kv ls [PREFIX]')
    const list: any[] = await ctx.client.json('GET', `/v1/kv?prefix=${encodeURIComponent(ctx.args[0] ?? '')}`)
    return { data: list, text: table(['KEY', 'VALUE'], list.map(e => [e.key, String(e.value)])) }
  }
}

export const kvWatch: Command = {
  name: 'kv watch',
  usage: 'berth kv watch [PREFIX] [--json]',
  summary: 'Print every change of the keys under PREFIX, from any node, as it arrives (until interrupted)',
  options: [{ name: 'json', help: 'a JSON line per change (key, value, deleted, writer, version)' }],
  async handler (ctx) {
    if (ctx.args.length > 1) throw new UsageError('BERTH_ERR_USAGE', 'expected kv watch [PREFIX]', 'berth kv watch [PREFIX]')
    const json = ctx.opts.json === true
    const changes = ctx.client.lines('GET', `/v1/kv?watch=1&prefix=${encodeURIComponent(ctx.args[0] ?? '')}`)
    let started = false
    try {
      for await (const e of changes) {
        if (e.watching !== undefined) { started = true; continue }
        process.stdout.write(json ? JSON.stringify(e) + '\n' : e.deleted === true ? `rm ${e.key as string}\n` : `set ${e.key as string} ${String(e.value)}\n`)
      }
    } catch (err) {
      // before the watch began: the daemon's own error (not reachable, …); after: the stream broke
      if (!started) throw err
    }
    throw berthError('BERTH_ERR_WATCH_ENDED', 'the daemon ended the watch (it stopped or restarted)', 'run berth kv watch again once it is up', 125)
  }
}

export const kvRm: Command = {
  name: 'kv rm',
  usage: 'berth kv rm KEY',
  summary: 'Delete a key (fleet-wide)',
  options: [],
  async handler (ctx) {
    const [k] = key(ctx, 1, 'kv rm KEY')
    await ctx.client.json('DELETE', `/v1/kv/${encodeURIComponent(k)}`)
    return {}
  }
}
