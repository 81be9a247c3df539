import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { BrigError } from '../../protocol/index.ts';
import { watchTimeoutAndAbort, type RunEnd, type RunIo, type RunStdio } from '../driver.ts';
import { FD, type JailPlan } from './bwrap.ts';
import { createCgroup, guardMemory, killCgroup, openPlanFds, outOfMemory, processStart, removeCgroup, removeRecord, spawnInside, sweepLeftovers, writeRecord, type MemoryGuard } from '../host/index.ts';

/**
 * Run a rendered jail in the foreground and wait for it to end. The steps, in
 * order (each undone if a later one fails):
 *   1. clean up after brigs that were killed before they could;
 *   2. write this jail's record (before anything exists to leak);
 *   3. create its cgroups with their limits;
 *   4. open the bind sources (no symlink followed: host/sources.ts) and start
 *      brig-exec → bwrap inside those cgroups, as the jail's host user;
 *      brig-exec closes every fd brig did not hand over;
 *   5. hand bwrap the seccomp program and the data files on fds;
 *   6. watch: the exit status, the memory limit (host/memory.ts), the timeout, the caller's abort;
 *   7. kill whatever is left, remove the cgroups and the record.
 * The caller owns the terminal and the signals (cli/): it hands stdio in and
 * aborts io.signal to end the jail.
 */
export async function runJail(plan: JailPlan, io: RunIo): Promise<RunEnd> {
  await sweepLeftovers();
  const { cgroup } = plan.limits;
  writeRecord({
    id: plan.id,
    ownerPid: process.pid,
    ownerStart: processStart('self') ?? '',
    cgroupDirs: cgroup.dirs,
    killDir: cgroup.killDir,
  });
  try {
    createCgroup(cgroup);
    const stdio: [RunStdio | 'pipe', RunStdio | 'pipe', RunStdio | 'pipe'] = io.output ? [io.stdio[0], 'pipe', 'pipe'] : io.stdio;
    const child = startBwrap(plan, stdio);
    io.started?.();
    if (io.output) for (const stream of [child.stdout, child.stderr]) stream?.on('data', io.output);
    return await watch(plan, child, io);
  } finally {
    await removeCgroup(cgroup);
    removeRecord(plan.id);
  }
}

/**
 * Start brig-exec → bwrap inside the jail's (already created) cgroups, as the
 * jail's host user, and hand bwrap the seccomp program and the plan's fds (FD). `stdio` is what the jail's command
 * gets as 0-2; `envdSocket` goes to FD.envdSocket. The bind sources are opened
 * here, so the check that counts is the one just before bubblewrap mounts them.
 */
export function startBwrap(plan: JailPlan, stdio: [StdioNull, StdioNull, StdioNull], envdSocket: StdioNull = 'ignore'): ChildProcess {
  const [file, ...args] = plan.argv;
  const extra = openPlanFds(plan.fds);
  let child: ChildProcess;
  try {
    child = spawnInside(plan.limits.cgroup, () =>
      spawn(file ?? 'brig-exec', args, {
        env: plan.env,
        cwd: '/',
        stdio: [...stdio, 'pipe', 'pipe', envdSocket, ...extra.stdio] as StdioOptions,
        // Its own process group: the caller's terminal signals reach brig, which ends the whole jail.
        detached: true,
        ...(plan.identity.dropPrivileges ? { uid: plan.identity.hostUid, gid: plan.identity.hostGid } : {}),
      }),
    );
  } finally {
    // The child has its own copies now: brig's must not outlive the spawn (an O_PATH fd is a handle on the host).
    extra.close();
  }
  const pipes = child.stdio as unknown as Array<Writable & Readable>;
  feed(pipes[FD.seccomp], plan.seccompProgram);
  plan.fds.forEach((entry, index) => {
    if (entry.kind === 'data') feed(pipes[FD.bindSources + index], Buffer.from(entry.data));
  });
  return child;
}

type StdioNull = RunStdio | 'pipe';

function watch(plan: JailPlan, child: ChildProcess, io: RunIo): Promise<RunEnd> {
  const pipes = child.stdio as unknown as Array<Writable & Readable>;
  const { cgroup } = plan.limits;
  return new Promise((resolve, reject) => {
    let status = '';
    let ended: RunEnd | null = null;
    let jailPid: number | null = null;
    let memory: MemoryGuard | null = null;
    const action = plan.policy.resources.onOutOfMemory;
    const endJail = (end: RunEnd): void => {
      ended ??= end;
      // The jail's first process is pid 1 of its pid namespace: when it dies, the kernel kills the rest.
      if (jailPid) kill(jailPid);
      killCgroup(cgroup);
    };
    pipes[FD.status]?.on('data', (chunk: Buffer) => {
      status += chunk.toString();
      const started = jailPid === null && /"child-pid"\s*:\s*(\d+)/.exec(status);
      if (!started) return;
      jailPid = Number(started[1]);
      memory = guardMemory({
        cgroup,
        jailPid,
        action,
        protectMain: io.protectMain ?? false,
        relay: plan.network.mode === 'allowlist',
        onEvent: (event) => io.onMemoryEvent?.(event),
        endJail: () => endJail({ reason: 'oom' }),
      });
    });
    const stopWatching = watchTimeoutAndAbort(plan.policy.timeouts.runMs, io.signal, endJail);
    const cleanup = (): void => {
      stopWatching();
      memory?.close();
    };
    child.on('error', (error) => {
      cleanup();
      reject(new BrigError('BRIG_JAIL_SETUP', `cannot start ${plan.argv[0]}: ${error.message}`, 'check that bubblewrap is installed and brig-exec is built (`npm run setup`, or npm ci)'));
    });
    child.on('close', (code, signal) => {
      cleanup();
      if (!ended && action === 'kill-sandbox' && outOfMemory(cgroup)) ended = { reason: 'oom' };
      if (ended) return resolve(ended);
      const exit = /"exit-code"\s*:\s*(\d+)/.exec(status);
      // bwrap reports an exit code only for a command it started: anything else failed in its setup.
      if (exit) return resolve({ reason: 'exit', exitCode: Number(exit[1]) });
      resolve({
        reason: 'setup',
        code: 'BRIG_JAIL_SETUP',
        message: `bubblewrap could not build the jail (exit ${code ?? `signal ${signal}`}; its message is above)`,
        hint: 'check the paths and flags it names; `brig run --dry-run …` prints the full plan',
      });
    });
  });
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function feed(stream: Writable | undefined, data: Buffer): void {
  if (!stream) return;
  // bwrap may die before reading (a setup error): its own message says why, not our EPIPE.
  stream.on('error', () => {});
  stream.end(data);
}
