// berth up: runs berthd in the foreground until SIGTERM/SIGINT. Containers keep running after.
import { resolveDaemonConfig } from '../../config.ts'
import { startDaemon } from '../../daemon.ts'
import { UsageError } from '../../errors.ts'
import type { Command } from '../command.ts'

export const up: Command = {
  name: 'up',
  usage: 'berth up [--data-dir DIR] [--socket PATH] [--config FILE] [--port-range LOW-HIGH]',
  summary: 'Run the daemon (berthd) in the foreground',
  options: [
    { name: 'data-dir', value: 'DIR', help: 'state, images and containers (default /var/lib/berth, or $BERTH_DATA_DIR)' },
    { name: 'socket', value: 'PATH', help: 'API socket (default /run/berth/berth.sock, or $BERTH_SOCKET)' },
    { name: 'config', value: 'FILE', help: 'JSON config file (default /etc/berth/berthd.json if present)' },
    { name: 'port-range', value: 'LOW-HIGH', help: 'host ports for --port (default 30000-32767, or $BERTH_PORT_RANGE)' }
  ],
  async handler (ctx) {
    if (ctx.args.length > 0) throw new UsageError('BERTH_ERR_USAGE', 'berth up takes no arguments', 'berth up --help')
    const config = resolveDaemonConfig({
      dataDir: ctx.opts['data-dir'] as string | undefined,
      socket: ctx.opts.socket as string | undefined,
      config: ctx.opts.config as string | undefined,
      portRange: ctx.opts['port-range'] as string | undefined
    })
    const daemon = await startDaemon(config)
    const sock = config.socketPath === '/run/berth/berth.sock' ? '' : ` --socket ${config.socketPath}`
    process.stderr.write([
      `berthd ${process.pid} is up: data in ${config.dataDir}, API on ${config.socketPath}`,
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
