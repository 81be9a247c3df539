import { closeSync, write } from 'node:fs';
import { ReadStream } from 'node:tty';

/**
 * A pseudo-terminal of the sandbox's own for `brig run` on a terminal: the
 * sandbox never holds the caller's terminal (no TIOCSTI into it), yet a
 * full-screen program sees a real tty, resizes included. The CLI hands the
 * slave to the driver as the command's stdio and relays the master.
 */

export interface Terminal {
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

/** node-pty's native openpty is the one piece Node lacks. */
export async function openTerminal(): Promise<Terminal> {
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
