// One writer per kind (DESIGN.md, "Replicated state"): the table of who may write each kind,
// checked on every local write and on receipt of every remote entry. Written as data so the
// scheduler's kinds are added here, not in code paths.

export type WriterRule =
  /** `kind/<node>`: only the node whose id is the key's id */
  | { writer: 'self'; idSegments: 1; record: string }
  /** anyone; last writer wins (fleet metadata) */
  | { writer: 'anyone'; idSegments: 'any'; record: string }
  /** the node named in the record's `field`; a delete only by the writer of the version it deletes */
  | { writer: 'field'; field: string; idSegments: number; record: string }

/** kind → rule. Add kinds at the end; a kind not here is refused (counted as unauthorized). */
export const WRITER_RULES: Readonly<Record<string, WriterRule>> = Object.freeze({
  member: { writer: 'self', idSegments: 1, record: 'addresses, incarnation, capacity, labels, usage, version' },
  kv: { writer: 'anyone', idSegments: 'any', record: 'any value (fleet metadata, `berth kv`)' },
  workload: { writer: 'field', field: 'acceptedBy', idSegments: 1, record: 'spec, generation, acceptedBy' },
  placement: { writer: 'field', field: 'coordinator', idSegments: 1, record: 'node, epoch, phase, exit status, coordinator' },
  endpoint: { writer: 'field', field: 'node', idSegments: 2, record: 'node, host address, host port (key endpoint/<workload>/<port>)' },
  lun: { writer: 'field', field: 'owner', idSegments: 1, record: 'size, owner, generation, replicas' },
  chaos: { writer: 'field', field: 'acceptedBy', idSegments: 1, record: 'selector, syscall class, action, probability, expiry, acceptedBy' }
})

const SEGMENT = /^[A-Za-z0-9._:@+=-]{1,253}$/

/** Splits `kind/id`; undefined if the key is not of that form. */
export function splitKey (key: string): { kind: string; id: string } | undefined {
  const i = key.indexOf('/')
  if (i <= 0 || i === key.length - 1) return undefined
  return { kind: key.slice(0, i), id: key.slice(i + 1) }
}

/** Why the key's form is wrong, or undefined. */
export function checkKey (key: string): string | undefined {
  const k = splitKey(key)
  if (k === undefined) return 'expected kind/id'
  const rule = WRITER_RULES[k.kind]
  if (rule === undefined || !Object.hasOwn(WRITER_RULES, k.kind)) return `unknown kind ${JSON.stringify(k.kind)}`
  if (rule.idSegments === 'any') return undefined
  const segs = k.id.split('/')
  if (segs.length !== rule.idSegments) return `${k.kind} keys have ${rule.idSegments} id segment(s)`
  for (const s of segs) if (!SEGMENT.test(s)) return `bad id segment ${JSON.stringify(s)}`
  return undefined
}

/**
 * Why `writer` may not write (value) or delete (value undefined) `key`, or undefined if it may.
 * `current` is the entry it would replace, if this node has one (used for deletes of field kinds).
 */
export function checkWriter (key: string, writer: string, value: unknown, current?: { writer: string; value: unknown; deleted: boolean }): string | undefined {
  const bad = checkKey(key)
  if (bad !== undefined) return bad
  const { kind, id } = splitKey(key) as { kind: string; id: string }
  const rule = WRITER_RULES[kind] as WriterRule
  switch (rule.writer) {
    case 'anyone': return undefined
    case 'self': return id === writer ? undefined : `${kind}/<node> is written only by that node`
    case 'field': {
      if (value === undefined) {
        // A delete carries no record: it must come from the writer of what it deletes (or be
        // unverifiable here, when we do not hold the record: accepted, the writer is a member).
        if (current === undefined || current.deleted || current.writer === writer) return undefined
        const owner = fieldOf(current.value, rule.field)
        return owner === writer ? undefined : `${kind} records are deleted only by their ${rule.field}`
      }
      const owner = fieldOf(value, rule.field)
      if (owner === undefined) return `${kind} records need a string field ${rule.field}`
      return owner === writer ? undefined : `${kind} records are written only by their ${rule.field} (${owner})`
    }
  }
}

function fieldOf (value: unknown, field: string): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const v = (value as Record<string, unknown>)[field]
  return typeof v === 'string' ? v : undefined
}
