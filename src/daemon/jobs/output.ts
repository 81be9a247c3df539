import { StringDecoder } from 'node:string_decoder';
import type { JobStore } from './types.ts';

/**
 * One stream of a job's output on its way to the store: decoded as UTF-8
 * (a character split across chunks stays whole), kept up to the cap and
 * counted past it (never silently: the record says how much was dropped),
 * written in batches (every FLUSH_MS, or sooner when a batch is large) so a
 * chatty program does not rewrite its row for every chunk. Each batch is
 * told to `flushed` as it is stored: live followers see exactly what the
 * store holds, in the same order.
 */

const FLUSH_MS = 100;
const FLUSH_BYTES = 64 * 1024;

export class OutputSink {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private dropped = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: JobStore,
    private readonly jobId: string,
    private readonly stream: 'stdout' | 'stderr',
    /** Bytes still to keep (the cap less what a reattached job kept already). */
    private room: number,
    private readonly flushed: (stream: 'stdout' | 'stderr', text: string) => void,
  ) {}

  write(chunk: Buffer): void {
    const kept = chunk.subarray(0, Math.max(0, this.room));
    this.room -= kept.length;
    this.dropped += chunk.length - kept.length;
    this.pending += this.decoder.write(kept);
    if (Buffer.byteLength(this.pending) >= FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Everything written so far into the store; `end` also what the decoder holds of a cut character. */
  flush(end = false): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (end) this.pending += this.decoder.end();
    if (this.pending === '' && this.dropped === 0) return;
    const text = this.pending;
    this.store.appendJobOutput(this.jobId, this.stream, text, this.dropped);
    this.pending = '';
    this.dropped = 0;
    if (text !== '') this.flushed(this.stream, text);
  }
}
