// CPU time of a process from /proc/PID/stat (utime + stime, fields 14 and 15, in clock ticks),
// for CPU% over a window: Δticks / CLK_TCK / Δseconds.
import { readFile } from 'node:fs/promises'
import { runTimed } from './proc.ts'

/** utime + stime of PID in clock ticks, or undefined once it is gone. */
export async function cpuTicks (pid: number): Promise<number | undefined> {
  let text: string
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ')'; field 3 is index 0
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return Number(rest[14 - 3]) + Number(rest[15 - 3])
}

/** `getconf CLK_TCK` (100 on every Linux build that matters; used if getconf is missing). */
export async function clockTicksPerSecond (): Promise<number> {
  const r = await runTimed('getconf', ['CLK_TCK'], { timeoutMs: 5000, captureStdout: true }).catch(() => undefined)
  const n = Number(r?.stdout.trim())
  return r?.code === 0 && Number.isInteger(n) && n > 0 ? n : 100
}
