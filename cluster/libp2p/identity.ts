// The node's libp2p identity: an Ed25519 key kept at <dataDir>/cluster/identity.key (protobuf,
// mode 0600), so the peer id survives restarts. Created on first start; written to a temp file
// and renamed so a crash never leaves half a key.

import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { BerthError } from '../../storage/index.ts'

export const IDENTITY_FILE = 'identity.key'

export function identityPath (dataDir: string): string {
  return join(dataDir, 'cluster', IDENTITY_FILE)
}

export async function loadOrCreateIdentity (dataDir: string): Promise<PrivateKey> {
  const path = identityPath(dataDir)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new BerthError('BERTH_ERR_IDENTITY', `identity key ${path} is corrupt`, {
        path, cause: err, hint: 'restore it from a backup, or remove it to get a new peer id (the fleet will see a new node)'
      })
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(join(dataDir, 'cluster'), { recursive: true, mode: 0o700 })
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, path)
  return key
}
