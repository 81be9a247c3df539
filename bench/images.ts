import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, type Dirent } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { budgetsFor } from './daemon.ts';
import { percentile } from './measure.ts';
import { openImageStore } from '../src/images/index.ts';
import { BRIG, tempWorkspace } from '../test/helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../test/helpers/daemon.ts';
import { seedUserImage } from '../test/helpers/images.ts';

/**
 * Issue 11's benchmarks: sandboxes from an image against today's host-root
 * sandbox, through the e2b SDK against `brig serve` (each daemon a process
 * of its own, as users run it):
 *
 * - create → first commands.run("true"), cold (pool 0) and from the warm
 *   pool, image and host-root creates interleaved one by one in the same run;
 * - the disk a sandbox takes: the bytes under its workspace (the overlay's
 *   upper and work directories) after a create and after a small write;
 * - many idle image sandboxes from one image at once: memory, the daemon's
 *   RSS, the time to create them, and that removing them leaves nothing.
 *
 * The image is test/helpers/images.ts's: Debian bookworm minbase (mmdebstrap,
 * cached in /var/tmp/brig-test-cache) plus a RUN step that adds E2B's `user`,
 * named `base` so that the daemon's warm pool (which serves the default
 * template) boots from it. Only root runs image sandboxes.
 */
const API_KEY = 'bench';
const IMAGE = 'base';
/** Every SDK call is bounded: a daemon that stops answering shows as an error, not a hang. */
const CALL = { timeoutMs: 600_000, requestTimeoutMs: 60_000 };

interface Timings {
  create: number[];
  firstRun: number[];
}

interface Daemons {
  image: RunningDaemon;
  host: RunningDaemon;
}

