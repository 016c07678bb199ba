// Deterministic simulation, part 2 (other seeds): see fixtures/sim-seeds.ts. BERTH_SIM_PART overrides the part.
import t from 'tap'
import { seedSuite } from './fixtures/sim-seeds.ts'

seedSuite(t, Number(process.env.BERTH_SIM_PART ?? 1))
