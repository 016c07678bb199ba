// berth port ls | calls | chaos add | chaos ls | chaos rm
import { UsageError } from '../../errors.ts'
import { parseChaosRule } from '../../proxy/chaos.ts'
import type { Command } from '../command.ts'
import { ago, table } from '../render.ts'

export const portLs: Command = {
  name: 'port ls',
  usage: 'berth port ls [--json]',
  summary: 'List declared ports: workload, port name, container port, host address, host port',
  options: [{ name: 'json', help: 'print JSON (fields workload, name, port, hostAddress, hostPort, …)' }],
  async handler (ctx) {
    const list: any[] = await ctx.client.json('GET', '/v1/ports')
    return {
      data: list,
      text: table(['WORKLOAD', 'NAME', 'PORT', 'HOST ADDRESS', 'HOST PORT', 'STATE'], list.map(p => [
        p.workload, p.name, `${p.port as number}${p.proto === 'any' ? '' : `/${p.proto as string}`}`, p.hostAddress, String(p.hostPort),
        p.bound === true ? 'bound' : 'declared'
      ]))
    }
  }
}

export const calls: Command = {
  name: 'calls',
  usage: 'berth calls [WORKLOAD] [--json]',
  summary: "Show what the proxy namespace did with workloads' trapped calls (routed, bound, denied, faulted, emulated)",
  options: [{ name: 'json', help: 'print JSON (fields workload, call, action, target, count, lastAt)' }],
  async handler (ctx) {
    if (ctx.args.length > 1) throw new UsageError('BERTH_ERR_USAGE', 'berth calls takes at most one WORKLOAD', 'berth calls --help')
    const query = ctx.args.length === 1 ? `?workload=${encodeURIComponent(ctx.args[0])}` : ''
    const list: any[] = await ctx.client.json('GET', `/v1/calls${query}`)
    return {
      data: list,
      text: table(['WORKLOAD', 'CALL', 'ACTION', 'TARGET', 'COUNT', 'LAST'], list.map(c => [
        c.workload, c.call, c.action, c.target === '' ? '-' : c.target, String(c.count), ago(c.lastAt)
      ]))
    }
  }
}

export const chaosAdd: Command = {
  name: 'chaos add',
  usage: 'berth chaos add --workload NAME --call connect|bind|sendto|open --target SERVICE[:PORT]|PATH\n                [--errno ECONNREFUSED|ETIMEDOUT|EIO|...] [--delay 200ms] [--probability 0.3] [--for 60s]',
  summary: "Inject faults into a workload's calls at the syscall layer; prints the rule's id",
  options: [
    { name: 'workload', value: 'NAME', help: 'the workload whose calls fail' },
    { name: 'call', value: 'CALL', help: 'connect, bind, sendto, or open (open needs berth run --chaos-calls open)' },
    { name: 'target', value: 'TARGET', help: 'SERVICE[:PORT] or an IP address (connect/sendto), :PORT (bind), a path prefix (open)' },
    { name: 'errno', value: 'NAME', help: 'the error the call returns (default ECONNREFUSED; none with --delay alone)' },
    { name: 'delay', value: 'DURATION', help: 'hold the call this long first (e.g. 200ms); alone, the call then proceeds' },
    { name: 'probability', value: 'P', help: 'fraction of matching calls that fail, 0–1 (default 1)' },
    { name: 'for', value: 'DURATION', help: 'the rule expires after this long (e.g. 60s); default: until removed' }
  ],
  async handler (ctx) {
    if (ctx.args.length > 0) throw new UsageError('BERTH_ERR_USAGE', 'berth chaos add takes only flags', 'berth chaos add --help')
    const o = ctx.opts
    const input = { workload: o.workload, call: o.call, target: o.target, errno: o.errno, delay: o.delay, probability: o.probability, for: o.for } as Record<string, string | undefined>
    // Everything but whether the service exists is checked here (exit 2); the daemon checks again.
    parseChaosRule(input, () => true)
    const rule = await ctx.client.json('POST', '/v1/chaos', input)
    return { text: rule.id, data: rule }
  }
}

export const chaosLs: Command = {
  name: 'chaos ls',
  usage: 'berth chaos ls [--json]',
  summary: 'List chaos rules with their hits',
  options: [{ name: 'json', help: 'print JSON' }],
  async handler (ctx) {
    const list: any[] = await ctx.client.json('GET', '/v1/chaos')
    return {
      data: list,
      text: table(['ID', 'WORKLOAD', 'CALL', 'TARGET', 'ERRNO', 'DELAY', 'P', 'EXPIRES', 'HITS'], list.map(r => [
        r.id, r.workload, r.call, r.call === 'open' ? r.path : `${r.service as string}${r.port > 0 ? `:${r.port as number}` : ''}`,
        r.errnoName, r.delayMs > 0 ? `${r.delayMs as number}ms` : '-', String(r.probability),
        r.expiresAt === 0 ? 'never' : r.expired === true ? 'expired' : `in ${ago(2 * Date.now() - r.expiresAt, '')}`, String(r.hits)
      ]))
    }
  }
}

export const chaosRm: Command = {
  name: 'chaos rm',
  usage: 'berth chaos rm ID',
  summary: 'Remove a chaos rule',
  options: [],
  async handler (ctx) {
    if (ctx.args.length !== 1) throw new UsageError('BERTH_ERR_USAGE', 'berth chaos rm takes one ID', 'berth chaos ls lists them')
    await ctx.client.json('DELETE', `/v1/chaos/${encodeURIComponent(ctx.args[0])}`)
    return { text: ctx.args[0] }
  }
}
