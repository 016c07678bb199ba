// Deterministic simulation at 1,000 nodes: a fleet starts, three nodes crash under 1% loss, and
// every live node must agree on the digest and see exactly the crashed ones dead. Lean: virtual
// time only, one seed (BERTH_SIM_SEED to replay another). Gossip and anti-entropy run at a
// quarter of the lan rate here: the protocol is the same, and at the full rate a thousand nodes
// exchange ~15k gossip messages per virtual second, which is minutes of CPU per run.

import t from 'tap'
import { runScenario } from './sim-scenario.ts'

const seed = Number(process.env.BERTH_SIM_SEED ?? 1000)

t.test('a 1,000-node fleet converges and declares exactly the crashed nodes dead', async t => {
  const r = await runScenario({ seed, nodes: 1000, partitions: false, crashes: 3, settleLimitMs: 120_000,
    config: { gossipIntervalMs: 800, antiEntropyIntervalMs: 8_000 }
  })
  t.comment(`seed ${seed}: converged ${r.converged} ${r.convergeMs} virtual ms after faults, ${r.wallMs} ms wall, trace ${r.traceHash}`)
  if (!r.converged || r.falseDeaths.length > 0) t.comment(`FAILING SEED ${seed} (replay: BERTH_SIM_SEED=${seed}): ${JSON.stringify({ ...r, falseDeaths: r.falseDeaths.slice(0, 5) })}`)
  t.ok(r.converged, 'converged')
  t.equal(r.digests, 1, 'one digest')
  t.same(r.membershipErrors, [], 'crashed nodes dead, live ones alive')
  t.same(r.falseDeaths, [], 'no live node declared dead')
})
