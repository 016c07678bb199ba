// Output for people: aligned tables and short relative times.
export function table (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (r: string[]): string => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('   ').trimEnd()
  return [line(head), ...rows.map(line)].join('\n')
}

export function ago (ms: number | undefined, suffix = ' ago'): string {
  if (ms === undefined || ms === 0) return '-'
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  if (s < 60) return `${s}s${suffix}`
  if (s < 3600) return `${Math.round(s / 60)}m${suffix}`
  if (s < 86400) return `${Math.round(s / 3600)}h${suffix}`
  return `${Math.round(s / 86400)}d${suffix}`
}
