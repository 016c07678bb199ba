import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import { pack } from 'msgpackr'
import { openStore, STORE_SCHEMA_VERSION } from './index.ts'
import { containerRecord } from './fixtures/records.ts'

async function tmpStorePath (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return join(dir, 'store')
}

/** Writes raw bytes under a sublevel key, bypassing the store (as a bug or a bad disk would). */
async function rawPut (path: string, sublevel: string, key: string, value: Uint8Array): Promise<void> {
  const db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' })
  await db.sublevel<string, Uint8Array>(sublevel, { valueEncoding: 'view' }).put(key, value)
  await db.close()
}

t.test('fresh store gets the current schema; reopen keeps data', async t => {
  const path = await tmpStorePath(t)
  let store = await openStore({ path })
  t.equal(store.schemaVersion, STORE_SCHEMA_VERSION)
  t.equal(await store.meta.get('schema'), STORE_SCHEMA_VERSION)
  await store.putContainer(containerRecord('a1'))
  await store.close()
  await store.close() // twice is fine
  store = await openStore({ path })
  t.same(await store.containers.get('a1'), containerRecord('a1'))
  t.equal(await store.names.get('name-a1'), 'a1')
  t.same((await store.containerByName('name-a1'))?.id, 'a1')
  await store.close()
})

t.test('a newer schema is refused with a hint', async t => {
  const path = await tmpStorePath(t)
  await (await openStore({ path })).close()
  await rawPut(path, 'meta', 'schema', pack(STORE_SCHEMA_VERSION + 1))
  await t.rejects(openStore({ path }), { code: 'BERTH_ERR_STORE_SCHEMA', hint: /newer berth/ })
  // and the failed open released the lock: fixing the version makes it open
  await rawPut(path, 'meta', 'schema', pack(STORE_SCHEMA_VERSION))
  await (await openStore({ path })).close()
})

t.test('a store without a version (v0, or a crash during the first open) is migrated', async t => {
  const path = await tmpStorePath(t)
  await rawPut(path, 'containers', 'x', pack(containerRecord('x')))
  const store = await openStore({ path })
  t.equal(await store.meta.get('schema'), STORE_SCHEMA_VERSION)
  t.same(await store.containers.get('x'), containerRecord('x'))
  await store.close()
})

t.test('a second open of the same store is refused', async t => {
  const path = await tmpStorePath(t)
  const store = await openStore({ path })
  await t.rejects(openStore({ path }), { code: 'BERTH_ERR_STORE_LOCKED' })
  await store.close()
})

t.test('abort before open', async t => {
  const path = await tmpStorePath(t)
  await t.rejects(openStore({ path, signal: AbortSignal.abort() }), { code: 'BERTH_ERR_ABORTED' })
})

t.test('batches span sublevels and are all-or-nothing', async t => {
  const path = await tmpStorePath(t)
  const store = await openStore({ path })
  t.teardown(() => store.close())
  const endpoints = store.sublevel<{ port: number }>('endpoints', {
    validate: v => typeof (v as { port?: unknown })?.port === 'number' ? undefined : 'bad port'
  })
  t.equal(store.sublevel('endpoints'), endpoints, 'same name, same table')
  t.throws(() => store.sublevel('containers'), { code: 'BERTH_ERR_STORE' })
  t.throws(() => store.sublevel('Bad!'), { code: 'BERTH_ERR_STORE' })

  await store.batch([
    { type: 'put', sublevel: 'containers', key: 'c1', value: containerRecord('c1') },
    { type: 'put', sublevel: 'names', key: 'name-c1', value: 'c1' },
    { type: 'put', sublevel: endpoints, key: 'web/80', value: { port: 31004 } }
  ])
  t.same(await endpoints.get('web/80'), { port: 31004 })

  // one invalid value → nothing of the batch is written
  await t.rejects(store.write(tx => {
    tx.put(store.containers, 'c2', containerRecord('c2'))
    tx.put(endpoints, 'web/81', { port: 'x' } as never)
  }), { code: 'BERTH_ERR_STORE_INVALID_RECORD' })
  t.equal(await store.containers.get('c2'), undefined)

  await store.write(tx => { tx.del(store.containers, 'c1').del(store.names, 'name-c1').del(endpoints, 'web/80') })
  t.same((await store.containers.list()).entries, [])
  t.same(await endpoints.keys(), [])
})

