import type * as NodePty from 'node-pty';
import { ConnectError, type PtySize } from '../../protocol/index.ts';
import type { Child, OutputSource } from './child.ts';
import { signalFromNumber, type ExitInfo } from './signals.ts';
import { findExecutable, startError, type SpawnOptions } from './spawn.ts';

/**
 * A program on a new pseudo-terminal (node-pty): it leads a session of its
 * own with the terminal as its controlling tty, so it is also a group leader.
 * Output comes as raw bytes (`encoding: null`): the client decodes.
 *
 * node-pty reports the exit only once the terminal is closed, or 200 ms after
 * the program exited while a descendant still holds the terminal; by then the
 * output is over, so the `end` follows at once.
 */
/** node-pty (a native module) loads on the first terminal, not at envd's start: every sandbox's boot waits on that start. */
let nodePty: typeof NodePty | null = null;

export async function spawnPty(options: SpawnOptions & { size: PtySize }): Promise<Child> {
  const pty = (nodePty ??= await import('node-pty'));
  // node-pty forks before exec and reports a failed exec as output and exit code 1; check first, for a real error.
  const file = findExecutable(options.cmd, options.env.PATH ?? '', { cwd: options.cwd, as: options.as });
  let term: NodePty.IPty;
  try {
    term = pty.spawn(file, options.args, {
      name: options.env.TERM || 'xterm-256color',
      cols: options.size.cols,
      rows: options.size.rows,
      cwd: options.cwd,
      env: options.env,
      encoding: null,
      ...(options.as ?? {}),
    });
  } catch (error) {
    throw startError(options.cmd, error);
  }
  let running = true;
  const exited = new Promise<ExitInfo>((resolve) =>
    term.onExit(({ exitCode, signal }) => {
      running = false;
      const name = signalFromNumber(signal);
      resolve(name ? { code: null, signal: name } : { code: exitCode, signal: null });
    }),
  );
  const source: OutputSource = {
    kind: 'pty',
    // With `encoding: null`, node-pty hands out Buffers, whatever its typings say.
    onData: (listener) => term.onData((data: string | Buffer) => listener(typeof data === 'string' ? Buffer.from(data) : data)),
    pause: () => term.pause(),
    resume: () => term.resume(),
    ended: exited.then(() => undefined),
    destroy: () => {},
  };
  return {
    pid: term.pid,
    sources: [source],
    exited,
    async write(kind, data) {
      if (kind === 'stdin') throw new ConnectError('failed_precondition', `process ${term.pid} runs on a terminal: send its input as pty`);
      if (!running) throw new ConnectError('failed_precondition', `process ${term.pid} has exited`);
      term.write(data);
    },
    closeStdin() {
      throw new ConnectError('failed_precondition', `process ${term.pid} runs on a terminal, which has no stdin to close: send Ctrl-D (\\x04) as pty input instead`);
    },
    resize(size) {
      try {
        term.resize(size.cols, size.rows);
      } catch (error) {
        // The terminal closed under us (the program has just exited).
        throw new ConnectError('failed_precondition', `cannot resize the terminal of process ${term.pid}: ${(error as Error).message}`);
      }
    },
  };
}
