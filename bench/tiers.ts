import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox, type SandboxOpts } from 'e2b';
import { measure, percentile, table, type Peer } from './measure.ts';
import { tempWorkspace } from '../test/helpers/brig.ts';
import { serveDaemon } from '../test/helpers/daemon.ts';
import { coldCreates, sandboxPssMiB } from './daemon.ts';
import { tierStatuses } from '../src/drivers/index.ts';
import { vmArtefacts } from '../src/drivers/vm/build.ts';
import { cpioArchive } from '../src/drivers/vm/cpio.ts';
import { findQemu, kernelCommandLine } from '../src/drivers/vm/qemu.ts';
import { chooseAccel } from '../src/drivers/vm/accel.ts';
import { defaultStateDir } from '../src/protocol/index.ts';
import brigSpawn from 'brig-spawn';

const root = fileURLToPath(new URL('..', import.meta.url));
const BRIG = join(root, 'bin/brig');

/**
 * Issue 12's benchmark, per tier, in one run: `true` start-up (against bare
 * bwrap, `runsc do true`, and — with BENCH_BASELINE=REV — the brig of that
 * commit, built in a worktree of its own: the jail must stay within 2% of
 * it), create → first exec and an exec's round trip through the e2b SDK,
 * and the memory of an idle sandbox. A tier that cannot run here is listed
 * with the reason, not measured.
 */
export async function benchTiers(runs: number, creates: number): Promise<string> {
  const statuses = tierStatuses();
  const usable = statuses.filter((entry) => entry.status.available).map((entry) => entry.tier);
  const sections = [
    '### tiers on this host',
    '',
    ...statuses.map(({ tier, status }) => `- ${tier}: ${status.available ? 'available' : 'unavailable'} — ${status.detail}`),
    '',
    startup(usable, runs),
  ];
  const vmRuns = Number(process.env.BENCH_VM_RUNS ?? 10);
  const vm = usable.includes('vm') ? await vmStartup(vmRuns) : null;
  if (vm) sections.push(vm.section);
  for (const tier of usable) sections.push(await daemonRows(tier, tier === 'vm' ? vmRuns : creates, tier === 'vm' ? vm?.bareBootMs : undefined));
  return sections.join('\n');
}

/**
 * The vm tier's `true`, against QEMU booting the same kernel to an init that
 * ends at once (brig-init without arguments: its usage, exit 125, a panic,
 * and panic=-1 ends QEMU) — boot to init and back, nothing else.
 */
