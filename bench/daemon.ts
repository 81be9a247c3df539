import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Sandbox, type SandboxOpts } from 'e2b';
import { startDaemon } from '../src/daemon/index.ts';
import { percentile } from './measure.ts';
import { tempWorkspace } from '../test/helpers/brig.ts';

const ENVD = fileURLToPath(new URL('../dist/envd.cjs', import.meta.url));

/**
 * Issue 4's benchmark (so far): a cold create → first commands.run("true")
 * through the e2b SDK against `brig serve`, create+exec+kill cycles per
 * second, and the memory of an idle sandbox (PSS of every process in it).
 * No warm pool yet, so no warm row. Reference figures quoted by peers (not
 * measurable here): E2B ~150 ms, Daytona < 90 ms, microsandbox < 100 ms.
 */
export async function benchDaemon(creates: number, idle: number): Promise<string> {
  const state = tempWorkspace('brig-bench-daemon-');
  const daemon = await startDaemon({ port: 0, stateDir: state.dir, apiKey: 'bench', envdBundle: ENVD });
  const opts = { apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
  try {
    for (let warm = 0; warm < 3; warm++) await (await Sandbox.create(opts)).kill();
    const cold: number[] = [];
    const start = process.hrtime.bigint();
    for (let index = 0; index < creates; index++) {
      const began = process.hrtime.bigint();
      const sandbox = await Sandbox.create(opts);
      await sandbox.commands.run('true');
      cold.push(Number(process.hrtime.bigint() - began) / 1e6);
      await sandbox.kill();
    }
    const cyclesPerSecond = creates / (Number(process.hrtime.bigint() - start) / 1e9);
    cold.sort((a, b) => a - b);

    const sandboxes = await Promise.all(Array.from({ length: idle }, () => Sandbox.create(opts)));
    await new Promise((resolve) => setTimeout(resolve, 1000)); // let them settle
    const pss = sandboxes.map((sandbox) => sandboxPssMiB(daemon.stateDir, sandbox.sandboxId));
    await Promise.all(sandboxes.map((sandbox) => sandbox.kill()));
    pss.sort((a, b) => a - b);

    return [
      '### brig serve (sandboxes through the e2b SDK)',
      '',
      '| what | measured | target |',
      '| --- | --- | --- |',
      `| cold create → first commands.run("true") | p50 ${percentile(cold, 0.5).toFixed(1)} ms, p95 ${percentile(cold, 0.95).toFixed(1)} ms (${creates} runs) | ≤ 60 ms p50: ${percentile(cold, 0.5) <= 60 ? 'met' : 'NOT met'} |`,
      `| create + exec + kill, one after another | ${cyclesPerSecond.toFixed(1)} cycles/s | ≥ 20/s: ${cyclesPerSecond >= 20 ? 'met' : 'NOT met'} |`,
      `| memory of an idle sandbox (PSS of its processes) | median ${percentile(pss, 0.5).toFixed(1)} MiB over ${idle} sandboxes | reported |`,
      '| warm pool | not built yet | ≤ 5 ms p50 |',
    ].join('\n');
  } finally {
    await daemon.close();
    state.remove();
  }
}

/** Sum of Pss over every process in the sandbox's pids cgroup. */
function sandboxPssMiB(_stateDir: string, id: string): number {
  let kib = 0;
  let pids: string[] = [];
  for (const dir of [`/sys/fs/cgroup/pids/brig-${id}`, `/sys/fs/cgroup/brig-${id}`]) {
    try {
      pids = readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean);
      break;
    } catch {
      // Try the next layout.
    }
  }
  for (const pid of pids) {
    try {
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      kib += Number(match?.[1] ?? 0);
    } catch {
      // Gone.
    }
  }
  return kib / 1024;
}
