import { readFileSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { percentile } from './measure.ts';
import { tempWorkspace } from '../test/helpers/brig.ts';
import { serveDaemon } from '../test/helpers/daemon.ts';

/** `brig serve` in a process of its own, as users run it: the client's timings are not the daemon's work. */
const serve = (stateDir: string, pool: number, args: string[] = []) => serveDaemon(stateDir, { apiKey: 'bench', pool, args });

/**
 * Budgets that fit `count` sandboxes of the default policy (2 GiB, 512 tasks,
 * 512 × 1024 open files each): the defaults (100 sandboxes, 2 × RAM of
 * memory) stop a 24 GiB machine at 23, before the idle row's 200.
 */
export function budgetsFor(count: number): string[] {
  return ['--max-sandboxes', String(count), '--max-memory-mib', String(count * 2048), '--max-tasks', String(count * 512), '--max-open-files', String(count * 512 * 1024)];
}

/**
 * Issue 4's benchmark (so far): a cold create → first commands.run("true")
 * through the e2b SDK against `brig serve`, create+exec+kill cycles per
 * second, the same from the warm pool, and the memory of an idle sandbox
 * (PSS of every process in it). Reference figures quoted by peers (not
 * measurable here): E2B ~150 ms, Daytona < 90 ms, microsandbox < 100 ms.
 */
export async function benchDaemon(creates: number, idle: number): Promise<string> {
  const warm = await benchWarmPool(creates);
  const sustained = await benchSustainedCycles(40, 2);
  const state = tempWorkspace('brig-bench-daemon-');
  const daemon = await serve(state.dir, 0, budgetsFor(idle + 10));
  const opts = { apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
  try {
    for (let warm = 0; warm < 3; warm++) await (await Sandbox.create(opts)).kill();
    const start = process.hrtime.bigint();
    const cold = (await coldCreates(opts, creates)).firstExec;
    const cyclesPerSecond = creates / (Number(process.hrtime.bigint() - start) / 1e9);

    // Many idle sandboxes at once, created 8 at a time; each must answer a command.
    const sandboxes: Sandbox[] = [];
    let failures = 0;
    for (let index = 0; index < idle; index += 8) {
      const batch = await Promise.allSettled(Array.from({ length: Math.min(8, idle - index) }, () => Sandbox.create(opts)));
      for (const result of batch) {
        if (result.status === 'fulfilled') sandboxes.push(result.value);
        else failures++;
      }
    }
    const answers = await Promise.allSettled(sandboxes.map((sandbox) => sandbox.commands.run('true')));
    failures += answers.filter((answer) => answer.status === 'rejected').length;
    const pss = sandboxes.map((sandbox) => sandboxPssMiB(state.dir, sandbox.sandboxId));
    const totalPss = pss.reduce((sum, value) => sum + value, 0);
    for (let index = 0; index < sandboxes.length; index += 16) await Promise.all(sandboxes.slice(index, index + 16).map((sandbox) => sandbox.kill()));
    pss.sort((a, b) => a - b);

    return [
      '### brig serve (sandboxes through the e2b SDK)',
      '',
      '| what | measured | target |',
      '| --- | --- | --- |',
      `| cold create → first commands.run("true") | p50 ${percentile(cold, 0.5).toFixed(1)} ms, p95 ${percentile(cold, 0.95).toFixed(1)} ms (${creates} runs) | ≤ 60 ms p50: ${percentile(cold, 0.5) <= 60 ? 'met' : 'NOT met'} |`,
      `| create + exec + kill, one after another, no pool | ${cyclesPerSecond.toFixed(1)} cycles/s | reported |`,
      `| create + exec + kill, one after another, the default warm pool (2), sustained | ${sustained.toFixed(1)} cycles/s | ≥ 20/s: ${sustained >= 20 ? 'met' : 'NOT met'} |`,
      `| idle sandboxes held at once, each answering a command | ${sandboxes.length - failures} of ${idle}, ${failures} errors; ${(totalPss / 1024).toFixed(2)} GiB PSS in all | ${idle} without an error: ${failures === 0 && sandboxes.length === idle ? 'met' : 'NOT met'} |`,
      `| memory of an idle sandbox (PSS of its processes) | median ${percentile(pss, 0.5).toFixed(1)} MiB | reported |`,
      `| create from the warm pool (pool of 4, refilled between creates) | p50 ${warm.create.p50.toFixed(1)} ms, p95 ${warm.create.p95.toFixed(1)} ms | ≤ 5 ms p50: ${warm.create.p50 <= 5 ? 'met' : 'NOT met'} |`,
      `| create from the warm pool → first commands.run("true") | p50 ${warm.firstRun.p50.toFixed(1)} ms, p95 ${warm.firstRun.p95.toFixed(1)} ms | reported |`,
    ].join('\n');
  } finally {
    await daemon.stop();
    state.remove();
  }
}

/** Cycles back to back against a daemon with a pool of `pool`: the pool refills while the cycles run, so this is the sustained rate. */
async function benchSustainedCycles(cycles: number, pool: number): Promise<number> {
  const state = tempWorkspace('brig-bench-cycles-');
  const daemon = await serve(state.dir, pool);
  const opts = { apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
  try {
    await waitForPool(daemon.url, pool);
    const start = process.hrtime.bigint();
    for (let index = 0; index < cycles; index++) {
      const sandbox = await Sandbox.create(opts);
      await sandbox.commands.run('true');
      await sandbox.kill();
    }
    return cycles / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    await daemon.stop();
    await (await serve(state.dir, 0)).stop();
    state.remove();
  }
}

/** Creates served by a pool of 4: the pool is let refill between creates (not timed), as a daemon at rest would. */
async function benchWarmPool(creates: number): Promise<{ create: { p50: number; p95: number }; firstRun: { p50: number; p95: number } }> {
  const state = tempWorkspace('brig-bench-pool-');
  const daemon = await serve(state.dir, 4);
  const opts = { apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
  const createTimes: number[] = [];
  const runTimes: number[] = [];
  try {
    for (let index = 0; index < creates; index++) {
      await waitForPool(daemon.url, 4);
      const began = process.hrtime.bigint();
      const sandbox = await Sandbox.create(opts);
      createTimes.push(Number(process.hrtime.bigint() - began) / 1e6);
      await sandbox.commands.run('true');
      runTimes.push(Number(process.hrtime.bigint() - began) / 1e6);
      await sandbox.kill();
    }
  } finally {
    await daemon.stop();
    // Pooled sandboxes outlive a daemon by design; a daemon without a pool stops them.
    await (await serve(state.dir, 0)).stop();
    state.remove();
  }
  const stats = (times: number[]) => {
    const sorted = [...times].sort((a, b) => a - b);
    return { p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95) };
  };
  return { create: stats(createTimes), firstRun: stats(runTimes) };
}

/** Until the daemon's pool is full (GET /v1/pool), polling. */
async function waitForPool(url: string, size: number): Promise<void> {
  for (let attempt = 0; attempt < 2000; attempt++) {
    const response = await fetch(`${url}/v1/pool`, { headers: { 'x-api-key': 'bench' } });
    const pool = (await response.json()) as { ready: number };
    if (pool.ready >= size) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the warm pool never filled');
}

/** Sum of Pss over every process in the sandbox's pids cgroup. */
/** `count` cold creates → first commands.run("true"), each killed after; the times sorted, in ms. */
/** Each sorted, in ms: until create answers (the daemon answers once envd does: boot to envd ready), and until the first commands.run("true") is back. */
export async function coldCreates(opts: SandboxOpts, count: number): Promise<{ ready: number[]; firstExec: number[] }> {
  const ready: number[] = [];
  const firstExec: number[] = [];
  for (let index = 0; index < count; index++) {
    const began = process.hrtime.bigint();
    const sandbox = await Sandbox.create(opts);
    ready.push(Number(process.hrtime.bigint() - began) / 1e6);
    await sandbox.commands.run('true');
    firstExec.push(Number(process.hrtime.bigint() - began) / 1e6);
    await sandbox.kill();
  }
  return { ready: ready.sort((a, b) => a - b), firstExec: firstExec.sort((a, b) => a - b) };
}

/** PSS of every host process in the sandbox's cgroup (the jail's processes; gVisor's Sentry, gofer and stubs). */
export function sandboxPssMiB(_stateDir: string, id: string): number {
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