export async function benchImages(creates: number, idle: number): Promise<string> {
  if (process.getuid?.() !== 0) return '### sandboxes from images\n\nskipped: image sandboxes need root';
  const imageState = tempWorkspace('brig-bench-image-');
  const hostState = tempWorkspace('brig-bench-host-');
  try {
    const seeded = performance.now();
    await seedUserImage(imageState.dir, IMAGE);
    const seedSeconds = (performance.now() - seeded) / 1000;
    const store = await openImageStore(`${imageState.dir}/images`);
    const summary = (await store.listImages()).find((image) => image.name === IMAGE);
    const manifest = await store.getImage(IMAGE);
    const layerFiles = (await Promise.all(manifest.layers.map((digest) => store.layer(digest)))).reduce((sum, layer) => sum + (layer?.files ?? 0), 0);
    const imageBytes = summary?.size ?? NaN;
    const imageDiskBytes = (await Promise.all(manifest.layers.map(async (digest) => diskUsage(await store.layerDir(digest))))).reduce((sum, bytes) => sum + bytes, 0);

    const cold = await interleaved(imageState.dir, hostState.dir, 0, creates);
    const pooled = await interleaved(imageState.dir, hostState.dir, 4, creates);
    const disk = await diskPerSandbox(imageState.dir);
    const many = await manyIdle(imageState.dir, idle);

    const row = (what: string, image: number[], host: number[], target: string): string => {
      const [i50, i90, h50, h90] = [percentile(sorted(image), 0.5), percentile(sorted(image), 0.9), percentile(sorted(host), 0.5), percentile(sorted(host), 0.9)];
      return `| ${what} | ${i50.toFixed(1)} / ${i90.toFixed(1)} | ${h50.toFixed(1)} / ${h90.toFixed(1)} | ${(i50 - h50).toFixed(1)} ms, ${(i50 / h50).toFixed(2)}× | ${pairedDifference(image, host).toFixed(1)} ms | ${target} |`;
    };
    // The target is judged on the paired difference: the median of each round's image − host, which a machine's drift over minutes does not move.
    const coldAdded = pairedDifference(cold.image.firstRun, cold.host.firstRun);
    const poolAdded = pairedDifference(pooled.image.create, pooled.host.create);
    const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
    const kib = (bytes: number): string => `${(bytes / 1024).toFixed(0)} KiB`;
    return [
      `### sandboxes from images: an image of ${manifest.layers.length} layers (${mib(imageBytes)} of file data, ${layerFiles} files; seeded in ${seedSeconds.toFixed(1)} s) against the host-root sandbox, through the e2b SDK`,
      '',
      `| what (${creates} runs each, interleaved) | image p50 / p90 ms | host-root p50 / p90 ms | image − host p50, ratio | median of the rounds' image − host | target |`,
      '| --- | --- | --- | --- | --- | --- |',
      row('cold create (pool 0)', cold.image.create, cold.host.create, 'reported'),
      row('cold create → first commands.run("true")', cold.image.firstRun, cold.host.firstRun, `≤ 5 ms added (paired median): ${coldAdded <= 5 ? 'met' : 'NOT met'}`),
      row('create from the warm pool (pool of 4, refilled between creates)', pooled.image.create, pooled.host.create, `nothing added (paired median ≤ 1 ms): ${poolAdded <= 1 ? 'met' : 'NOT met'}`),
      row('create from the warm pool → first commands.run("true")', pooled.image.firstRun, pooled.host.firstRun, 'reported'),
      '',
      '| disk per image sandbox (its workspace: overlay upper + work, blocks allocated) | measured |',
      '| --- | --- |',
      `| the image (its layers, shared by every sandbox) | ${mib(imageBytes)} of file data, ${mib(imageDiskBytes)} on disk |`,
      `| after create → first commands.run("true") | ${kib(disk.afterCreate.bytes)} in ${disk.afterCreate.entries} entries (${disk.afterCreate.list}) |`,
      `| after writing 4 KiB (files.write) and 1 MiB (a command) under /home/user | ${kib(disk.afterWrite.bytes)} in ${disk.afterWrite.entries} entries (${mib(disk.afterWrite.bytes - disk.afterCreate.bytes)} more) |`,
      `| after deleting /usr/share/doc (whiteouts only) | ${kib(disk.afterDelete.bytes)} in ${disk.afterDelete.entries} entries |`,
      `| a sandbox's share of the image at 1 and 200 sandboxes | ${mib(imageDiskBytes)}, ${mib(imageDiskBytes / 200)} |`,
      '',
      `| ${idle} idle image sandboxes from one image (created 8 at a time) | measured |`,
      '| --- | --- |',
      `| created, each answering commands.run("true") | ${many.answered} of ${idle}, ${many.failures} errors${many.firstError ? ` (first: ${many.firstError})` : ''} |`,
      `| time to create them all | ${many.createSeconds.toFixed(1)} s (${(many.created / many.createSeconds).toFixed(1)} sandboxes/s) |`,
      `| memory of their processes (PSS) | ${(many.pssTotalMiB / 1024).toFixed(2)} GiB in all, median ${many.pssMedianMiB.toFixed(1)} MiB each |`,
      `| their memory cgroups (memory.usage_in_bytes: page cache of their writes included) | ${(many.cgroupTotalMiB / 1024).toFixed(2)} GiB in all, median ${many.cgroupMedianMiB.toFixed(1)} MiB each |`,
      `| the host's used memory (MemTotal − MemAvailable) before → with them | ${many.hostBeforeMiB.toFixed(0)} → ${many.hostWithMiB.toFixed(0)} MiB (${((many.hostWithMiB - many.hostBeforeMiB) / Math.max(1, many.created)).toFixed(1)} MiB per sandbox) |`,
      `| the daemon's RSS before → with them | ${many.daemonBeforeMiB.toFixed(1)} → ${many.daemonWithMiB.toFixed(1)} MiB |`,
      `| their workspaces on disk | ${mib(many.workspaceBytes)} in all |`,
      `| time to remove them all (kill, 16 at a time) | ${many.removeSeconds.toFixed(1)} s |`,
      `| left after removal (cgroups, processes, mounts, directories) | ${many.leftovers.length === 0 ? 'nothing' : many.leftovers.slice(0, 5).join('; ')} (the same check while they ran: ${many.seenWhileRunning}) |`,
      '',
      `host load average at the start / end: ${many.loadBefore} / ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    ].join('\n');
  } finally {
    imageState.remove();
    hostState.remove();
  }
}

/** The median of image[i] − host[i]: the two creates of one round ran back to back. */
function pairedDifference(image: number[], host: number[]): number {
  return percentile(sorted(image.map((value, index) => value - (host[index] ?? NaN))), 0.5);
}

/**
 * `runs` creates against an image daemon and a host-root daemon (both with a
 * pool of `pool`), alternating one by one so a noisy moment falls on both.
 * With a pool, both pools are let refill before every create (not timed).
 */
async function interleaved(imageDir: string, hostDir: string, pool: number, runs: number): Promise<{ image: Timings; host: Timings }> {
  const daemons: Daemons = { image: await serveDaemon(imageDir, { apiKey: API_KEY, pool }), host: await serveDaemon(hostDir, { apiKey: API_KEY, pool }) };
  const timings = { image: { create: [], firstRun: [] } as Timings, host: { create: [], firstRun: [] } as Timings };
  // Both pools full before every create: neither daemon's refill may run during the other's create.
  const settle = async (): Promise<void> => {
    if (pool > 0) for (const daemon of [daemons.image, daemons.host]) await waitForPool(daemon.url, pool);
  };
  try {
    for (const kind of ['image', 'host'] as const) {
      for (let warm = 0; warm < 3; warm++) await once(daemons[kind], settle, { create: [], firstRun: [] });
    }
    for (let round = 0; round < runs; round++) {
      for (const kind of round % 2 === 0 ? (['image', 'host'] as const) : (['host', 'image'] as const)) await once(daemons[kind], settle, timings[kind]);
    }
    if (daemons.image.process.exitCode !== null) throw new Error('the image daemon died');
  } finally {
    await daemons.image.stop();
    await daemons.host.stop();
    if (pool > 0) {
      // Pooled sandboxes outlive a daemon by design; a daemon without a pool stops them.
      await (await serveDaemon(imageDir, { apiKey: API_KEY, pool: 0 })).stop();
      await (await serveDaemon(hostDir, { apiKey: API_KEY, pool: 0 })).stop();
    }
  }
  return timings;
}

/** One create → first run → kill; the image daemon's default template is the image (its name is `base`). */
async function once(daemon: RunningDaemon, settle: () => Promise<void>, into: Timings): Promise<void> {
  await settle();
  const began = performance.now();
  const sandbox = await Sandbox.create(sdk(daemon));
  into.create.push(performance.now() - began);
  await sandbox.commands.run('true');
  into.firstRun.push(performance.now() - began);
  await sandbox.kill();
}

interface Usage {
  bytes: number;
  entries: number;
  list: string;
}

/** The bytes a sandbox's workspace takes on disk: after create, after small writes, after a delete. */
async function diskPerSandbox(stateDir: string): Promise<{ afterCreate: Usage; afterWrite: Usage; afterDelete: Usage }> {
  const daemon = await serveDaemon(stateDir, { apiKey: API_KEY });
  try {
    const sandbox = await Sandbox.create(IMAGE, sdk(daemon));
    try {
      const workspace = `${stateDir}/sandboxes/${sandbox.sandboxId}/workspace`;
      await sandbox.commands.run('true');
      const afterCreate = usage(workspace);
      await sandbox.files.write('/home/user/note.txt', 'x'.repeat(4096));
      await sandbox.commands.run('head -c 1048576 /dev/urandom > /home/user/blob && echo tmpfs > /tmp/not-counted && sync');
      const afterWrite = usage(workspace);
      await sandbox.commands.run('rm -rf /usr/share/doc && sync', { user: 'root' });
      const afterDelete = usage(workspace);
      return { afterCreate, afterWrite, afterDelete };
    } finally {
      await sandbox.kill();
    }
  } finally {
    await daemon.stop();
  }
}

function usage(dir: string): Usage {
  const names: string[] = [];
  const bytes = diskUsage(dir, (path) => names.push(path.slice(dir.length + 1)));
  const shown = names.length <= 12 ? names.join(', ') : `${names.slice(0, 12).join(', ')}, …`;
  return { bytes, entries: names.length, list: shown || 'none' };
}

/** Blocks allocated under `dir` (not `dir` itself), links not followed; `seen` gets each path. */
function diskUsage(dir: string, seen: (path: string) => void = () => {}): number {
  let total = 0;
  const walk = (at: string): void => {
    let names: string[];
    try {
      names = readdirSync(at);
    } catch {
      return;
    }
    for (const name of names) {
      const path = `${at}/${name}`;
      try {
        const stats = lstatSync(path);
        total += stats.blocks * 512;
        seen(path);
        if (stats.isDirectory()) walk(path);
      } catch {
        // Gone while counting.
      }
    }
  };
  walk(dir);
  return total;
}

interface ManyIdle {
  created: number;
  answered: number;
  failures: number;
  firstError?: string;
  createSeconds: number;
  removeSeconds: number;
  pssTotalMiB: number;
  pssMedianMiB: number;
  cgroupTotalMiB: number;
  cgroupMedianMiB: number;
  hostBeforeMiB: number;
  hostWithMiB: number;
  daemonBeforeMiB: number;
  daemonWithMiB: number;
  workspaceBytes: number;
  leftovers: string[];
  /** What the leftover check finds while they run, by kind. */
  seenWhileRunning: string;
  loadBefore: string;
}

/** `count` image sandboxes at once from one daemon, its sandbox budget raised to fit them. */
async function manyIdle(stateDir: string, count: number): Promise<ManyIdle> {
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const daemon = await serveDaemon(stateDir, { apiKey: API_KEY, args: budgetsFor(count + 10) });
  const pid = daemon.process.pid ?? 0;
  const sandboxes: Sandbox[] = [];
  const ids: string[] = [];
  let failures = 0;
  let firstError: string | undefined;
  const fail = (error: unknown): void => {
    failures++;
    firstError ??= String((error as Error)?.message ?? error).split('\n')[0]?.slice(0, 200);
  };
  try {
    // The daemon's first create pays its own warm-up; so does a sandbox's first command.
    await (await Sandbox.create(IMAGE, sdk(daemon))).kill();
    const hostBeforeMiB = hostUsedMiB();
    const daemonBeforeMiB = rssMiB(pid);
    const began = performance.now();
    for (let index = 0; index < count; index += 8) {
      const batch = await Promise.allSettled(Array.from({ length: Math.min(8, count - index) }, () => Sandbox.create(IMAGE, sdk(daemon))));
      for (const result of batch) {
        if (result.status === 'fulfilled') {
          sandboxes.push(result.value);
          ids.push(result.value.sandboxId);
        } else fail(result.reason);
      }
    }
    const createSeconds = (performance.now() - began) / 1000;
    const answers = await Promise.allSettled(sandboxes.map((sandbox) => sandbox.commands.run('true')));
    for (const answer of answers) if (answer.status === 'rejected') fail(answer.reason);
    // Let the first commands' transient memory settle before reading.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const pss = sorted(ids.map(sandboxPssMiB));
    const cgroup = sorted(ids.map(cgroupMemoryMiB));
    const hostWithMiB = hostUsedMiB();
    const daemonWithMiB = rssMiB(pid);
    const workspaceBytes = ids.reduce((sum, id) => sum + diskUsage(`${stateDir}/sandboxes/${id}/workspace`), 0);
    // The same check while they run: it must see them, or its "nothing" after removal means nothing.
    const whileRunning = leftovers(stateDir, ids);
    const removing = performance.now();
    for (let index = 0; index < sandboxes.length; index += 16) await Promise.all(sandboxes.slice(index, index + 16).map((sandbox) => sandbox.kill().catch(fail)));
    const removeSeconds = (performance.now() - removing) / 1000;
    return {
      created: sandboxes.length,
      answered: answers.filter((answer) => answer.status === 'fulfilled').length,
      failures,
      firstError,
      createSeconds,
      removeSeconds,
      pssTotalMiB: pss.reduce((sum, value) => sum + value, 0),
      pssMedianMiB: percentile(pss, 0.5),
      cgroupTotalMiB: cgroup.reduce((sum, value) => sum + value, 0),
      cgroupMedianMiB: percentile(cgroup, 0.5),
      hostBeforeMiB,
      hostWithMiB,
      daemonBeforeMiB,
      daemonWithMiB,
      workspaceBytes,
      leftovers: leftovers(stateDir, ids),
      seenWhileRunning: summarizeFound(whileRunning),
      loadBefore,
    };
  } finally {
    await Promise.all(sandboxes.map((sandbox) => sandbox.kill().catch(() => false)));
    await daemon.stop();
  }
}

function summarizeFound(found: string[]): string {
  const kinds = new Map<string, number>();
  for (const entry of found) {
    const kind = entry.startsWith('cgroup') ? 'cgroups' : entry.startsWith('directory') ? 'directories' : 'processes with a sandbox mount';
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return [...kinds].map(([kind, count]) => `${count} ${kind}`).join(', ') || 'nothing';
}

/** What a removed sandbox could leave: its cgroups, a process, a mount (in any process's namespace), its directory. */
function leftovers(stateDir: string, ids: string[]): string[] {
  const found: string[] = cgroupsOf(ids).map((dir) => `cgroup ${dir}`);
  for (const id of ids) if (existsSync(`${stateDir}/sandboxes/${id}`)) found.push(`directory sandboxes/${id}`);
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
      if (ids.some((id) => mounts.includes(id))) found.push(`process ${pid} has a mount of a sandbox`);
    } catch {
      // Gone.
    }
  }
  return found;
}

/** Sum of Pss over every process in the sandbox's pids cgroup. */
function sandboxPssMiB(id: string): number {
  let kib = 0;
  for (const pid of readLines(`/sys/fs/cgroup/pids/brig-${id}/cgroup.procs`)) {
    try {
      kib += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      // Gone.
    }
  }
  return kib / 1024;
}

/** The sandbox's memory cgroup's usage: found through one of its processes (the daemon's jails nest under its own cgroup). */
function cgroupMemoryMiB(id: string): number {
  for (const pid of readLines(`/sys/fs/cgroup/pids/brig-${id}/cgroup.procs`).concat(readLines(`/sys/fs/cgroup/brig-${id}/cgroup.procs`))) {
    for (const line of readLines(`/proc/${pid}/cgroup`)) {
      const [, controllers, path] = line.split(':');
      const file = controllers === '' ? `/sys/fs/cgroup/unified${path}/memory.current` : controllers?.split(',').includes('memory') ? `/sys/fs/cgroup/memory${path}/memory.usage_in_bytes` : null;
      if (file && existsSync(file)) return Number(readFileSync(file, 'utf8').trim()) / 1024 / 1024;
    }
  }
  return NaN;
}

/** Every cgroup directory on the host named after one of `ids` (brig-<id>), at any depth. */
function cgroupsOf(ids: string[]): string[] {
  const names = new Set(ids.map((id) => `brig-${id}`));
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      if (names.has(entry.name)) found.push(`${dir}/${entry.name}`);
      else if (depth < 6) walk(`${dir}/${entry.name}`, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

function rssMiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

function hostUsedMiB(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(info)?.[1] ?? NaN);
  return (field('MemTotal') - field('MemAvailable')) / 1024;
}

function sdk(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, ...CALL } as SandboxOpts;
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** Until the daemon's pool is full (GET /v1/pool), polling. */
async function waitForPool(url: string, size: number): Promise<void> {
  for (let attempt = 0; attempt < 3000; attempt++) {
    const response = await fetch(`${url}/v1/pool`, { headers: { 'x-api-key': API_KEY } });
    const pool = (await response.json()) as { ready: number };
    if (pool.ready >= size) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the warm pool never filled');
}

/**
 * `brig image build base` into a fresh state directory, as a user's first
 * build: the Debian bootstrap from the host apt's mirror, the apt step, the
 * user. Slow (~5 min) and network-bound, so its own section, run only when
 * named (`npm run bench -- base`). Then a second build (all cache hits).
 */
export async function benchBaseBuild(): Promise<string> {
  if (process.getuid?.() !== 0) return '### brig image build base\n\nskipped: RUN steps in image jails need root';
  const state = tempWorkspace('brig-bench-base-');
  try {
    const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const first = await timedBuild(state.dir);
    const second = await timedBuild(state.dir);
    const store = await openImageStore(`${state.dir}/images`);
    const manifest = await store.getImage('base');
    const layers = await Promise.all(manifest.layers.map((digest) => store.layer(digest)));
    const size = layers.reduce((sum, layer) => sum + (layer?.bytes ?? 0), 0);
    const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
    return [
      '### brig image build base, into a fresh state directory',
      '',
      '| what | measured |',
      '| --- | --- |',
      `| first build (Debian bootstrap, apt step, user) | ${first.toFixed(1)} s |`,
      `| second build (all cache hits) | ${second.toFixed(1)} s |`,
      `| size | ${mib(size)} in ${manifest.layers.length} layers (${layers.map((layer) => mib(layer?.bytes ?? 0)).join(', ')}) |`,
      '',
      `host load average at the start / end: ${loadBefore} / ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    ].join('\n');
  } finally {
    state.remove();
  }
}

/** Seconds of one `brig image build base --state DIR`, its progress shown on stderr. */
async function timedBuild(stateDir: string): Promise<number> {
  const began = performance.now();
  const child = spawn(BRIG, ['image', 'build', 'base', '--state', stateDir], { stdio: ['ignore', 2, 2] });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exit) => resolve(exit)));
  if (code !== 0) throw new Error(`brig image build base exited ${code}`);
  return (performance.now() - began) / 1000;
}
