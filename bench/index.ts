import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench`: every speed and memory target of the issues, each measured
 * against its peers in the same run. Each section runs in a Node process of
 * its own, so that one section's leftovers (its heap, its JIT state, its
 * children) cannot tilt the next. BENCH_RUNS sets the sample size of the
 * start-up benchmark (≥ 20), BENCH_ROUND_TRIPS that of envd's (≥ 200).
 */
const runs = Number(process.env.BENCH_RUNS ?? 25);
const roundTrips = Number(process.env.BENCH_ROUND_TRIPS ?? 300);
if (!Number.isInteger(runs) || runs < 20 || !Number.isInteger(roundTrips) || roundTrips < 200) {
  process.stderr.write('bench: BENCH_RUNS must be a whole number ≥ 20 and BENCH_ROUND_TRIPS ≥ 200 (medians of fewer are noise)\n');
  process.exit(2);
}

const sections: Array<[file: string, call: string]> = [
  ['run-startup.ts', `console.log(m.benchStartup(${runs}))`],
  ['envd.ts', `console.log(await m.benchEnvd(${roundTrips}))`],
  ['daemon.ts', 'console.log(await m.benchDaemon(30, 200))'],
  ['egress.ts', 'console.log(await m.benchEgress(2000))'],
];

process.stdout.write(`brig benchmarks — ${new Date().toISOString()}, medians\n\n`);
let failed = false;
for (const [file, call] of sections) {
  const module = fileURLToPath(new URL(file, import.meta.url));
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(module)}); ${call}`], { stdio: 'inherit' });
  if (result.status !== 0) failed = true;
  process.stdout.write('\n');
}
process.exit(failed ? 1 : 0);
