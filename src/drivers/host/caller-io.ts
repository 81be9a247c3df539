import { createReadStream, writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { RunIo } from '../driver.ts';

/**
 * The caller's stdio carried by brig, for tiers whose command is not a host
 * process that could be handed the caller's descriptors (gVisor, a VM): brig
 * reads the caller's stdin and writes the command's output to the caller's
 * stdout and stderr (or io.output). The caller's descriptors stay the
 * caller's: never closed, never made non-blocking.
 */

/**
 * The caller's stdin into `into` (with its backpressure), then `ended` with
 * the bytes sent once it is all read; null when the command gets none.
 * Returns what stops reading, leaving the caller's descriptor open.
 */
export function readCallerInput(io: RunIo, into: Writable, ended: (sent: number) => void): (() => void) | null {
  const target = io.stdio[0];
  if (target === 'ignore') return null;
  // autoClose false, and never destroy(): a ReadStream's destroy closes its fd whatever autoClose says.
  const source = target === 'inherit' ? process.stdin : createReadStream('', { fd: target, autoClose: false });
  let sent = 0;
  const count = (data: Buffer | string): void => {
    sent += Buffer.byteLength(data);
  };
  const end = (): void => ended(sent);
  source.on('data', count);
  source.once('end', end);
  source.pipe(into, { end: false });
  return () => {
    source.unpipe(into);
    source.off('data', count);
    source.off('end', end);
    source.pause();
  };
}

/** Where the command's stdout (1) or stderr (2) goes: io.output, brig's own stream (its order with brig's own lines kept, EAGAIN handled), or the caller's descriptor. */
export function callerOutput(io: RunIo, index: 1 | 2): (chunk: Buffer) => void {
  if (io.output) return io.output;
  const target = io.stdio[index];
  if (target === 'inherit') return (chunk) => void (index === 1 ? process.stdout : process.stderr).write(chunk);
  if (typeof target !== 'number') return () => {};
  return (chunk) => {
    for (let written = 0; written < chunk.length; ) written += writeSync(target, chunk, written);
  };
}
