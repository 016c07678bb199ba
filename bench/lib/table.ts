// Plain-text tables for the benchmark's report.

/**
 * ALIGN has one letter per column, `l` or `r`; by default the first column is left-aligned and
 * the others (numbers) right-aligned.
 */
export function renderTable (header: readonly string[], rows: ReadonlyArray<readonly string[]>, align?: string): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const left = (i: number): boolean => (align?.[i] ?? (i === 0 ? 'l' : 'r')) === 'l'
  const line = (cells: readonly string[]): string => cells
    .map((c, i) => left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))
    .join('  ')
    .trimEnd()
  return [line(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function ms (v: number): string {
  return Number.isFinite(v) ? v.toFixed(v < 10 ? 2 : 1) : 'n/a'
}

/** Decimal megabytes (10^6 bytes), the unit the targets are stated in. */
export function mb (bytes: number | undefined): string {
  return bytes !== undefined && Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(2)} MB` : 'n/a'
}

export function mark (ok: boolean): string {
  return ok ? 'PASS' : 'MISS'
}
