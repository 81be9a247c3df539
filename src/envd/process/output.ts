import type { ProcessEvent } from '../../protocol/index.ts';
import type { StreamWriter } from '../rpc.ts';

/**
 * Output fan-out with backpressure. Every event goes to every attached
 * client stream (a Start, any number of Connects); publishing resolves when
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

  /**
   * Send output to every client, in chunks of at most MAX_CHUNK_BYTES, each
   * encoded once for all of them. Returns null when every client took it at
   * once, or a promise that resolves when all can take more: the caller
   * pauses the source only then (pausing a pipe for every chunk costs more
   * than the copy).
   */
  publishData(kind: OutputKind, data: Buffer): Promise<void> | null {
    const writers = this.liveWriters();
    if (writers.length === 0) return null; // nobody attached: the output is dropped
    let congested = false;
    for (let offset = 0; offset < data.length; offset += MAX_CHUNK_BYTES) {
      const frame = dataFrame(kind, data.subarray(offset, offset + MAX_CHUNK_BYTES));
      for (const writer of writers) if (!writer.write(frame)) congested = true;
    }
    return congested ? this.track(Promise.all(writers.map((writer) => writer.drained())).then(() => undefined)) : null;
  }

  /** The last event: `end` to every client, then each stream is let go. */
  async finish(end: ProcessEvent): Promise<void> {
    const subscribers = [...this.subscribers];
    const writers = this.liveWriters();
    if (writers.length > 0) await this.track(Promise.all(writers.map((writer) => writer.send({ event: end }))).then(() => undefined));
    for (const subscriber of subscribers) subscriber.finish();
  }

  /** Writers of attached clients still there; the ones that left are let go. */
  private liveWriters(): StreamWriter[] {
    const writers: StreamWriter[] = [];
    for (const subscriber of this.subscribers) {
      if (subscriber.writer.closed) subscriber.finish();
      else writers.push(subscriber.writer);
    }
    return writers;
  }

  private async track(pending: Promise<void>): Promise<void> {
    this.inFlight++;
    try {
      await pending;
    } finally {
      this.inFlight--;
    }
  }
}

/**
 * The envelope of `{"event":{"data":{KIND:BASE64}}}`, byte for byte what
 * encodeEnvelope would make, built without JSON.stringify: base64 needs no
 * escaping, and this is the path every byte of output takes.
 */
export function dataFrame(kind: OutputKind, chunk: Buffer): Buffer {
  const base64 = chunk.toString('base64');
  const head = `{"event":{"data":{"${kind}":"`;
  const tail = '"}}}';
  const length = head.length + base64.length + tail.length;
  const frame = Buffer.allocUnsafe(5 + length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(length, 1);
  let offset = 5 + frame.write(head, 5, 'latin1');
  offset += frame.write(base64, offset, 'latin1');
  frame.write(tail, offset, 'latin1');
  return frame;
}
