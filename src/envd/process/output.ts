import type { ProcessEvent } from '../../protocol/index.ts';
import type { StreamWriter } from '../rpc.ts';

/**
 * Output fan-out with backpressure. Every event goes to every attached
 * client stream (a Start, any number of Connects); publish() resolves when
 * all of them can take more, and the caller pauses the child's output until
 * then. So a congested client slows the process down (its pipe fills and its
 * writes block) instead of growing envd's memory; with no client attached,
 * output is dropped, so a background process never stalls.
 */

/** The most bytes one data event carries (pipes and terminals are read in 64 KiB reads anyway). */
export const MAX_CHUNK_BYTES = 64 * 1024;

export type OutputKind = 'stdout' | 'stderr' | 'pty';

/** One client stream attached to a process. `done` resolves when it has had its `end`, or is gone. */
export class Subscriber {
  readonly done: Promise<void>;
  private release!: () => void;

  constructor(
    readonly writer: StreamWriter,
    signal: AbortSignal,
  ) {
    this.done = new Promise((resolve) => (this.release = resolve));
    if (signal.aborted) this.release();
    else signal.addEventListener('abort', () => this.release(), { once: true });
  }

  send(event: ProcessEvent): Promise<void> {
    return this.writer.send({ event });
  }

  /** Let the handler return (the stream then ends). */
  finish(): void {
    this.release();
  }
}

export class Fanout {
  private readonly subscribers = new Set<Subscriber>();
  private inFlight = 0;

  /** Attach a client: its first event is `start`, then whatever the process writes from now on. */
  attach(subscriber: Subscriber, pid: number): void {
    void subscriber.send({ start: { pid } });
    this.subscribers.add(subscriber);
    void subscriber.done.then(() => this.subscribers.delete(subscriber));
  }

  /** True while some client has not yet taken what was last published. */
  get congested(): boolean {
    return this.inFlight > 0;
  }

  /** Send output to every client, in chunks of at most MAX_CHUNK_BYTES; resolves when all can take more. */
  async publishData(kind: OutputKind, data: Buffer): Promise<void> {
    for (let offset = 0; offset < data.length; offset += MAX_CHUNK_BYTES) {
      const chunk = data.subarray(offset, offset + MAX_CHUNK_BYTES).toString('base64');
      await this.publish({ data: kind === 'stdout' ? { stdout: chunk } : kind === 'stderr' ? { stderr: chunk } : { pty: chunk } });
    }
  }

  /** The last event: `end` to every client, then each stream is let go. */
  async finish(end: ProcessEvent): Promise<void> {
    const subscribers = [...this.subscribers];
    await this.publish(end);
    for (const subscriber of subscribers) subscriber.finish();
  }

  private async publish(event: ProcessEvent): Promise<void> {
    const sends: Array<Promise<void>> = [];
    for (const subscriber of this.subscribers) {
      if (subscriber.writer.closed) subscriber.finish();
      else sends.push(subscriber.send(event));
    }
    if (sends.length === 0) return; // nobody attached: the output is dropped
    this.inFlight++;
    try {
      await Promise.all(sends);
    } finally {
      this.inFlight--;
    }
  }
}
