import { benchStartup } from './run-startup.ts';
import { benchEnvd } from './envd.ts';

/**
 * `npm run bench`: every speed and memory target of the issues, each measured
 * against its peers in the same run. BENCH_RUNS sets the sample size of the
 * start-up benchmark (≥ 20), BENCH_ROUND_TRIPS that of envd's (≥ 200).
 */
const runs = Number(process.env.BENCH_RUNS ?? 25);
const roundTrips = Number(process.env.BENCH_ROUND_TRIPS ?? 300);
if (!Number.isInteger(runs) || runs < 20 || !Number.isInteger(roundTrips) || roundTrips < 200) {
  process.stderr.write('bench: BENCH_RUNS must be a whole number ≥ 20 and BENCH_ROUND_TRIPS ≥ 200 (medians of fewer are noise)\n');
  process.exit(2);
}
process.stdout.write(`brig benchmarks — ${new Date().toISOString()}, medians\n\n`);
process.stdout.write(benchStartup(runs) + '\n\n');
process.stdout.write((await benchEnvd(roundTrips)) + '\n');
