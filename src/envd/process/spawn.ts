import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { ConnectError } from '../../protocol/index.ts';
import type { Child, OutputSource } from './child.ts';
import type { OutputKind } from './output.ts';
import type { ExitInfo } from './signals.ts';

/** How to start a program: everything already checked and resolved. */
export interface SpawnOptions {
  cmd: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

/**
 * A program on pipes. `detached` makes it a session and group leader, so a
 * signal to its group reaches everything it started that did not leave, and
 * it has no controlling terminal to read from. Without `stdin`, its stdin is
 * /dev/null from the start. Resolves once it runs; a program that cannot
 * start (no such file, not executable) rejects, so the caller answers an
 * error rather than a stream that never begins.
 */
export function spawnPiped(options: SpawnOptions & { stdin: boolean }): Promise<Child> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(options.cmd, options.args, {
        cwd: options.cwd,
        env: options.env,
        detached: true,
        stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      });
    } catch (error) {
      reject(startError(options.cmd, error));
      return;
    }
    // Streams and the child itself can fail later (EPIPE on stdin, a kill on a reaped pid): never an uncaught error.
    for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.on('error', () => {});
    const exited = new Promise<ExitInfo>((done) => child.once('exit', (code, signal) => done({ code, signal })));
    child.once('error', (error) => {
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      reject(startError(options.cmd, error));
    });
    child.once('spawn', () => {
      child.removeAllListeners('error');
      child.on('error', () => {});
      resolve(pipedChild(child, exited));
    });
  });
}

function pipedChild(child: ChildProcess, exited: Promise<ExitInfo>): Child {
  const pid = child.pid ?? 0;
  const stdin = child.stdin;
  return {
    pid,
    sources: [pipeSource('stdout', child.stdout as Readable), pipeSource('stderr', child.stderr as Readable)],
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