t.test('names are unique', async t => {
  const path = await tmpStorePath(t)
  const store = await openStore({ path })
  t.teardown(() => store.close())
  await store.putContainer(containerRecord('a', { name: 'web' }))
  await t.rejects(store.putContainer(containerRecord('b', { name: 'web' })), { code: 'BERTH_ERR_NAME_IN_USE' })
  // concurrent creators: exactly one wins
  const results = await Promise.allSettled(['c', 'd', 'e'].map(id => store.putContainer(containerRecord(id, { name: 'db' }))))
  t.equal(results.filter(r => r.status === 'fulfilled').length, 1)
  // update in place, rename frees the old name
  await store.putContainer(containerRecord('a', { name: 'web2', state: 'running', pid: 42 }))
  t.equal(await store.names.get('web'), undefined)
  t.equal(await store.names.get('web2'), 'a')
  await store.deleteContainer('a')
  t.equal(await store.names.get('web2'), undefined)
  t.equal(await store.containers.get('a'), undefined)
})

t.test('a corrupt record is reported with its key and skipped by listings', async t => {
  const path = await tmpStorePath(t)
  let store = await openStore({ path })
  await store.putContainer(containerRecord('good1'))
  await store.putContainer(containerRecord('good2'))
  await store.close()
  await rawPut(path, 'containers', 'garbage', Buffer.from([0xc1, 0xff, 0x00, 0x13])) // not msgpack
  await rawPut(path, 'containers', 'wrongshape', pack({ ...containerRecord('wrongshape'), name: 7 }))
  store = await openStore({ path })
  t.teardown(() => store.close())
  const { entries, skipped } = await store.containers.list()
  t.same(entries.map(e => e.key), ['good1', 'good2'])
  t.same(skipped.map(s => s.key).sort(), ['garbage', 'wrongshape'])
  t.match(skipped.find(s => s.key === 'wrongshape'), { sublevel: 'containers', reason: /name/ })
  await t.rejects(store.containers.get('garbage'), { code: 'BERTH_ERR_STORE_CORRUPT', key: 'garbage' })
  t.ok(store.stats().corruptRecords >= 3)
  // a corrupt record can still be deleted
  await store.deleteContainer('garbage')
  t.equal((await store.containers.list()).skipped.length, 1)
})

t.test('a crash (SIGKILL) in the middle of writing leaves a consistent store', async t => {
  const path = await tmpStorePath(t)
  const writer = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url))
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, [writer, path], { stdio: ['ignore', 'pipe', 'inherit'] })
    let acked: string[] = []
    let buf = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      buf += s
      const lines = buf.split('\n')
      buf = lines.pop()!
      acked = acked.concat(lines)
    })
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (acked.length > 200 + round * 37) { clearInterval(check); child.kill('SIGKILL'); resolve() }
      }, 5)
    })
    await new Promise(resolve => child.once('close', resolve))
    const store = await openStore({ path })
    const { entries, skipped } = await store.containers.list()
    const names = (await store.names.list()).entries
    t.equal(skipped.length, 0, `round ${round}: no corrupt records`)
    // every container has its name entry and every name entry its container: no torn batch
    t.same(names.map(n => n.value).sort(), entries.map(e => e.key).sort(), `round ${round}: index matches`)
    // the last acknowledged write survived (LevelDB syncs the log to the OS before acking; a
    // process crash, unlike a power loss, does not lose what the OS has)
    // (odd ids are never deleted by the writer; even ones are, right after the next put)
    const last = acked.filter(id => Number(id.slice(1)) % 2 === 1).at(-1)!
    t.ok(entries.some(e => e.key === last), `round ${round}: ${last} kept`)
    await store.close()
  }
})
