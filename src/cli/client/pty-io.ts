import type { Envd } from './envd.ts';

/**
 * What `brig shell` and `brig attach` both do with a terminal in a
 * sandbox: type into it and give it the caller's window size.
 */

/** The caller's window, or a classic terminal's size when stdout is not one. */
export function terminalSize(): { cols: number; rows: number } {
  return { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 };
}

/** process.Process/Update: the terminal of `pid` takes the caller's window size. A process that has just ended has none to take. */
export function sendTerminalSize(envd: Envd, pid: number): Promise<void> {
  return envd.unary('process.Process/Update', { process: { pid }, pty: { size: terminalSize() } }).then(
    () => {},
    () => {},
  );
}

/**
 * Keystrokes in order, one call at a time: what is typed while a call is in
 * flight is gathered into the next, so a paste is a few calls, not thousands.
 */
export function inputSender(envd: Envd, pid: number): (chunk: Buffer) => void {
  let pending: Buffer[] = [];
  let sending = false;
  const flush = async (): Promise<void> => {
    sending = true;
    while (pending.length > 0) {
      const data = Buffer.concat(pending);
      pending = [];
      // A process that has exited takes no input; its end event is on its way.
      await envd.unary('process.Process/SendInput', { process: { pid }, input: { pty: data.toString('base64') } }).catch(() => {});
    }
    sending = false;
  };
  return (chunk) => {
    pending.push(chunk);
    if (!sending) void flush();
  };
}
