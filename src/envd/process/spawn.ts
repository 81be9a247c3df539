import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import posixSpawn from 'brig-spawn';
import { ConnectError } from '../../protocol/index.ts';
import type { Child, OutputSource } from './child.ts';
import type { OutputKind } from './output.ts';
import { signalFromNumber, type ExitInfo } from './signals.ts';

/** How to start a program: everything already checked and resolved. */
export interface SpawnOptions {
  cmd: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

/**
 * Children started here are reaped here: libuv waits only for the children
 * it started itself, so on SIGCHLD each live pid of ours is waited for by
 * its own pid (never a child of child_process or node-pty).
 */
const live = new Map<number, (exit: ExitInfo) => void>();
/** Keeps the event loop alive while a child runs (a signal listener does not), and reaps every second should a SIGCHLD be lost. */
let keepAlive: NodeJS.Timeout | null = null;
let listening = false;

/**
 * A program on pipes, started with glibc's posix_spawn (native/spawn): a
 * clone that shares envd's memory until the exec, so starting a program
 * costs about 0.2 ms instead of libuv's fork() of all of envd (1–2 ms, more
 * as envd grows). The program leads its own session, so a signal to its
 * groups reaches everything it started that did not leave, and it has no
 * controlling terminal to read from; its signal mask and dispositions are
 * reset. Without `stdin`, its stdin is /dev/null from the start. A program
 * that cannot start (no such file, not executable) rejects, so the caller
 * answers an error rather than a stream that never begins.
 */
export async function spawnPiped(options: SpawnOptions & { stdin: boolean }): Promise<Child> {
  // Listening before the first spawn, and for good: a SIGCHLD that comes while nobody listens
  // is lost (a quick program can exit before the spawn call returns), and then only the
  // once-a-second poll below would see the exit.
  if (!listening) {
    process.on('SIGCHLD', reapAll);
    listening = true;
  }
  const envp = Object.entries(options.env).map(([name, value]) => `${name}=${value}`);
  let fds: [number, number, number, number];
  try {
    fds = posixSpawn.spawn(options.cmd, [options.cmd, ...options.args], envp, options.cwd, options.stdin);
  } catch (error) {
    throw startError(options.cmd, error);
  }
  const [pid, stdinFd, stdoutFd, stderrFd] = fds;
  const exited = new Promise<ExitInfo>((resolve) => live.set(pid, resolve));
  // It may have exited before it was in `live`: look once now.
  setImmediate(reapAll);
  keepAlive ??= setInterval(reapAll, 1000);
  const stdin = stdinFd >= 0 ? new Socket({ fd: stdinFd, readable: false, writable: true }) : null;
  const stdout = new Socket({ fd: stdoutFd, readable: true, writable: false });
  const stderr = new Socket({ fd: stderrFd, readable: true, writable: false });
  // Streams can fail later (EPIPE on stdin after the program exits): never an uncaught error.
  for (const stream of [stdin, stdout, stderr]) stream?.on('error', () => {});
  return {
    pid,
    sources: [pipeSource('stdout', stdout), pipeSource('stderr', stderr)],
    exited,
    write(kind, data) {
      if (kind === 'pty') throw new ConnectError('failed_precondition', `process ${pid} has no terminal: send its input as stdin`);
      if (!stdin || stdin.destroyed || stdin.writableEnded) {
        throw new ConnectError('failed_precondition', `the stdin of process ${pid} is not open: start it with stdin: true, and do not close it before writing`);
      }
      return writeAll(stdin, data, pid);
    },
    closeStdin() {
      stdin?.end();
    },
    resize() {
      throw new ConnectError('failed_precondition', `process ${pid} has no terminal to resize: start it with pty`);
    },
  };
}

function reapAll(): void {
  for (const [pid, done] of live) {
    const status = posixSpawn.reap(pid);
    if (!status) continue;
    live.delete(pid);
    const signal = signalFromNumber(status[1]);
    done(signal ? { code: null, signal } : { code: status[0] < 0 ? null : status[0], signal: null });
  }
  if (live.size === 0) {
    if (keepAlive) clearInterval(keepAlive);
    keepAlive = null;
  }
}

/** Resolves when the kernel has the bytes, so a caller writing faster than the program reads waits instead of piling up in memory. */
function writeAll(stdin: Writable, data: Buffer, pid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    stdin.write(data, (error) => {
      if (error) reject(new ConnectError('failed_precondition', `cannot write to the stdin of process ${pid}: it was closed (${error.message})`));
      else resolve();
    });
  });
}

function pipeSource(kind: OutputKind, stream: Readable): OutputSource {
  const ended = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  return {
    kind,
    onData: (listener) => stream.on('data', listener),
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    ended,
    destroy: () => stream.destroy(),
  };
}

/** Why a program could not start, with the code E2B's envd uses: resource errors can be retried, the rest cannot. */
export function startError(cmd: string, error: unknown): ConnectError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  const reason: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied (is it executable?)',
    ENOEXEC: 'not an executable format',
    ENOTDIR: 'a component of the path is not a directory',
  };
  if (['EAGAIN', 'ENOMEM', 'EMFILE', 'ENFILE', 'ENOSPC'].includes(code)) {
    return new ConnectError('resource_exhausted', `cannot start '${cmd}': out of resources (${code}); try again when fewer processes or files are open`);
  }
  const message = reason[code] ?? (error instanceof Error ? error.message : String(error));
  return new ConnectError('invalid_argument', `cannot start '${cmd}': ${message}`);
}
