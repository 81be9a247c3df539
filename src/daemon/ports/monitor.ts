import type { Socket } from 'node:net';
import { MONITOR_TAG } from '../../protocol/index.ts';
import type { EnvdClient } from '../sandboxes/index.ts';
import type { CommandRecorder } from '../timeline/index.ts';
import { PtyShell, SHELL_CWD, SHELL_USER } from './shell.ts';

/**
 * Seed 000's monitor port, without its fifo and dtach: one persistent login
 * shell in the sandbox, on a terminal, tagged `brig-monitor` so `brig
 * attach` (and a restarted daemon) finds it. Lines sent to the port, by any
 * number of connections, are typed into it; nothing is sent back: its
 * output is watched with `brig attach NAME`. The daemon follows it for as
 * long as it runs (reading its output, so it never stalls on a full
 * terminal); when it has ended (someone typed `exit`), the next line starts
 * a new one.
 */

export const MONITOR_SHELL = ['/bin/bash', '-l'];
/** A line longer than this is typed as it comes, not held back whole. */
const LINE_MAX_BYTES = 64 * 1024;

export class MonitorShell {
  private shell: PtyShell | null = null;
  private starting: Promise<PtyShell> | null = null;
  private closed = false;

  constructor(private readonly context: { sandbox: string; envd: () => EnvdClient; recorder?: CommandRecorder }) {}

  /** The shell, started (or, after a restart, found by its tag and followed again) when none runs. */
  ensure(): Promise<PtyShell> {
    if (this.shell) return Promise.resolve(this.shell);
    this.starting ??= this.begin().finally(() => (this.starting = null));
    return this.starting;
  }

  /** Lines typed into the shell, whole and in order whoever sent them; again into a new shell if the one there just ended. */
  async type(lines: Buffer): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const shell = await this.ensure();
      if (await shell.write(lines)) return;
      if (this.shell === shell) this.shell = null;
    }
  }

  /** Stop following it: the daemon closes (the shell runs on, for the next one), or the sandbox ends (the shell goes with it). */
  close(): void {
    this.closed = true;
    this.shell?.detach();
    this.shell = null;
  }

  private async begin(): Promise<PtyShell> {
    if (this.closed) throw new Error('the sandbox\'s ports are closed');
    const envd = this.context.envd();
    const shell = new PtyShell({ sandbox: this.context.sandbox, envd, via: 'monitor', recorder: this.context.recorder });
    const running = (await envd.list()).find((process) => process.tag === MONITOR_TAG);
    // Its output is read and dropped here (the recorder keeps it): viewers follow it with their own Connect.
    const discard = (): void => {};
    let followed: Promise<unknown>;
    if (running) {
      const argv = [running.config.cmd, ...(running.config.args ?? [])].join(' ');
      followed = shell.reattach(running.pid, { argv, pty: true, via: 'monitor', user: SHELL_USER, cwd: running.config.cwd ?? SHELL_CWD, tag: MONITOR_TAG }, { output: discard });
    } else {
      let started!: () => void;
      const begun = new Promise<void>((resolve) => (started = resolve));
      followed = shell.start(MONITOR_SHELL, MONITOR_TAG, { TERM: 'xterm-256color' }, { started, output: discard });
      // Its pid known, or its start failed.
      await Promise.race([begun, followed]);
    }
    const forget = (): void => {
      if (this.shell === shell) this.shell = null;
    };
    followed.then(forget, forget);
    if (shell.pid === null) throw new Error('the monitor shell ended as it started');
    if (this.closed) shell.detach();
    else this.shell = shell;
    return shell;
  }
}

/** One connection to the monitor port: its complete lines typed into the shell as they come, a last unterminated one at its end. */
export function serveMonitorConnection(socket: Socket, monitor: MonitorShell): void {
  let partial: Buffer = Buffer.alloc(0);
  const type = (bytes: Buffer): Promise<void> => (bytes.length === 0 ? Promise.resolve() : monitor.type(bytes).catch(() => {}));
  socket.on('data', (chunk: Buffer) => {
    // One chunk's lines in flight at a time: a flooding client waits on its own socket.
    socket.pause();
    const buffered = partial.length === 0 ? chunk : Buffer.concat([partial, chunk]);
    const cut = buffered.length > LINE_MAX_BYTES ? buffered.length : buffered.lastIndexOf(0x0a) + 1;
    partial = buffered.subarray(cut);
    void type(buffered.subarray(0, cut)).then(() => socket.resume());
  });
  socket.once('end', () => {
    const last = partial.length === 0 ? partial : Buffer.concat([partial, Buffer.from('\n')]);
    partial = Buffer.alloc(0);
    void type(last).then(() => socket.end());
  });
  socket.resume();
}
