// berth up: runs berthd in the foreground until SIGTERM/SIGINT. Containers keep running after.
import { resolveDaemonConfig } from '../../config.ts'
import { startDaemon } from '../../daemon.ts'
import { UsageError } from '../../errors.ts'
import type { Command } from '../command.ts'

export const up: Command = {
  name: 'up',
  usage: 'berth up [--data-dir DIR] [--socket PATH] [--config FILE] [--port-range LOW-HIGH]\n         [--listen ADDR]... [--join ADDR]... [--psk-file FILE] [--node-name NAME]\n         [--labels k=v,...] [--capacity-cpu N] [--capacity-memory SIZE] [--profile lan|local] [--mdns]',
  summary: 'Run the daemon (berthd) in the foreground',
  options: [
    { name: 'data-dir', value: 'DIR', help: 'state, images and containers (default /var/lib/berth, or $BERTH_DATA_DIR)' },
    { name: 'socket', value: 'PATH', help: 'API socket (default /run/berth/berth.sock, or $BERTH_SOCKET)' },
    { name: 'config', value: 'FILE', help: 'JSON config file (default /etc/berth/berthd.json if present)' },
    { name: 'port-range', value: 'LOW-HIGH', help: 'host ports for --port (default 30000-32767, or $BERTH_PORT_RANGE)' },
    { name: 'listen', value: 'ADDR', repeat: true, help: 'fleet address to listen on, host:port or a multiaddr (default 0.0.0.0:7946 in a fleet)' },
    { name: 'join', value: 'ADDR', repeat: true, help: 'a node of the fleet to join through (retried with backoff)' },
    { name: 'psk-file', value: 'FILE', help: 'the fleet\'s pre-shared key (berth cluster init writes one); required in a fleet' },
    { name: 'node-name', value: 'NAME', help: 'this node\'s name (default: the hostname)' },
    { name: 'labels', value: 'k=v,...', help: 'labels for placement constraints' },
    { name: 'capacity-cpu', value: 'N', help: 'CPUs this node offers (default: all)' },
    { name: 'capacity-memory', value: 'SIZE', help: 'memory this node offers (default: all)' },
    { name: 'profile', value: 'lan|local', help: 'membership timing: lan (default) or local (one machine, tests)' },
    { name: 'mdns', help: 'find the fleet\'s nodes on the LAN by mDNS (edge sites)' }
  ],
  async handler (ctx) {
    if (ctx.args.length > 0) throw new UsageError('BERTH_ERR_USAGE', 'berth up takes no arguments', 'berth up --help')
    const config = resolveDaemonConfig({
      dataDir: ctx.opts['data-dir'] as string | undefined,
      socket: ctx.opts.socket as string | undefined,
      config: ctx.opts.config as string | undefined,
      portRange: ctx.opts['port-range'] as string | undefined,
      listen: ctx.opts.listen as string[] | undefined,
      join: ctx.opts.join as string[] | undefined,
      pskFile: ctx.opts['psk-file'] as string | undefined,
      nodeName: ctx.opts['node-name'] as string | undefined,
      labels: ctx.opts.labels as string | undefined,
      capacityCpu: ctx.opts['capacity-cpu'] as string | undefined,
      capacityMemory: ctx.opts['capacity-memory'] as string | undefined,
      profile: ctx.opts.profile as string | undefined,
      mdns: ctx.opts.mdns === true ? true : undefined
    })
    const daemon = await startDaemon(config)
    const sock = config.socketPath === '/run/berth/berth.sock' ? '' : ` --socket ${config.socketPath}`
    process.stderr.write([
      `berthd ${process.pid} is up: data in ${config.dataDir}, API on ${config.socketPath}`,
      config.fleet.enabled
        ? `node ${config.fleet.nodeName} (${daemon.nodeId}) in a fleet: listening on ${config.fleet.listen.join(', ')}${config.fleet.join.length > 0 ? `, joining through ${config.fleet.join.join(', ')}` : ''}`
        : `node ${config.fleet.nodeName} (${daemon.nodeId}) runs alone; berth cluster init sets up a fleet`,
      `${daemon.runtime.list(false).length} running container(s) re-adopted.`,
      'In another shell:',
      `  npx berth${sock} run --rm host echo hello       # a system container from the built-in host image`,
      `  npx berth${sock} run -d --name web host sleep 600 && npx berth${sock} ps`,
      `  npx berth${sock} --help`,
      'Stop the daemon with Ctrl-C: running containers keep running and are re-adopted at the next start.',
      ''
    ].join('\n'))
    await new Promise<void>(resolve => {
      const onSignal = (sig: string): void => {
        process.stderr.write(`berthd: ${sig}, stopping (containers keep running)\n`)
        resolve()
      }
      process.once('SIGTERM', () => onSignal('SIGTERM'))
      process.once('SIGINT', () => onSignal('SIGINT'))
    })
    await daemon.stop()
    return {}
  }
}
