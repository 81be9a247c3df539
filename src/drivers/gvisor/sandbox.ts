import { chownSync, closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { BrigError, type MemoryEvent } from '../../protocol/index.ts';
import { ENVD_INSIDE, envdPolicy, envdRuntime } from '../envd-runtime/index.ts';
import type { Liveness, SandboxHandle, SandboxSpec, SandboxUsage } from '../driver.ts';
import { planSandbox, type SandboxPlan } from '../plan/index.ts';
import { cgroupUsage, createCgroup, endSandboxCgroup, envdHealthy, prepareUpper, processLiveness, processStart, sandboxLiveness, type CgroupPlan, canStage } from '../host/index.ts';
import { renderOci, type OciRender } from './oci.ts';
import { writeBundle } from './bundle.ts';
import { launchRunsc } from './launch.ts';
import { requireRunsc, runscFlags, type Runsc } from './runsc.ts';
import { sandboxCgroup, watchOutOfMemory } from './limits.ts';
import { containerId } from './run.ts';
import { ENVD_SOCKET_DIR_INSIDE, ENVD_SOCKET_NAME, linkEndpoint, releaseCallerSocket, socketAppeared } from './envd-socket.ts';

/**
 * A daemon sandbox under gVisor: envd is the container's main process, and
 * `runsc run --detach` leaves the Sentry and the gofer running on their own,
 * so the sandbox outlives the daemon that booted it. Everything it holds on
 * the host is in the handle: its cgroups, and one directory in its state
 * directory (`gvisor/`: the bundle, runsc's state, envd's socket directory).
 */

const READY_ATTEMPTS = 20_000;
const READY_PAUSE_MS = 2;


export interface GvisorDetail {
  cgroup: Pick<CgroupPlan, 'version' | 'dirs' | 'killDir' | 'oomFile'>;
  /** The sandbox's directory on the host: bundle/, state/ (runsc's), envd/ (the socket's). */
  dir: string;
}

export async function bootGvisor(spec: SandboxSpec): Promise<SandboxHandle> {
  const { socket } = spec.envd;
  const dir = `${spec.stateDir}/gvisor`;
  const envdDir = `${dir}/envd`;
  let plan: SandboxPlan;
  let render: OciRender;
  let runsc: Runsc;
  let pending: SandboxHandle;
  let cgroup: CgroupPlan;
  try {
    if (!/^[a-z0-9-]{1,64}$/.test(spec.id)) throw new BrigError('BRIG_USAGE', `sandbox id '${spec.id}' must be 1-64 of [a-z0-9-]`, 'use a lower-case name or let brig pick one');
    runsc = requireRunsc();
    const runtime = envdRuntime({ envdBundle: spec.envd.bundle, root: ENVD_INSIDE });
    const policy = envdPolicy(spec.envd.accessToken)(spec.policy);
    const host = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: process.env.HOME ?? '/', cwd: spec.stateDir, env: process.env };
    const image = spec.image && { ...spec.image, dir: `${dir}/bundle/layers` };
    plan = planSandbox(policy, runtime.argv(`unix:${ENVD_SOCKET_DIR_INSIDE}/${ENVD_SOCKET_NAME}`), host, { tty: false, outlivesParent: true, id: spec.id, egress: spec.egress, runtime: runtime.files, image });
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(envdDir, { recursive: true, mode: 0o700 });
    // envd runs as the sandbox's user and makes its socket here.
    chownSync(envdDir, plan.identity.uid, plan.identity.gid);
    render = renderOci(plan, [{ source: envdDir, target: ENVD_SOCKET_DIR_INSIDE, writable: true, field: 'envd socket' }]);
    cgroup = sandboxCgroup(plan.limits.cgroup);
    pending = { id: spec.id, driver: 'gvisor', endpoint: { socketPath: socket.path }, pid: 0, pidStart: '', detail: { ...detailOf(cgroup, dir) }, stateDir: spec.stateDir, booting: true };
    spec.persist?.(pending);
    createCgroup(cgroup);
  } catch (error) {
    releaseCallerSocket(socket);
    throw error;
  }
  // envd cannot take the caller's socket (see envd-socket.ts): its endpoint becomes a link to envd's own.
  releaseCallerSocket(socket);
  const log = openSync(`${spec.stateDir}/envd.log`, 'a', 0o600);
  try {
    writeBundle(render, `${dir}/bundle`, canStage());
    mkdirSync(`${dir}/state`, { mode: 0o700 });
    if (plan.image) prepareUpper(plan.image, 0);
    const pid = await startDetached(runsc, plan, render, dir, cgroup, log);
    const pidStart = processStart(pid);
    if (pidStart === null) throw new BrigError('BRIG_GVISOR_SETUP', `sandbox ${spec.id}: its Sentry (pid ${pid}) ended at once`, 'envd.log in its state directory says why');
    spec.persist?.({ ...pending, pid, pidStart });
    await envdReady(envdDir, socket.path, () => processLiveness(pid, pidStart) === 'gone', () => readLog(spec.stateDir));
    const { booting: _booting, ...booted } = pending;
    return { ...booted, pid, pidStart };
  } catch (error) {
    await stopGvisor({ ...pending, detail: { ...detailOf(cgroup, dir) } });
    throw error;
  } finally {
    closeSync(log);
  }
}

