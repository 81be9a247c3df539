import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench`: every speed and memory target of the issues, each measured
 * against its peers in the same run. Each section runs in a Node process of
 * its own, so that one section's leftovers (its heap, its JIT state, its
 * children) cannot tilt the next. BENCH_RUNS sets the sample size of the
 * start-up benchmark (≥ 20), BENCH_ROUND_TRIPS that of envd's (≥ 200).
 *
 * Sections are chosen by name: `npm run bench -- load egress` runs those two;
 * no name runs every section but the soak, which takes 10 minutes and is
 * asked for (`npm run bench -- soak`, its length in seconds as a number
 * argument or BRIG_SOAK_SECONDS), and `base`, the ~5-minute build of the base
 * template from the network (`npm run bench -- base`). The load test's size:
 * BRIG_LOAD_* (bench/load.ts); the image section's: BENCH_IMAGE_CREATES
 * (interleaved creates per row, ≥ 20) and BENCH_IMAGE_IDLE (idle image
 * sandboxes held at once, default 200). The tiers section compares the jail
 * with the brig of BENCH_BASELINE (a git revision, built in a worktree) when
 * it is set; BENCH_TIER_CREATES sets its creates per tier (≥ 10).
 */
const runs = Number(process.env.BENCH_RUNS ?? 25);
const roundTrips = Number(process.env.BENCH_ROUND_TRIPS ?? 300);
if (!Number.isInteger(runs) || runs < 20 || !Number.isInteger(roundTrips) || roundTrips < 200) {
  process.stderr.write('bench: BENCH_RUNS must be a whole number ≥ 20 and BENCH_ROUND_TRIPS ≥ 200 (medians of fewer are noise)\n');
  process.exit(2);
}
const numbers = process.argv.slice(2).filter((arg) => /^\d+$/.test(arg));
const soakSeconds = Number(numbers[0] ?? process.env.BRIG_SOAK_SECONDS ?? 600);
if (!Number.isInteger(soakSeconds) || soakSeconds < 10) {
  process.stderr.write('bench: the soak\'s length (a number argument or BRIG_SOAK_SECONDS) must be a whole number of seconds ≥ 10\n');
  process.exit(2);
}

const imageCreates = Number(process.env.BENCH_IMAGE_CREATES ?? 30);
const imageIdle = Number(process.env.BENCH_IMAGE_IDLE ?? 200);
if (!Number.isInteger(imageCreates) || imageCreates < 20 || !Number.isInteger(imageIdle) || imageIdle < 1) {
  process.stderr.write('bench: BENCH_IMAGE_CREATES must be a whole number ≥ 20 and BENCH_IMAGE_IDLE ≥ 1\n');
  process.exit(2);
}

const tierCreates = Number(process.env.BENCH_TIER_CREATES ?? 20);
if (!Number.isInteger(tierCreates) || tierCreates < 10) {
  process.stderr.write('bench: BENCH_TIER_CREATES must be a whole number ≥ 10\n');
  process.exit(2);
}

const sections: Record<string, [file: string, call: string]> = {
  startup: ['run-startup.ts', `console.log(m.benchStartup(${runs}))`],
  envd: ['envd.ts', `console.log(await m.benchEnvd(${roundTrips}))`],
  daemon: ['daemon.ts', 'console.log(await m.benchDaemon(30, 200))'],
  egress: ['egress.ts', 'console.log(await m.benchEgress(2000))'],
  load: ['load.ts', 'console.log(await m.benchLoad())'],
  soak: ['load.ts', `console.log(await m.benchSoak(${soakSeconds}))`],
  images: ['images.ts', `console.log(await m.benchImages(${imageCreates}, ${imageIdle}))`],
  base: ['images.ts', 'console.log(await m.benchBaseBuild())'],
  tiers: ['tiers.ts', `console.log(await m.benchTiers(${runs}, ${tierCreates}))`],
  jobs: ['jobs.ts', 'console.log(await m.benchJobs(200, 30))'],
  transcripts: ['transcripts.ts', `console.log(await m.benchTranscripts(${roundTrips}, 10))`],
  templates: ['templates.ts', 'console.log(await m.benchTemplates(200, 20, 50))'],
};
/** Asked for by name only: the soak takes 10 minutes, the base build ~5 and the network, templates builds two templates the first time. */
const optIn = new Set(['soak', 'base', 'templates']);
const asked = process.argv.slice(2).filter((arg) => !/^\d+$/.test(arg));
const unknown = asked.filter((name) => !(name in sections));
if (unknown.length > 0) {
  process.stderr.write(`bench: no section named ${unknown.join(', ')}; the sections: ${Object.keys(sections).join(', ')}\n`);
  process.exit(2);
}
const chosen = asked.length > 0 ? asked : Object.keys(sections).filter((name) => !optIn.has(name));

process.stdout.write(`brig benchmarks — ${new Date().toISOString()}, medians\n\n`);
let failed = false;
for (const name of chosen) {
  const [file, call] = sections[name] ?? ['', ''];
  const module = fileURLToPath(new URL(file, import.meta.url));
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(module)}); ${call}`], { stdio: 'inherit' });
  if (result.status !== 0) failed = true;
  process.stdout.write('\n');
}
process.exit(failed ? 1 : 0);
