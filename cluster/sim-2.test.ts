// Deterministic simulation, part 2 (other seeds): seeds of a 100-node fleet under loss, delay/jitter, crashes,
// partitions and a restart. Every live node must converge to one digest and the right view of
// who is alive; outside partitions no live node may be declared dead. A failing seed is printed;
// replay it with BERTH_SIM_SEED=<seed>. BERTH_SIM_SEEDS=<n> runs more seeds.

import t from 'tap'
import { runScenario } from './sim-scenario.ts'

const PART = Number(process.env.BERTH_SIM_PART ?? 1)
const PER_FILE = Number(process.env.BERTH_SIM_SEEDS ?? 100)
const only = process.env.BERTH_SIM_SEED

const seeds = only !== undefined ? [Number(only)] : Array.from({ length: PER_FILE }, (_, i) => 1 + PART * 100_000 + i)

t.test(`${seeds.length} seeds of a 100-node fleet converge`, async t => {
  const failures: string[] = []
  let worstMs = 0
  for (const seed of seeds) {
    const r = await runScenario({ seed, nodes: 100 })
    worstMs = Math.max(worstMs, r.convergeMs)
    const bad = !r.converged || (!r.partitioned && r.falseDeaths.length > 0)
    if (bad) {
      failures.push(seed.toString())
      t.comment(`FAILING SEED ${seed} (replay: BERTH_SIM_SEED=${seed}): ${JSON.stringify({ ...r, falseDeaths: r.falseDeaths.slice(0, 5) })}`)
    }
  }
  t.comment(`worst convergence after faults stopped: ${worstMs} virtual ms`)
  t.same(failures, [], 'every seed converges with no false deaths')
})

t.test('a seed replays exactly (same seed → same trace hash)', async t => {
  const seed = seeds[0] as number
  const a = await runScenario({ seed, nodes: 30 })
  const b = await runScenario({ seed, nodes: 30 })
  t.equal(a.traceHash, b.traceHash)
  t.equal(a.convergeMs, b.convergeMs)
  const c = await runScenario({ seed: seed + 1, nodes: 30 })
  t.not(c.traceHash, a.traceHash, 'another seed, another trace')
})
