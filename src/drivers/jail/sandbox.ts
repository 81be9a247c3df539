import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { Readable } from 'node:stream';
import { BrigError, INSIDE_DIR, outOfDescriptors, type MemoryEvent } from '../../protocol/index.ts';
import { compose, setEnv, type OutOfMemoryAction, type PolicyChange } from '../../policy/index.ts';
import { envdRuntime } from '../envd-runtime/index.ts';
import type { Driver, Liveness, SandboxHandle, SandboxSpec, SandboxUsage } from '../driver.ts';
import { FD, planJail, type JailPlan } from './plan.ts';
import { cgroupPids, createCgroup, killCgroup, removeCgroup, type CgroupPlan } from './cgroup.ts';
import { startBwrap } from './launch.ts';
import { guardMemory } from './memory.ts';
import { processLiveness, processStart } from './records.ts';

/**
 * The namespace tier as a Driver: a jail whose main process is envd, reached
 * through the unix socket its caller bound (envd gets the listening fd, never
 * a path it could be made to listen on elsewhere). Unlike `brig run`, the
 * jail outlives the process that booted it, so a daemon can restart and
 * reattach; its handle holds everything stop() needs.
 */

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
    const { socket } = spec.envd;
    let plan: JailPlan;
    let pending: SandboxHandle;
    try {
      if (!/^[a-z0-9-]{1,64}$/.test(spec.id)) throw new BrigError('BRIG_USAGE', `sandbox id '${spec.id}' must be 1-64 of [a-z0-9-]`, 'use a lower-case name or let brig pick one');
      // envd needs its runtime closure (node, its libraries, the bundle, node-pty, brig-spawn), bound
      // under INSIDE_DIR: nothing else of brig's install (its sources, tests, .git) is visible.
      // Its socket comes on a fd.
      const runtime = envdRuntime({ envdBundle: spec.envd.bundle, root: ENVD_INSIDE });
      const policy = compose(setEnv('BRIG_ENVD_ACCESS_TOKEN', spec.envd.accessToken), ownPath)(spec.policy);
      const host = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: process.env.HOME ?? '/', cwd: spec.stateDir, env: process.env };
      plan = planJail(policy, runtime.argv(`fd:${FD.envdSocket}`), host, { tty: false, outlivesParent: true, id: spec.id, egress: spec.egress, runtime: runtime.files });
      // Written down before anything exists: a daemon killed from here on leaves what stop() needs.
      pending = { id: spec.id, driver: 'jail', endpoint: { socketPath: socket.path }, pid: 0, pidStart: '', detail: { ...jailDetail(plan) }, stateDir: spec.stateDir, booting: true };
      spec.persist?.(pending);
      createCgroup(plan.cgroup);
    } catch (error) {
      closeSync(socket.fd);
      throw error;
    }
    const log = openSync(`${spec.stateDir}/envd.log`, 'a', 0o600);
    let jailPid: number;
    let pidStart: string | null;
    try {
      let child: ReturnType<typeof startBwrap>;
      try {
        child = startBwrap(plan, ['ignore', log, log], socket.fd);
      } finally {
        // Only the jail holds the socket now (or nobody, when a bind source failed its check at launch):
        // when envd dies, connecting to it fails at once.
        closeSync(socket.fd);
      }
      // A spawn that fails (EMFILE under a flood, EAGAIN) says so in an 'error' event: unheard, it would end the daemon.
      const spawnFailed = new Promise<never>((_, reject) => child.on('error', (error) => reject(spawnError(error))));
      const status = child.stdio[FD.status] as Readable | null | undefined;
      jailPid = await Promise.race([spawnFailed, status ? firstProcess(status, () => readLog(spec.stateDir)) : spawnFailed]);
      // With the pid, what names the jail later: a handle without it would look dead to the next daemon, which would kill it.
      pidStart = processStart(jailPid);
      if (pidStart === null) throw new BrigError('BRIG_CAPACITY', `sandbox ${spec.id}: cannot read its first process's start time in /proc`, 'the host may be out of file descriptors; retry when the load has passed');
      spec.persist?.({ ...pending, pid: jailPid, pidStart });
      child.unref();
      await envdReady(socket.path, () => child.exitCode !== null || child.signalCode !== null, () => readLog(spec.stateDir));
    } catch (error) {
      killCgroup(plan.cgroup);
      await removeCgroup(plan.cgroup);
      throw error;
    } finally {
      closeSync(log);
    }
    const { booting: _booting, ...booted } = pending;
    return { ...booted, pid: jailPid, pidStart };
  },

  liveness(handle: SandboxHandle): Liveness {
    const first = processLiveness(handle.pid, handle.pidStart);
    if (first !== 'gone') return first;
    // Its first process is gone: the jail is gone once nothing is left in its cgroups (the kernel is still killing the rest otherwise).
    const { cgroup } = handle.detail as unknown as JailDetail;
    return cgroupEmptiness(cgroup.dirs);
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
    if (processLiveness(handle.pid, handle.pidStart) === 'alive') {
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
    rmSync(handle.endpoint.socketPath, { force: true });
  },
};

function jailDetail(plan: JailPlan): JailDetail {
  const { resources, network } = plan.policy;
  return {
    cgroup: { version: plan.cgroup.version, dirs: plan.cgroup.dirs, killDir: plan.cgroup.killDir },
    memory: { action: resources.onOutOfMemory, relay: network.mode === 'allowlist' },
  };
}

/** 'gone' when no process is left in the jail's cgroups (or they are removed), 'alive' while one is, 'unknown' when one could not be read. */
function cgroupEmptiness(dirs: string[]): Liveness {
  let unknown = false;
  for (const dir of dirs) {
    try {
      if (readFileSync(`${dir}/cgroup.procs`, 'utf8').trim() !== '') return 'alive';
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') unknown = true;
    }
  }
  return unknown ? 'unknown' : 'gone';
}

/** Out of descriptors or processes is the host being full, not the sandbox being wrong. */
function spawnError(error: NodeJS.ErrnoException): BrigError {
  if (outOfDescriptors(error) || error.code === 'EAGAIN') {
    return new BrigError('BRIG_CAPACITY', `cannot start the sandbox's jail: ${error.code} (the daemon or the host is out of descriptors or processes)`, 'retry when the load has passed; `brig serve --max-connections` caps what clients can hold');
  }
  return new BrigError('BRIG_JAIL_SETUP', `cannot start the sandbox's jail: ${error.message}`, 'check that bubblewrap is installed and brig is built (brig-exec): `npm run setup`');
}

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
