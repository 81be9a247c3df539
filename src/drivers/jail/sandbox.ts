import { chownSync, closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { Readable } from 'node:stream';
import { BrigError, INSIDE_DIR, type MemoryEvent } from '../../protocol/index.ts';
import { compose, readWrite, setEnv, type OutOfMemoryAction, type PolicyChange } from '../../policy/index.ts';
import { envdRuntime } from '../envd-runtime/index.ts';
import type { Driver, SandboxHandle, SandboxSpec, SandboxUsage } from '../driver.ts';
import { FD, planJail } from './plan.ts';
import { cgroupPids, createCgroup, killCgroup, removeCgroup, type CgroupPlan } from './cgroup.ts';
import { startBwrap } from './launch.ts';
import { guardMemory } from './memory.ts';
import { processAlive, processStart } from './records.ts';

/**
 * The namespace tier as a Driver: a jail whose main process is envd, reached
 * through a unix socket in the sandbox's state directory. Unlike `brig run`,
 * the jail outlives the process that booted it, so a daemon can restart and
 * reattach; its handle holds everything stop() needs.
 */

const SOCKET_NAME = 'envd.sock';
/** Where envd's runtime appears inside a sandbox. */
const ENVD_INSIDE = `${INSIDE_DIR}/envd`;
/** A sandbox's PATH is its own, never the daemon's (which names the host's layout). */
const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The daemon's PATH stays out; a PATH the sandbox's policy sets still wins. */
const ownPath: PolicyChange = (policy) => {
  const { environment } = policy;
  return { ...policy, environment: { ...environment, forward: environment.forward.filter((name) => name !== 'PATH'), set: { PATH: SANDBOX_PATH, ...environment.set } } };
};
const READY_ATTEMPTS = 10_000;
// A failed connect to a socket not yet there costs microseconds: look often, answer sooner.
const READY_PAUSE_MS = 1;

interface JailDetail {
  cgroup: Pick<CgroupPlan, 'version' | 'dirs' | 'killDir'>;
  /** What to do at the memory limit, and whether an egress relay runs beside envd (absent in handles from before: kill-process). */
  memory?: { action: OutOfMemoryAction; relay: boolean };
}

export const jailDriver: Driver = {
  name: 'jail',

  async boot(spec: SandboxSpec): Promise<SandboxHandle> {
    if (!/^[a-z0-9-]{1,64}$/.test(spec.id)) throw new BrigError('BRIG_USAGE', `sandbox id '${spec.id}' must be 1-64 of [a-z0-9-]`, 'use a lower-case name or let brig pick one');
    const runDir = `${spec.stateDir}/run`;
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    const socketPath = `${runDir}/${SOCKET_NAME}`;
    // envd needs its runtime closure (node, its libraries, the bundle, node-pty, brig-spawn), bound
    // under INSIDE_DIR: nothing else of brig's install (its sources, tests, .git) is visible.
    const runtime = envdRuntime({ envdBundle: spec.envd.bundle, root: ENVD_INSIDE });
    const policy = compose(readWrite(runDir), setEnv('BRIG_ENVD_ACCESS_TOKEN', spec.envd.accessToken), ownPath)(spec.policy);
    const host = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: process.env.HOME ?? '/', cwd: spec.stateDir, env: process.env };
    const plan = planJail(policy, runtime.argv(`unix:${socketPath}`), host, { tty: false, outlivesParent: true, id: spec.id, egress: spec.egress, runtime: runtime.files });
    // envd, as the jail's host user, creates its socket here.
    if (plan.identity.dropPrivileges) chownSync(runDir, plan.identity.hostUid, plan.identity.hostGid);

    createCgroup(plan.cgroup);
    const log = openSync(`${spec.stateDir}/envd.log`, 'a', 0o600);
    let jailPid: number;
    try {
      const child = startBwrap(plan, ['ignore', log, log]);
      jailPid = await firstProcess(child.stdio[FD.status] as Readable, () => readLog(spec.stateDir));
      child.unref();
      await envdReady(socketPath, () => child.exitCode !== null || child.signalCode !== null, () => readLog(spec.stateDir));
    } catch (error) {
      await removeCgroup(plan.cgroup);
      rmSync(runDir, { recursive: true, force: true });
      throw error;
    } finally {
      closeSync(log);
    }
    const detail: JailDetail = {
      cgroup: { version: plan.cgroup.version, dirs: plan.cgroup.dirs, killDir: plan.cgroup.killDir },
      memory: { action: policy.resources.onOutOfMemory, relay: policy.network.mode === 'allowlist' },
    };
    return { id: spec.id, driver: 'jail', endpoint: { socketPath }, pid: jailPid, pidStart: processStart(jailPid) ?? '', detail: { ...detail }, stateDir: spec.stateDir };
  },

  alive(handle: SandboxHandle): boolean {
    return processAlive(handle.pid, handle.pidStart);
  },

  usage(handle: SandboxHandle): SandboxUsage {
    const { cgroup } = handle.detail as unknown as JailDetail;
    const read = (file: string): number => {
      for (const dir of cgroup.dirs) {
        try {
          return Number(readFileSync(`${dir}/${file}`, 'utf8').trim());
        } catch {
          // Not in this hierarchy.
        }
      }
      return 0;
    };
    const memoryBytes = cgroup.version === 'v1' ? read('memory.usage_in_bytes') : read('memory.current');
    const cpuUsec = cgroup.version === 'v1' ? Math.round(read('cpuacct.usage') / 1000) : cpuStatUsec(cgroup.dirs);
    return { memoryBytes, pids: read('pids.current'), cpuUsec };
  },

  watchMemory(handle: SandboxHandle, onEvent: (event: MemoryEvent) => void) {
    const { cgroup, memory } = handle.detail as unknown as JailDetail;
    return guardMemory({
      cgroup,
      jailPid: handle.pid,
      action: memory?.action ?? 'kill-process',
      // envd is the jail's main process: the one way in, never the one killed.
      protectMain: true,
      relay: memory?.relay ?? false,
      onEvent,
      // The daemon's teardown follows (it sees the kill-sandbox event): this only ends the pause at once.
      endJail: () => killCgroup(cgroup),
    });
  },

  async stop(handle: SandboxHandle): Promise<void> {
    const { cgroup } = handle.detail as unknown as JailDetail;
    // pid 1 of the jail's pid namespace: when it dies, the kernel kills every process in it.
    if (jailDriver.alive(handle)) {
      try {
        process.kill(handle.pid, 'SIGKILL');
      } catch {
        // Gone between the check and the kill.
      }
    }
    killCgroup(cgroup);
    if (!(await removeCgroup(cgroup))) {
      const left = cgroup.dirs.flatMap((dir) => cgroupPids(dir));
      throw new BrigError('BRIG_JAIL_SETUP', `sandbox ${handle.id}: processes ${left.join(', ')} would not die`, 'they may be stuck in the kernel (D state); retry the stop');
    }
    rmSync(`${handle.stateDir}/run`, { recursive: true, force: true });
  },
};

