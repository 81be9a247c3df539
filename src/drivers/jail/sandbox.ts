import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrigError, outOfDescriptors, type MemoryEvent } from '../../protocol/index.ts';
import type { OutOfMemoryAction } from '../../policy/index.ts';
import { ENVD_INSIDE, envdPolicy, envdRuntime } from '../envd-runtime/index.ts';
import type { Driver, Liveness, RunEnd, RunIo, SandboxHandle, SandboxSpec, SandboxUsage, TierStatus } from '../driver.ts';
import { findExecutable, planSandbox, type SandboxPlan } from '../plan/index.ts';
import { cgroupUsage, createCgroup, endSandboxCgroup, sandboxLiveness, envdHealthy, guardMemory, killCgroup, processLiveness, processStart, removeCgroup, type CgroupPlan } from '../host/index.ts';
import { FD, renderJail, type JailPlan } from './bwrap.ts';
import { runJail, startBwrap } from './launch.ts';
import { prepareImageRoot } from './image-root.ts';

/**
 * The namespace tier as a Driver: a jail whose main process is envd, reached
 * through the unix socket its caller bound (envd gets the listening fd, never
 * a path it could be made to listen on elsewhere). Unlike `brig run`, the
 * jail outlives the process that booted it, so a daemon can restart and
 * reattach; its handle holds everything stop() needs.
 */


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
  summary: 'namespaces, seccomp and cgroups on the host kernel (bubblewrap): the fastest start, the kernel shared',
  mapsIds: true,

  status(): TierStatus {
    const bwrap = findExecutable('bwrap', process.env.PATH);
    if (!bwrap) return { available: false, detail: 'bubblewrap (bwrap) is not installed', fix: 'run `npm run setup` (or `sudo apt-get install bubblewrap`)', code: 'BRIG_BWRAP_MISSING' };
    return { available: true, detail: `bubblewrap at ${bwrap}` };
  },

  describe(plan: SandboxPlan) {
    const jail = render(plan);
    return {
      lines: [
        `seccomp: ${jail.seccompProgram.length / 8} BPF instructions${plan.syscalls.logOnly ? ' (log only: nothing is denied)' : ''}`,
        ...jail.seccompSummary.map((rule) => `  ${rule}`),
        'fds:',
        ...jail.fds.map((entry, index) => `  ${FD.bindSources + index}: ${entry.kind === 'path' ? `${entry.path} (${entry.field}, opened without following links)` : entry.kind === 'data' ? `data: ${JSON.stringify(entry.data)}` : "filled by brig-exec: the image jail's user namespace or root"}`),
        'argv:',
        `  ${jail.argv.map(shellQuote).join(' \\\n    ')}`,
      ],
      json: {
        argv: jail.argv,
        // What each fd from FD.bindSources on carries: `--bind-fd 8 /work` binds fds[2].
        fds: jail.fds.map((entry, index) => ({ fd: FD.bindSources + index, ...entry })),
        seccomp: { instructions: jail.seccompProgram.length / 8, logOnly: plan.syscalls.logOnly, rules: jail.seccompSummary },
      },
    };
  },

  run(plan: SandboxPlan, io: RunIo): Promise<RunEnd> {
    const jail = render(plan);
    if (plan.image) prepareImageRoot(plan.image);
    return runJail(jail, io);
  },

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
      const policy = envdPolicy(spec.envd.accessToken)(spec.policy);
      const host = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: process.env.HOME ?? '/', cwd: spec.stateDir, env: process.env };
      // Its mount points live in the sandbox's state directory, removed with it; the mounts themselves die with the jail.
      const image = spec.image && { ...spec.image, dir: `${spec.stateDir}/image` };
      if (image) prepareImageRoot(image);
      plan = render(planSandbox(policy, runtime.argv(`fd:${FD.envdSocket}`), host, { tty: false, outlivesParent: true, id: spec.id, egress: spec.egress, runtime: runtime.files, image }));
      // Written down before anything exists: a daemon killed from here on leaves what stop() needs.
      pending = { id: spec.id, driver: 'jail', endpoint: { socketPath: socket.path }, pid: 0, pidStart: '', detail: { ...jailDetail(plan) }, stateDir: spec.stateDir, booting: true };
      spec.persist?.(pending);
      createCgroup(plan.limits.cgroup);
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
      killCgroup(plan.limits.cgroup);
      await removeCgroup(plan.limits.cgroup);
      throw error;
    } finally {
      closeSync(log);
    }
    const { booting: _booting, ...booted } = pending;
    return { ...booted, pid: jailPid, pidStart };
  },

  liveness(handle: SandboxHandle): Liveness {
    return sandboxLiveness(handle, (handle.detail as unknown as JailDetail).cgroup.dirs);
  },

  usage(handle: SandboxHandle): SandboxUsage {
    return cgroupUsage((handle.detail as unknown as JailDetail).cgroup);
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
    await endSandboxCgroup(cgroup, handle.id, 'BRIG_JAIL_SETUP');
    // SIGKILL is delivered, not done: on a loaded host the jail's first process can still be exiting
    // when its cgroup is empty, and a liveness check right after stop would call it alive.
    for (let wait = 0; wait < STOP_WAITS && processLiveness(handle.pid, handle.pidStart) === 'alive'; wait++) await sleep(10);
    rmSync(handle.endpoint.socketPath, { force: true });
  },
};

/** How long stop() waits for the killed first process to be gone: 10 ms at a time, 5 s at most. */
const STOP_WAITS = 500;

/** The jail for this host's bubblewrap, as this brig's user. */
function render(plan: SandboxPlan): JailPlan {
  return renderJail(plan, process.getuid?.() ?? 0, process.env.PATH);
}

/** A word as a shell reads it back. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function jailDetail(plan: JailPlan): JailDetail {
  const { resources, network } = plan.policy;
  const { cgroup } = plan.limits;
  return {
    cgroup: { version: cgroup.version, dirs: cgroup.dirs, killDir: cgroup.killDir },
    memory: { action: resources.onOutOfMemory, relay: network.mode === 'allowlist' },
  };
}

/** Out of descriptors or processes is the host being full, not the sandbox being wrong. */
function spawnError(error: NodeJS.ErrnoException): BrigError {
  if (outOfDescriptors(error) || error.code === 'EAGAIN') {
    return new BrigError('BRIG_CAPACITY', `cannot start the sandbox's jail: ${error.code} (the daemon or the host is out of descriptors or processes)`, 'retry when the load has passed; `brig serve --max-connections` caps what clients can hold');
  }
  return new BrigError('BRIG_JAIL_SETUP', `cannot start the sandbox's jail: ${error.message}`, 'check that bubblewrap is installed and brig is built (brig-exec): `npm run setup`');
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
    if (await envdHealthy(socketPath)) return;
    await new Promise((resolve) => setTimeout(resolve, READY_PAUSE_MS));
  }
  throw new BrigError('BRIG_JAIL_SETUP', `envd did not start in the sandbox: ${log().trim().split('\n').slice(-3).join(' | ')}`, 'the sandbox log (envd.log in its state directory) says why');
}

function readLog(stateDir: string): string {
  try {
    return readFileSync(`${stateDir}/envd.log`, 'utf8');
  } catch {
    return '';
  }
}
