import { benchStartup } from './run-startup.ts';

/**
 * `npm run bench`: every speed and memory target of the issues, each measured
 * against its peers in the same run. Set BENCH_RUNS to change the sample size.
 */
const runs = Number(process.env.BENCH_RUNS ?? 25);
if (!Number.isInteger(runs) || runs < 20) {
  process.stderr.write('bench: BENCH_RUNS must be a whole number ≥ 20 (medians of fewer are noise)\n');
  process.exit(2);
}
process.stdout.write(`brig benchmarks — ${new Date().toISOString()}, ${runs} runs per peer, medians\n\n`);
process.stdout.write(benchStartup(runs) + '\n');
