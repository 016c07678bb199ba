// The fleet's pre-shared key (libp2p pnet): the `generateKey` format,
//   /key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>
// A peer without the same key fails the pnet handshake before anything else is exchanged.

import { readFile, writeFile } from 'node:fs/promises'
import { generateKey } from '@libp2p/pnet'
import { PskError } from '../errors.ts'

const FORMAT = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n[0-9a-fA-F]{64}\s*$/

/** A new key in the `generateKey` format (what `berth cluster init` writes). */
export function createPsk (): Uint8Array {
  const bytes = new Uint8Array(95)
  generateKey(bytes)
  return bytes
}

export function validatePsk (bytes: Uint8Array, path = '<psk>'): Uint8Array {
  const text = new TextDecoder().decode(bytes)
  if (!FORMAT.test(text)) throw new PskError(path, 'not a pnet key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits)')
  return new TextEncoder().encode(text.trimEnd())
}

export async function readPsk (path: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new PskError(path, (err as Error).message, { cause: err })
  }
  return validatePsk(bytes, path)
}

/** Writes a new key (mode 0600); refuses to overwrite one. */
export async function writePsk (path: string): Promise<void> {
  try {
    await writeFile(path, createPsk(), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    throw new PskError(path, (err as Error).message, { cause: err })
  }
}