function detailOf(cgroup: CgroupPlan, dir: string): GvisorDetail {
  return { cgroup: { version: cgroup.version, dirs: cgroup.dirs, killDir: cgroup.killDir, oomFile: cgroup.oomFile }, dir };
}

/** `runsc run --detach` inside the cgroups: it returns once the container runs, and names the Sentry's pid in a file. */
function startDetached(runsc: Runsc, plan: SandboxPlan, render: OciRender, dir: string, cgroup: CgroupPlan, log: number): Promise<number> {
  const flags = runscFlags(runsc, {
    stateDir: `${dir}/state`,
    network: plan.network.mode === 'host' ? 'host' : 'none',
    // create: envd listens on a host socket; open: brig-relay connects out to the egress socket.
    hostUds: plan.network.mode === 'allowlist' ? 'all' : 'create',
    seccomp: render.seccomp,
  });
  const argv = [...flags, `--log=${dir}/runsc.log`, 'run', '--detach', `--pid-file=${dir}/pid`, '--bundle', `${dir}/bundle`, containerId(plan.id)];
  return new Promise((resolve, reject) => {
    const child = launchRunsc({ runscArgv: [runsc.path, ...argv], render, dir, cgroup, stdio: ['ignore', log, log], dieWithParent: false });
    child.on('error', (error) => reject(new BrigError('BRIG_GVISOR_SETUP', `cannot start runsc: ${error.message}`, 'check that runsc is installed (apt-get install runsc)')));
    child.on('close', (code) => {
      const pid = Number(readText(`${dir}/pid`));
      if (code === 0 && pid > 0) return resolve(pid);
      const last = (readText(`${dir}/stage.err`) || readText(`${dir}/runsc.log`)).trim().split('\n').pop() ?? '';
      reject(new BrigError('BRIG_GVISOR_SETUP', `runsc could not start the sandbox (exit ${code}): ${last}`, "runsc's log is in the sandbox's state directory (gvisor/runsc.log)"));
    });
  });
}

/** Wait for envd's socket to appear, link the endpoint to it, then poll /health until envd answers. */
async function envdReady(envdDir: string, endpoint: string, died: () => boolean, log: () => string): Promise<void> {
  let linked = false;
  for (let attempt = 0; attempt < READY_ATTEMPTS; attempt++) {
    if (died()) break;
    if (!linked && socketAppeared(envdDir)) {
      linkEndpoint(envdDir, endpoint);
      linked = true;
    }
    if (linked && (await envdHealthy(endpoint))) return;
    await new Promise((resolve) => setTimeout(resolve, READY_PAUSE_MS));
  }
  throw new BrigError('BRIG_GVISOR_SETUP', `envd did not start in the sandbox: ${log().trim().split('\n').slice(-3).join(' | ')}`, 'the sandbox log (envd.log in its state directory) says why');
}

export function gvisorLiveness(handle: SandboxHandle): Liveness {
  // The Sentry, then the cgroups (the gofer, stubs being killed).
  return sandboxLiveness(handle, (handle.detail as unknown as GvisorDetail).cgroup.dirs);
}

/** Host tasks are the Sentry's and gofer's threads and the ptrace stubs, not the guest's processes (the Sentry keeps those to itself). */
export function gvisorUsage(handle: SandboxHandle): SandboxUsage {
  return cgroupUsage((handle.detail as unknown as GvisorDetail).cgroup);
}

export function gvisorWatchMemory(handle: SandboxHandle, onEvent: (event: MemoryEvent) => void): { close(): void } {
  const { cgroup } = handle.detail as unknown as GvisorDetail;
  // Whatever onOutOfMemory says: the host sees one Sentry, so at the limit the whole sandbox ends (limits.ts).
  return watchOutOfMemory(cgroup, onEvent);
}

export async function stopGvisor(handle: SandboxHandle): Promise<void> {
  const { cgroup, dir } = handle.detail as unknown as GvisorDetail;
  await endSandboxCgroup(cgroup, handle.id, 'BRIG_GVISOR_SETUP');
  // runsc mounts nothing in the host's namespace: its state, the bundle and envd's directory are plain files.
  rmSync(dir, { recursive: true, force: true });
  rmSync(handle.endpoint.socketPath, { force: true });
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function readLog(stateDir: string): string {
  return readText(`${stateDir}/envd.log`);
}
