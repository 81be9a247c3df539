import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import brigSpawn from 'brig-spawn';
import { BrigError, defaultStateDir, EGRESS_SOCKET_NAME, type MemoryEvent } from '../../protocol/index.ts';
import { ENVD_INSIDE, envdPolicy, envdRuntime } from '../envd-runtime/index.ts';
import type { Liveness, SandboxHandle, SandboxSpec, SandboxUsage } from '../driver.ts';
import { planSandbox, type SandboxPlan } from '../plan/index.ts';
import { cgroupUsage, createCgroup, endSandboxCgroup, envdHealthy, processLiveness, processStart, sandboxLiveness, spawnInside, watchWholeSandboxOom, type CgroupPlan } from '../host/index.ts';
import { encodeRecord } from './channel.ts';
import { guestConfig, SERVICE_FD } from './guest.ts';
import { guestSize, vmCgroup } from './limits.ts';
import { qemuArgv } from './qemu.ts';
import { requireVm } from './status.ts';
import { vmArtefacts } from './build.ts';
import { chooseAccel } from './accel.ts';
import { startFileServer } from './file-server.ts';
import { imageViewMessage } from './image-view.ts';
import { hasNetworkDevice } from './network.ts';
import { CHANNEL_CLOSED } from './gate.ts';
import { silenceAllowedMs } from './heartbeat.ts';

/**
 * A daemon sandbox in a microVM: envd runs in the guest (in the second
 * layer, as the sandbox's user) and serves the host over one port,
 * brig.service, multiplexed. Three host processes in the sandbox's cgroups,
 * none the daemon's child for long: QEMU, virtiofsd (in the sandbox's view)
 * and brig-vm-gate (gate.ts: the config on brig.ctl, the endpoint onto
 * brig.service). So the sandbox outlives a daemon restart, as a jail does.
 * The handle names the cgroups and one directory (`vm/` in the sandbox's
 * state directory: the sockets, the console's log).
 */

const READY_PAUSE_MS = 20;
/** The gate's ids: it holds nothing of its own on the host. */
const NOBODY = 65534;

export interface VmDetail {
  cgroup: Pick<CgroupPlan, 'version' | 'dirs' | 'killDir' | 'oomFile'>;
  dir: string;
  /** The gate (the endpoint, and the judge of the guest's heartbeat): without it the sandbox is unreachable. Absent in handles from before it was kept. */
  gate?: { pid: number; pidStart: string };
}

/** The host's own messages about the VM (QEMU's errors, the gate's verdicts), apart from envd.log, which the guest writes. */
const HOST_LOG = 'host.log';