/** cgroup v2's cpu.stat: `usage_usec N`. */
function cpuStatUsec(dirs: string[]): number {
  for (const dir of dirs) {
    try {
      const match = /^usage_usec (\d+)$/m.exec(readFileSync(`${dir}/cpu.stat`, 'utf8'));
      if (match) return Number(match[1]);
    } catch {
      // Not here.
    }
  }
  return 0;
}

/** bubblewrap's first status document names the jail's first process. */
function firstProcess(status: Readable, log: () => string): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (!match) return;
      status.off('data', onData);
      // Keep draining: bwrap writes the exit code here when the jail ends.
      status.resume();
      (status as Readable & { unref?: () => void }).unref?.();
      resolve(Number(match[1]));
    };
    status.on('data', onData);
    status.once('end', () => reject(new BrigError('BRIG_JAIL_SETUP', `bubblewrap could not build the sandbox: ${log().trim().split('\n').pop() ?? ''}`, 'brig run --dry-run shows the same plan')));
  });
}

/** Poll envd's /health on its socket until it answers, the jail dies, or attempts run out. */
async function envdReady(socketPath: string, died: () => boolean, log: () => string): Promise<void> {
  for (let attempt = 0; attempt < READY_ATTEMPTS; attempt++) {
    if (died()) break;
    if (await healthy(socketPath)) return;
    await new Promise((resolve) => setTimeout(resolve, READY_PAUSE_MS));
  }
  throw new BrigError('BRIG_JAIL_SETUP', `envd did not start in the sandbox: ${log().trim().split('\n').slice(-3).join(' | ')}`, 'the sandbox log (envd.log in its state directory) says why');
}

function healthy(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health', method: 'GET' }, (response) => {
      response.resume();
      resolve(response.statusCode === 204);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

function readLog(stateDir: string): string {
  try {
    return readFileSync(`${stateDir}/envd.log`, 'utf8');
  } catch {
    return '';
  }
}
