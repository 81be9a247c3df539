import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
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
  /** Start it as this user (envd is root in an image sandbox); absent: as envd. */
  as?: { uid: number; gid: number };
}

/**
 * brig-exec (native/spawn) becomes the user and execs the program. It is
 * linked statically: it starts in any image, needing nothing of its
 * libraries or loader, and costs one exec less than through brig's loader.
 */
export function asUserArgv(as: { uid: number; gid: number }, cmd: string, args: string[]): string[] {
  return [posixSpawn.execPath, '--as', `${as.uid}:${as.gid}`, '--keep-fds', '2', '--', cmd, ...args];
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
  // As another user, brig-exec does the exec after the spawn, where a failure is only an exit code and a
  // line of stderr: look first, so a program that cannot start is an error here too, never a started process.
  if (options.as) findExecutable(options.cmd, options.env.PATH ?? '', { cwd: options.cwd, as: options.as });
  let fds: [number, number, number, number];
  try {
    const argv = options.as ? asUserArgv(options.as, options.cmd, options.args) : [options.cmd, ...options.args];
    fds = posixSpawn.spawn(argv[0] as string, argv, envp, options.cwd, options.stdin);
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

/**
 * The file execvp would run: `cmd` itself when it has a slash, otherwise the
 * first executable match on PATH; relative ones from cwd, the program's own
 * (absent: envd's). With `as` (envd, root, starting it as another user), one
 * that user may execute: that user's execute bit by owner, group (the user's
 * one group: brig-exec --as sets no others) or other, as the exec will judge.
 */
export function findExecutable(cmd: string, path: string, options: { cwd?: string; as?: { uid: number; gid: number } } = {}): string {
  const candidates = cmd.includes('/') ? [cmd] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, cmd));
  for (const candidate of candidates) {
    const file = options.cwd ? resolve(options.cwd, candidate) : candidate;
    try {
      accessSync(file, constants.X_OK);
      const stats = statSync(file);
      if (stats.isFile() && (!options.as || executableBy(stats, options.as))) return candidate;
    } catch {
      // Not here; try the next.
    }
  }
  throw new ConnectError('invalid_argument', cmd.includes('/') ? `cannot start '${cmd}': no such file, or not executable` : `cannot start '${cmd}': not found on PATH`);
}

function executableBy(stats: Stats, as: { uid: number; gid: number }): boolean {
  if (stats.uid === as.uid) return (stats.mode & 0o100) !== 0;
  if (stats.gid === as.gid) return (stats.mode & 0o010) !== 0;
  return (stats.mode & 0o001) !== 0;
}