export async function bootVm(spec: SandboxSpec): Promise<SandboxHandle> {
  const { socket } = spec.envd;
  const dir = `${spec.stateDir}/vm`;
  let pending: SandboxHandle;
  let cgroup: CgroupPlan;
  let launch: () => Promise<{ qemu: number; gate: number }>;
  try {
    if (!/^[a-z0-9-]{1,64}$/.test(spec.id)) throw new BrigError('BRIG_USAGE', `sandbox id '${spec.id}' must be 1-64 of [a-z0-9-]`, 'use a lower-case name or let brig pick one');
    const qemu = requireVm();
    // Checked before anything exists: a bad BRIG_VM_HUNG_AFTER leaves no cgroup behind.
    const silenceMs = silenceAllowedMs();
    const runtime = envdRuntime({ envdBundle: spec.envd.bundle, root: ENVD_INSIDE });
    const policy = envdPolicy(spec.envd.accessToken)(spec.policy);
    const host = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: process.env.HOME ?? '/', cwd: spec.stateDir, env: process.env };
    // An image's overlay is mounted under vm/image (image-view.ts): the layers' mount points are the VM's own.
    const image = spec.image && { ...spec.image, dir: `${dir}/image` };
    const plan = planSandbox(policy, runtime.argv(`mux:${SERVICE_FD}`), host, { tty: false, outlivesParent: true, id: spec.id, egress: spec.egress, runtime: runtime.files, image });
    const config = guestConfig(plan, 'service');
    const egress = gateEgress(plan);
    const size = guestSize(plan, cpus().length);
    const artefacts = await vmArtefacts(defaultStateDir(), brigSpawn.vmInitPath, () => {});
    const accel = await chooseAccel(defaultStateDir(), qemu, artefacts.kernel.vmlinuz, (line) => process.stderr.write(`brig: ${line}\n`));
    cgroup = vmCgroup(plan.limits.cgroup, size.memoryMiB);
    const envdLog = `${spec.stateDir}/envd.log`;
    const argv = qemuArgv({
      qemu, accel, vmlinuz: artefacts.kernel.vmlinuz, initramfs: artefacts.initramfs, memoryMiB: size.memoryMiB, cpus: size.cpus, fsSocket: `${dir}/fs.sock`,
      ports: [
        { name: 'brig.ctl', end: { socket: `${dir}/ctl.sock` } },
        { name: 'brig.stdin', end: 'null' },
        // envd's own output: appended by QEMU, read by nobody, so a slow reader never holds the guest up.
        { name: 'brig.stdout', end: { appendTo: envdLog } },
        { name: 'brig.stderr', end: { appendTo: envdLog } },
        { name: 'brig.service', end: { socket: `${dir}/service.sock` } },
        ...(plan.network.bridge ? [{ name: 'brig.egress' as const, end: { socket: `${dir}/egress.sock` } }] : []),
      ],
      console: { appendTo: `${dir}/console.log` },
      network: hasNetworkDevice(plan),
    });
    pending = { id: spec.id, driver: 'vm', endpoint: { socketPath: socket.path }, pid: 0, pidStart: '', detail: { ...detailOf(cgroup, dir) }, stateDir: spec.stateDir, booting: true };
    spec.persist?.(pending);
    createCgroup(cgroup);
    const cgroupNow = cgroup;
    launch = () => start(plan, dir, cgroupNow, argv, Buffer.concat(config.map(encodeRecord)), socket.fd, envdLog, egress, silenceMs);
  } catch (error) {
    closeSync(socket.fd);
    throw error;
  }
  try {
    const pids = await launch();
    const pid = pids.qemu;
    const pidStart = processStart(pid);
    const gateStart = processStart(pids.gate);
    if (pidStart === null || gateStart === null) throw new BrigError('BRIG_VM_SETUP', `sandbox ${spec.id}: QEMU (pid ${pid}) or its gate (pid ${pids.gate}) ended at once`, `vm/${HOST_LOG} in its state directory says why`);
    pending = { ...pending, pid, pidStart, detail: { ...pending.detail, gate: { pid: pids.gate, pidStart: gateStart } } };
    spec.persist?.(pending);
    await envdReady(socket.path, () => vmLiveness(pending) === 'gone', () => `${readText(`${dir}/${HOST_LOG}`)}\n${readText(`${spec.stateDir}/envd.log`)}\n${readText(`${dir}/console.log`)}\n${imageViewMessage(dir)}`);
    const { booting: _booting, ...ready } = pending;
    return ready;
  } catch (error) {
    await stopVm({ ...pending, detail: { ...detailOf(cgroup, dir) } });
    throw error;
  }
}

/**
 * virtiofsd, the gate and QEMU, in the cgroups, each detached; resolves to
 * QEMU's pid and the gate's. The caller's endpoint fd is closed here,
 * started or not. virtiofsd's messages go to envd.log; QEMU's and the
 * gate's to vm/host.log, which nothing the guest says reaches: what it holds
 * is the sandbox's end reason (vmWhyGone).
 */