async function vmStartup(runs: number): Promise<{ section: string; bareBootMs: number }> {
  const workspace = mkdtempSync(join(tmpdir(), 'brig-bench-vm-'));
  try {
    const artefacts = await vmArtefacts(defaultStateDir(), brigSpawn.vmInitPath, () => {});
    const initramfs = join(workspace, 'bare.cpio');
    writeFileSync(initramfs, cpioArchive([{ kind: 'file', path: 'init', mode: 0o755, data: readFileSync(brigSpawn.initPath) }]));
    const accel = await chooseAccel(defaultStateDir(), findQemu() ?? 'qemu-system-x86_64', artefacts.kernel.vmlinuz, (line) => console.error(line));
    const bare = ['qemu-system-x86_64', '-M', 'microvm,x-option-roms=off,rtc=on', '-accel', accel, '-cpu', accel === 'kvm' ? 'host' : 'max', '-m', '512M', '-smp', '1', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-kernel', artefacts.kernel.vmlinuz, '-initrd', initramfs, '-append', kernelCommandLine(accel), '-serial', 'null'];
    const peers: Peer[] = [
      { name: 'qemu (bare: the same kernel to its init)', argv: bare, cwd: workspace },
      { name: 'brig run --tier vm', argv: [BRIG, 'run', '--tier', 'vm', '--memory', '512m', '--cpus', '1', '--', 'true'], cwd: workspace },
    ];
    const stats = measure(peers.map((peer) => ({ ...peer, env: process.env })), runs);
    const ratio = (stats[1]?.medianMs ?? NaN) / (stats[0]?.medianMs ?? NaN);
    const section = `### the vm tier's \`true\` (${accel === 'kvm' ? 'KVM' : 'TCG: every guest instruction emulated'}; 512 MiB, 1 vCPU for the bare boot)\n\n${table(stats, ['qemu (bare: the same kernel to its init)'])}\n\nvm/bare boot = ${ratio.toFixed(2)} (target ≤ 1.3): ${ratio <= 1.3 ? 'met' : 'NOT met'}\n`;
    return { section, bareBootMs: stats[0]?.medianMs ?? NaN };
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
}

const THROUGHPUT_MIB = 32;

/** A file of THROUGHPUT_MIB written into the sandbox and read back through envd (over the VM's channel on that tier): MiB/s each way. */
async function fileThroughput(sandbox: Sandbox): Promise<{ write: number; read: number }> {
  const data = new Uint8Array(THROUGHPUT_MIB << 20).fill(7);
  let began = process.hrtime.bigint();
  await sandbox.files.write('/tmp/brig-bench-throughput', new Blob([data]));
  const write = THROUGHPUT_MIB / (Number(process.hrtime.bigint() - began) / 1e9);
  began = process.hrtime.bigint();
  const back = await sandbox.files.read('/tmp/brig-bench-throughput', { format: 'bytes' });
  const read = THROUGHPUT_MIB / (Number(process.hrtime.bigint() - began) / 1e9);
  if (back.length !== data.length) throw new Error(`read back ${back.length} bytes of ${data.length}`);
  await sandbox.files.remove('/tmp/brig-bench-throughput');
  return { write, read };
}

function startup(usable: string[], runs: number): string {
  const workspace = mkdtempSync(join(tmpdir(), 'brig-bench-ws-'));
  if (process.getuid?.() === 0) chownSync(workspace, 1000, 1000);
  const baseline = process.env.BENCH_BASELINE ? buildBaseline(process.env.BENCH_BASELINE) : null;
  // As on most machines: NODE_EXTRA_CA_CERTS (set here for a TLS-inspecting proxy) costs every Node start ~90 ms of certificate parsing.
  const { NODE_EXTRA_CA_CERTS: _certs, ...env } = process.env;
  try {
    const plain: Peer[] = [
      { name: 'bwrap (bare)', argv: ['bwrap', '--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev', 'true'], cwd: workspace },
      { name: 'node -e 0', argv: ['node', '-e', '0'], cwd: workspace },
      { name: 'brig run (jail)', argv: [BRIG, 'run', '--', 'true'], cwd: workspace },
      ...(baseline ? [{ name: `brig run (jail, ${baseline.rev})`, argv: [baseline.brig, 'run', '--', 'true'], cwd: workspace }] : []),
      ...(usable.includes('gvisor')
        ? [
            { name: 'runsc do true', argv: ['runsc', '--network=none', 'do', 'true'], cwd: workspace },
            // runsc's floor for a bundle: the host's / read-only, /proc and /dev, `true` (what brig's driver adds is over this).
            { name: 'runsc run (bare bundle)', argv: ['runsc', `--root=${workspace}/runsc-state`, '--ignore-cgroups', '--network=none', '--overlay2=none', 'run', '--bundle', bareBundle(workspace), 'bench'], cwd: workspace },
            { name: 'brig run --tier gvisor', argv: [BRIG, 'run', '--tier', 'gvisor', '--', 'true'], cwd: workspace },
          ]
        : []),
    ];
    const peers = plain.map((peer) => ({ ...peer, env }));
    const stats = measure(peers, runs);
    const median = (name: string): number | undefined => stats.find((entry) => entry.name === name)?.medianMs;
    const verdicts: string[] = [];
    const jail = median('brig run (jail)');
    const old = baseline ? median(`brig run (jail, ${baseline.rev})`) : undefined;
    if (jail !== undefined && old !== undefined) verdicts.push(`jail new/old = ${(jail / old).toFixed(3)} (target ≤ 1.02): ${jail / old <= 1.02 ? 'met' : 'NOT met'}`);
    const gvisor = median('brig run --tier gvisor');
    const runsc = median('runsc do true');
    if (gvisor !== undefined && runsc !== undefined) verdicts.push(`gvisor/runsc do = ${(gvisor / runsc).toFixed(2)} (target ≤ 1.2): ${gvisor / runsc <= 1.2 ? 'met' : 'NOT met'}`);
    const floor = median('runsc run (bare bundle)');
    const node = median('node -e 0');
    if (gvisor !== undefined && floor !== undefined && node !== undefined) verdicts.push(`over runsc's bare-bundle floor: brig ${(gvisor - floor).toFixed(0)} ms, of which Node's own start ${node.toFixed(0)} ms`);
    return `### \`true\` start-up per tier (without NODE_EXTRA_CA_CERTS)\n\n${table(stats, ['bwrap (bare)', ...(runsc ? ['runsc do true', 'runsc run (bare bundle)'] : []), ...(old ? [`brig run (jail, ${baseline?.rev})`] : [])])}\n\n${verdicts.join('\n\n')}\n`;
  } finally {
    rmSync(workspace, { recursive: true, force: true });
    baseline?.remove();
  }
}

/** The smallest bundle runsc runs `true` from: the host's root read-only, its own /proc and /dev. */
function bareBundle(workspace: string): string {
  const dir = join(workspace, 'bare-bundle');
  mkdirSync(dir, { recursive: true });
  const config = {
    ociVersion: '1.0.2',
    process: { user: { uid: 0, gid: 0 }, args: ['/usr/bin/true'], env: ['PATH=/usr/bin:/bin'], cwd: '/', noNewPrivileges: true },
    root: { path: '/', readonly: true },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/dev', type: 'tmpfs', source: 'tmpfs' }],
    linux: { namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })) },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/** brig as it was at `rev`: its sources in a worktree, this checkout's node_modules and native build, its own bundles. */
function buildBaseline(rev: string): { rev: string; brig: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'brig-baseline-'));
  rmSync(dir, { recursive: true });
  execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', dir, rev], { stdio: 'ignore' });
  const remove = (): void => {
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', dir], { stdio: 'ignore' });
  };
  try {
    execFileSync('cp', ['-al', join(root, 'node_modules'), dir]);
    execFileSync('cp', ['-a', join(root, 'native/spawn/build'), join(dir, 'native/spawn/')]);
    execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: dir, stdio: 'ignore' });
    const short = execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD']).toString().trim();
    return { rev: short, brig: join(dir, 'bin/brig'), remove };
  } catch (error) {
    remove();
    throw error;
  }
}

