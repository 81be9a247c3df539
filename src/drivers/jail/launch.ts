import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, write } from 'node:fs';
import { ReadStream } from 'node:tty';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { BrigError, type MemoryEvent } from '../../protocol/index.ts';
import { FD, type JailPlan } from './plan.ts';
import { createCgroup, killCgroup, outOfMemory, removeCgroup, spawnInside } from './cgroup.ts';
import { guardMemory, type MemoryGuard } from './memory.ts';
import { processStart, removeRecord, sweepLeftovers, writeRecord } from './records.ts';
import { openPlanFds } from './sources.ts';

/** How a jail ended. */
export type JailEnd =
  | { reason: 'exit'; exitCode: number }
  | { reason: 'oom' }
  | { reason: 'timeout' }
  | { reason: 'signal'; signal: NodeJS.Signals }
  | { reason: 'setup'; bwrapExitCode: number };

export interface RunJailOptions {
  /** Never kill the command's own process at the memory limit, only what it started (brig agent: the agent lives on). */
  protectMain?: boolean;
  /** Each decision at the memory limit (memory.ts), as it is made. */
  onMemoryEvent?: (event: MemoryEvent) => void;
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/**
 * Run a planned jail in the foreground and wait for it to end. The steps, in
 * order (each undone if a later one fails):
 *   1. clean up after brigs that were killed before they could;
 *   2. write this jail's record (before anything exists to leak);
 *   3. create its cgroups with their limits;
 *   4. open the bind sources (no symlink followed: sources.ts) and start
 *      brig-exec → bwrap inside those cgroups, as the jail's host user;
 *      brig-exec closes every fd brig did not hand over;
 *   5. hand bwrap the seccomp program, the jail's passwd/group, its
 *      hostname and hosts files on fds;
 *   6. watch: the exit status, the memory limit (memory.ts), the timeout, the caller's signals;
 *   7. kill whatever is left, remove the cgroups and the record.
 */
export async function runJail(plan: JailPlan, options: RunJailOptions = {}): Promise<JailEnd> {
  await sweepLeftovers();
  writeRecord({
    id: plan.id,
    ownerPid: process.pid,
    ownerStart: processStart('self') ?? '',
    cgroupDirs: plan.cgroup.dirs,
    killDir: plan.cgroup.killDir,
  });
  let terminal: Terminal | null = null;
  try {
    createCgroup(plan.cgroup);
    terminal = plan.tty ? await openTerminal() : null;
    const child = startBwrap(plan, terminal ? [terminal.slave, terminal.slave, terminal.slave] : ['inherit', 'inherit', 'inherit']);
    if (terminal) terminal.attach();
    const end = await watch(plan, child, options);
    await terminal?.drained();
    return end;
  } finally {
    terminal?.close();
    await removeCgroup(plan.cgroup);
    removeRecord(plan.id);
  }
}

/**
 * Start brig-exec → bwrap inside the jail's (already created) cgroups, as the
 * jail's host user, and hand bwrap the seccomp program, the jail's
 * passwd/group and the plan's fds (FD). `stdio` is what the jail's command
 * gets as 0-2; `envdSocket` goes to FD.envdSocket. The bind sources are opened
 * here, so the check that counts is the one just before bubblewrap mounts them.
 */
export function startBwrap(plan: JailPlan, stdio: [StdioNull, StdioNull, StdioNull], envdSocket: StdioNull = 'ignore'): ChildProcess {
  const [file, ...args] = plan.argv;
  const extra = openPlanFds(plan.fds);
  let child: ChildProcess;
  try {
    child = spawnInside(plan.cgroup, () =>
      spawn(file ?? 'brig-exec', args, {
        env: plan.env,
        cwd: '/',
        stdio: [...stdio, 'pipe', 'pipe', 'pipe', 'pipe', envdSocket, ...extra.stdio] as StdioOptions,
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
  feed(pipes[FD.passwd], Buffer.from(plan.identity.passwd));
  feed(pipes[FD.group], Buffer.from(plan.identity.group));
  plan.fds.forEach((entry, index) => {
    if (entry.kind === 'data') feed(pipes[FD.bindSources + index], Buffer.from(entry.data));
  });
  return child;
}

type StdioNull = 'inherit' | 'ignore' | number;

function watch(plan: JailPlan, child: ChildProcess, options: RunJailOptions): Promise<JailEnd> {
  const pipes = child.stdio as unknown as Array<Writable & Readable>;
  return new Promise((resolve, reject) => {
    let status = '';
    let ended: JailEnd | null = null;
    let jailPid: number | null = null;
    let memory: MemoryGuard | null = null;
    const action = plan.policy.resources.onOutOfMemory;
    const endJail = (end: JailEnd): void => {
      ended ??= end;
      // The jail's first process is pid 1 of its pid namespace: when it dies, the kernel kills the rest.
      if (jailPid) kill(jailPid);
      killCgroup(plan.cgroup);
    };
    pipes[FD.status]?.on('data', (chunk: Buffer) => {
      status += chunk.toString();
      const started = jailPid === null && /"child-pid"\s*:\s*(\d+)/.exec(status);
      if (!started) return;
      jailPid = Number(started[1]);
      memory = guardMemory({
        cgroup: plan.cgroup,
        jailPid,
        action,
        protectMain: options.protectMain ?? false,
        relay: plan.policy.network.mode === 'allowlist',
        onEvent: (event) => options.onMemoryEvent?.(event),
        endJail: () => endJail({ reason: 'oom' }),
      });
    });
    const runMs = plan.policy.timeouts.runMs;
    const timeout = runMs > 0 ? setTimeout(() => endJail({ reason: 'timeout' }), runMs) : null;
    const onSignal = (signal: NodeJS.Signals): void => endJail({ reason: 'signal', signal });
    for (const signal of FORWARDED_SIGNALS) process.on(signal, onSignal);
    const cleanup = (): void => {
      memory?.close();
      if (timeout) clearTimeout(timeout);
      for (const signal of FORWARDED_SIGNALS) process.off(signal, onSignal);
    };
    child.on('error', (error) => {
      cleanup();
      reject(new BrigError('BRIG_JAIL_SETUP', `cannot start ${plan.argv[0]}: ${error.message}`, 'check that bubblewrap is installed and brig-exec is built (`npm run setup`, or npm ci)'));
    });
    child.on('close', (code, signal) => {
      cleanup();
      if (!ended && action === 'kill-sandbox' && outOfMemory(plan.cgroup)) ended = { reason: 'oom' };
      if (ended) return resolve(ended);
      const exit = /"exit-code"\s*:\s*(\d+)/.exec(status);
      // bwrap reports an exit code only for a command it started: anything else failed in its setup.
      if (exit) return resolve({ reason: 'exit', exitCode: Number(exit[1]) });
      resolve({ reason: 'setup', bwrapExitCode: code ?? 128 + signalNumber(signal) });
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

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? constants.signals[signal] : 0;
}

interface Terminal {
  slave: number;
  /** Start relaying between the caller's terminal and the jail's. */
  attach(): void;
  /** Resolves when the jail's last output has been written out. */
  drained(): Promise<void>;
  close(): void;
}

interface PtyNative {
  open(cols: number, rows: number): { master: number; slave: number; pty: string };
  resize(fd: number, cols: number, rows: number): void;
}

/**
 * A pseudo-terminal of the jail's own: the jail never holds the caller's
 * terminal (no TIOCSTI into it), yet a full-screen program sees a real tty,
 * resizes included. node-pty's native openpty is the one piece Node lacks.
 */
async function openTerminal(): Promise<Terminal> {
  const nodePty = (await import('node-pty')) as unknown as { native: PtyNative };
  const size = (): [number, number] => [process.stdout.columns || 80, process.stdout.rows || 24];
  const { master, slave } = nodePty.native.open(...size());
  const output = new ReadStream(master);
  const input = process.stdin;
  let closed = false;
  const onResize = (): void => {
    if (!closed) nodePty.native.resize(master, ...size());
  };
  const writeQueue: Buffer[] = [];
  let writing = false;
  const pump = (): void => {
    const chunk = writeQueue.shift();
    if (!chunk || closed) {
      writing = false;
      return;
    }
    writing = true;
    write(master, chunk, (error) => (error ? (writing = false) : pump()));
  };
  const onInput = (chunk: Buffer): void => {
    writeQueue.push(chunk);
    if (!writing) pump();
  };
  const done = new Promise<void>((resolve) => {
    // The master reads EIO once every holder of the slave is gone: that is the end of output.
    output.on('error', () => resolve());
    output.on('close', () => resolve());
  });
  return {
    slave,
    attach() {
      closeSync(slave);
      output.pipe(process.stdout, { end: false });
      if (input.isTTY) input.setRawMode(true);
      input.on('data', onInput);
      input.resume();
      process.stdout.on('resize', onResize);
    },
    drained: () => Promise.race([done, new Promise<void>((resolve) => setTimeout(resolve, 500).unref())]),
    close() {
      if (closed) return;
      closed = true;
      process.stdout.off('resize', onResize);
      input.off('data', onInput);
      if (input.isTTY) input.setRawMode(false);
      input.pause();
      output.destroy();
    },
  };
}