async function start(plan: Parameters<typeof startFileServer>[0], dir: string, cgroup: CgroupPlan, argv: string[], config: Buffer, endpointFd: number, envdLog: string, egress: GateEgress | null, silenceMs: number): Promise<{ qemu: number; gate: number }> {
  const fds: number[] = [endpointFd];
  mkdirSync(dirname(envdLog), { recursive: true, mode: 0o700 });
  const log = openSync(envdLog, 'a', 0o600);
  fds.push(log);
  try {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    const hostLog = openSync(`${dir}/${HOST_LOG}`, 'a', 0o600);
    fds.push(hostLog);
    // Handed to the gate as an open file, never a name: it carries envd's access token.
    writeFileSync(`${dir}/config`, config, { mode: 0o600 });
    const configFd = openSync(`${dir}/config`, 'r');
    fds.push(configFd);
    rmSync(`${dir}/config`);
    const ctl = brigSpawn.listenUnix(`${dir}/ctl.sock`, 1);
    fds.push(ctl);
    const service = brigSpawn.listenUnix(`${dir}/service.sock`, 1);
    fds.push(service);
    const egressPort = egress ? brigSpawn.listenUnix(`${dir}/egress.sock`, 1) : null;
    if (egressPort !== null) fds.push(egressPort);
    const children: ChildProcess[] = [startFileServer(plan, dir, cgroup, log)];
    // As nobody: what it needs (the listening sockets, the config, the log) it is handed open, and its
    // program on stdin (`node -`), so brig's install need not be readable by nobody (/root is not).
    const gateArgs = ['-', String(silenceMs), ...(egress ? [egress.proxySocket] : [])];
    const gateFds = egressPort === null ? [] : [egressPort];
    const ids = egress?.owner ?? { uid: NOBODY, gid: NOBODY };
    const gate = spawnInside(cgroup, () => spawn(process.execPath, gateArgs, { stdio: ['pipe', hostLog, hostLog, endpointFd, ctl, service, configFd, ...gateFds], detached: true, cwd: '/', env: { PATH: '/usr/bin:/bin' }, uid: ids.uid, gid: ids.gid }));
    gate.stdin?.on('error', () => {});
    gate.stdin?.end(readFileSync(gateProgram()));
    children.push(gate);
    const [qemuFile, ...qemuArgs] = argv;
    const qemu = spawnInside(cgroup, () => spawn(qemuFile as string, qemuArgs, { stdio: ['ignore', hostLog, hostLog], detached: true, cwd: '/', env: { PATH: '/usr/bin:/bin' } }));
    children.push(qemu);
    const failed = children.map((child) => new Promise<never>((_, reject) => child.once('error', (error) => reject(new BrigError('BRIG_VM_SETUP', `cannot start the sandbox's VM: ${error.message}`, '`brig tiers` says what the vm tier needs')))));
    const spawned = Promise.all([gate, qemu].map((child) => new Promise<number>((resolve) => child.once('spawn', () => resolve(child.pid as number)))));
    const [gatePid, qemuPid] = await Promise.race([spawned, ...failed]);
    for (const child of children) child.unref();
    return { qemu: qemuPid as number, gate: gatePid as number };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

interface GateEgress {
  proxySocket: string;
  owner: { uid: number; gid: number };
}

/**
 * In allowlist mode the gate connects to the sandbox's proxy socket, whose
 * directory only the sandbox's host owner may enter (egress/sandbox.ts): the
 * gate runs as that owner. Never as root: a directory of root's means the
 * daemon had no owner to give this sandbox, and the vm tier refuses.
 */
function gateEgress(plan: SandboxPlan): GateEgress | null {
  const bridge = plan.network.bridge;
  if (!bridge) return null;
  const stats = lstatSync(bridge.socketDir);
  if (!stats.isDirectory() || stats.uid === 0) {
    throw new BrigError('BRIG_VM_UNSUPPORTED', `the vm tier reaches an allowlist sandbox's proxy as the sandbox's host owner, and ${bridge.socketDir} has none`, 'run the daemon as root with free host ids (it gives each sandbox an owner), or use the jail tier');
  }
  return { proxySocket: `${bridge.socketDir}/${EGRESS_SOCKET_NAME}`, owner: { uid: stats.uid, gid: stats.gid } };
}

/** dist/vm-gate.cjs: beside this bundle when bundled; from the sources (tests), in dist/ (npm run build). */
function gateProgram(): string {
  const bundled = typeof __filename === 'string' && __filename.endsWith('.cjs');
  return bundled ? `${__dirname}/vm-gate.cjs` : createRequire(import.meta.url).resolve('../../../dist/vm-gate.cjs');
}

function detailOf(cgroup: CgroupPlan, dir: string): VmDetail {
  return { cgroup: { version: cgroup.version, dirs: cgroup.dirs, killDir: cgroup.killDir, oomFile: cgroup.oomFile }, dir };
}

/** envd answers once the guest has booted and started it: a request waits in the gate until then, so each attempt is one boot's wait at most. */
async function envdReady(endpoint: string, died: () => boolean, log: () => string): Promise<void> {
  while (!died()) {
    if (await envdHealthy(endpoint)) return;
    await new Promise((resolve) => setTimeout(resolve, READY_PAUSE_MS));
  }
  throw new BrigError('BRIG_VM_SETUP', `envd did not start in the VM: ${log().trim().split('\n').slice(-3).join(' | ')}`, "envd.log and vm/console.log in the sandbox's state directory say why");
}

export function vmLiveness(handle: SandboxHandle): Liveness {
  const { cgroup, gate } = handle.detail as unknown as VmDetail;
  // QEMU, then the cgroups (virtiofsd and the gate end with it); and the gate, which ends a guest that hung.
  const vm = sandboxLiveness(handle, cgroup.dirs);
  return vm === 'alive' && gate ? processLiveness(gate.pid, gate.pidStart) : vm;
}

/**
 * Why a daemon sandbox's VM ended, from what only the host wrote: the
 * gate's verdict (the guest hung: no heartbeat), QEMU's last error, or a
 * panic on the guest kernel's console (the console is the guest's, but
 * nothing in the second layer can write to it).
 */
export function vmWhyGone(handle: SandboxHandle): string | null {
  const { dir } = handle.detail as unknown as VmDetail;
  const panic = /Kernel panic - not syncing: ([^\n]*)/.exec(readText(`${dir}/console.log`))?.[1];
  if (panic) return `the guest kernel panicked: ${printable(panic)}`;
  const host = readText(`${dir}/${HOST_LOG}`);
  const verdict = [...host.matchAll(/brig-vm-gate: (.*); ending$/gm)].at(-1)?.[1];
  if (verdict && verdict !== CHANNEL_CLOSED) return printable(verdict);
  const qemu = [...host.matchAll(/^qemu-system-x86_64: (.*)$/gm)].at(-1)?.[1];
  if (qemu) return `QEMU ended: ${printable(qemu)}`;
  return verdict ? 'QEMU ended without a word (killed from outside the daemon, or it crashed)' : null;
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').trim().slice(0, 300);
}

/** Host memory (the guest's RAM as QEMU touched it, QEMU's, virtiofsd's, the gate's) and host tasks (their threads), not the guest's processes. */
export function vmUsage(handle: SandboxHandle): SandboxUsage {
  return cgroupUsage((handle.detail as unknown as VmDetail).cgroup);
}

/** At the host limit the whole VM ends (the host sees one QEMU). Inside, the guest's own OOM killer or its panic (guest.ts) acts first. */
export function vmWatchMemory(handle: SandboxHandle, onEvent: (event: MemoryEvent) => void): { close(): void } {
  const { cgroup } = handle.detail as unknown as VmDetail;
  return watchWholeSandboxOom(cgroup, 'the VM used all of its host memory (the host sees one QEMU: the whole VM ends)', onEvent);
}

export async function stopVm(handle: SandboxHandle): Promise<void> {
  const { cgroup, dir } = handle.detail as unknown as VmDetail;
  await endSandboxCgroup(cgroup, handle.id, 'BRIG_VM_SETUP');
  rmSync(dir, { recursive: true, force: true });
  rmSync(handle.endpoint.socketPath, { force: true });
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-8000);
  } catch {
    return '';
  }
}