/**
 * One tier's daemon sandboxes through `brig serve --tier TIER` and the e2b
 * SDK: cold create (to envd ready, and on to the first commands.run("true")),
 * one exec's round trip, file throughput, an idle sandbox's memory.
 * `bareBootMs` (the vm tier): bare QEMU's boot in the same run, against
 * which boot to envd ready is the issue's target.
 */
async function daemonRows(tier: string, creates: number, bareBootMs?: number): Promise<string> {
  const state = tempWorkspace(`brig-bench-${tier}-`);
  const daemon = await serveDaemon(state.dir, { apiKey: 'bench', pool: 0, args: ['--tier', tier] });
  const opts = { apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
  try {
    for (let warm = 0; warm < 2; warm++) await (await Sandbox.create(opts)).kill();
    const { ready, firstExec: cold } = await coldCreates(opts, creates);
    const idle: Sandbox[] = [];
    for (let index = 0; index < 5; index++) idle.push(await Sandbox.create(opts));
    const trips: number[] = [];
    const first = idle[0] as Sandbox;
    for (let index = 0; index < 5; index++) await first.commands.run('true');
    for (let index = 0; index < 50; index++) {
      const began = process.hrtime.bigint();
      await first.commands.run('true');
      trips.push(Number(process.hrtime.bigint() - began) / 1e6);
    }
    trips.sort((a, b) => a - b);
    const throughput = await fileThroughput(first);
    const pss = idle.map((sandbox) => sandboxPssMiB(state.dir, sandbox.sandboxId)).sort((a, b) => a - b);
    for (const sandbox of idle) await sandbox.kill();
    return [
      `### brig serve --tier ${tier} (the e2b SDK)`,
      '',
      '| what | measured |',
      '| --- | --- |',
      `| cold create, until envd answers (boot to envd ready) | p50 ${percentile(ready, 0.5).toFixed(1)} ms, p95 ${percentile(ready, 0.95).toFixed(1)} ms (${creates} runs) |`,
      `| cold create → first commands.run("true") | p50 ${percentile(cold, 0.5).toFixed(1)} ms, p95 ${percentile(cold, 0.95).toFixed(1)} ms (${creates} runs) |`,
      `| commands.run("true") round trip | p50 ${percentile(trips, 0.5).toFixed(1)} ms, p95 ${percentile(trips, 0.95).toFixed(1)} ms (50 runs) |`,
      `| files.write then files.read of ${THROUGHPUT_MIB} MiB | ${throughput.write.toFixed(0)} MiB/s in, ${throughput.read.toFixed(0)} MiB/s out |`,
      `| memory of an idle sandbox (PSS of its host processes) | median ${percentile(pss, 0.5).toFixed(1)} MiB (5 sandboxes) |`,
      ...(bareBootMs === undefined ? [] : ['', `boot to envd ready / bare QEMU boot (${bareBootMs.toFixed(0)} ms, above) = ${(percentile(ready, 0.5) / bareBootMs).toFixed(2)} (target ≤ 1.3): ${percentile(ready, 0.5) / bareBootMs <= 1.3 ? 'met' : 'NOT met'}; create → first exec / bare boot = ${(percentile(cold, 0.5) / bareBootMs).toFixed(2)}`]),
      '',
    ].join('\n');
  } finally {
    await daemon.stop();
    state.remove();
  }
}
