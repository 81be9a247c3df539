import { Duplex } from 'node:stream';
import { Inbox } from './mux-inbox.ts';
import { MAX_PAYLOAD_BYTES, MAX_WINDOW_BYTES, violation } from './mux-frames.ts';

/** What a stream asks of the mux that carries it. */
export interface StreamCarrier {
  /** The stream has bytes and credit: feed it to the transport in its turn. */
  wantsToSend(stream: MuxStream): void;
  sendEnd(stream: MuxStream): void;
  sendWindow(stream: MuxStream, bytes: number): void;
  /** The stream is gone: forget its id, and reset it at the peer when `reset`. */
  release(stream: MuxStream, reset: boolean): void;
}

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  callback: (error?: Error | null) => void;
}

/** The error a stream ends with when it is reset, shaped like a socket's. */
export function resetError(message: string, cause?: Error): NodeJS.ErrnoException {
  return Object.assign(new Error(message, cause ? { cause } : undefined), { code: 'ECONNRESET' });
}

/**
 * One logical stream of a Mux, a Duplex. Writes leave as DATA frames only
 * within the credit the peer gave (a write's callback waits for it); what
 * arrives is held until the reader asks (_read), and the peer is given more
 * credit only for bytes the reader has taken, so what one stream holds is
 * bounded by its window however slow its reader is.
 */
export class MuxStream extends Duplex {
  /** Peer credit: bytes this side may still send. */
  private sendCredit: number;
  /** Bytes the peer may still send before it needs more credit. */
  private receiveCredit: number;
  /** Bytes pushed to the reader since it last asked for more. */
  private pushedUnasked = 0;
  private readonly inbox = new Inbox();
  private readWanted = false;
  private localEnded = false;
  private remoteEnded = false;
  /** Reset by the other end, or its mux is gone: no RESET is owed. */
  private aborted = false;
  private outgoing: PendingWrite | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** As net.Socket's: the idle time set by setTimeout, which http.Agent reads. */
  timeout: number | undefined;

  constructor(
    private readonly carrier: StreamCarrier,
    readonly id: number,
    /** Whether the peer opened it (and so counts against this side's maxStreams). */
    readonly openedByPeer: boolean,
    private readonly windowBytes: number,
    initialCredit: number,
  ) {
    // A high-water mark of 1: _read is asked only once the reader has taken what was pushed, the moment to give credit back.
    super({ allowHalfOpen: true, readableHighWaterMark: 1 });
    this.sendCredit = initialCredit;
    this.receiveCredit = windowBytes;
  }

  /** Bytes received and not yet read: never more than the window. */
  get unreadBytes(): number {
    return this.inbox.bytes + this.readableLength;
  }

  get canSend(): boolean {
    return this.outgoing !== null && this.sendCredit > 0 && !this.destroyed;
  }

  /** Hands the next DATA payload to `send`; a write whose bytes are all sent is done. */
  sendNext(send: (payload: Buffer) => void): void {
    const pending = this.outgoing;
    if (!pending || this.sendCredit === 0) return;
    const size = Math.min(pending.chunk.length - pending.offset, this.sendCredit, MAX_PAYLOAD_BYTES);
    send(pending.chunk.subarray(pending.offset, pending.offset + size));
    pending.offset += size;
    this.sendCredit -= size;
    this.touch();
    if (pending.offset < pending.chunk.length) return;
    this.outgoing = null;
    pending.callback();
  }

  addCredit(bytes: number): void {
    if (bytes === 0) throw violation(`a WINDOW of 0 bytes on stream ${this.id}`);
    if (this.sendCredit + bytes > MAX_WINDOW_BYTES) throw violation(`a WINDOW that takes stream ${this.id}'s credit past ${MAX_WINDOW_BYTES} bytes`);
    this.sendCredit += bytes;
    if (this.canSend) this.carrier.wantsToSend(this);
  }

  receive(payload: Buffer): void {
    if (this.remoteEnded) throw violation(`DATA on stream ${this.id} after its END`);
    if (payload.length > this.receiveCredit) throw violation(`${payload.length} bytes of DATA on stream ${this.id}, which had ${this.receiveCredit} bytes of window left`);
    this.receiveCredit -= payload.length;
    this.inbox.append(payload);
    this.touch();
    if (this.readWanted) this.deliver();
  }

  receiveEnd(): void {
    if (this.remoteEnded) throw violation(`a second END on stream ${this.id}`);
    this.remoteEnded = true;
    if (this.readWanted) this.deliver();
  }

  /** The peer reset the stream (or restarted, or the mux failed): no RESET goes back. */
  abort(error: Error): void {
    this.aborted = true;
    this.destroy(error);
  }

  override _read(): void {
    // The reader has taken everything pushed before: that much may come again.
    this.pushedUnasked = 0;
    this.readWanted = true;
    this.deliver();
    if (this.remoteEnded || this.destroyed) return;
    const grant = this.windowBytes - this.receiveCredit - this.inbox.bytes - this.pushedUnasked;
    // Grants are batched to a quarter window; a smaller one waits, and the peer still holds credit then.
    if (grant < Math.max(1, this.windowBytes >> 2)) return;
    this.receiveCredit += grant;
    this.carrier.sendWindow(this, grant);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (chunk.length === 0) return callback();
    this.outgoing = { chunk, offset: 0, callback };
    if (this.canSend) this.carrier.wantsToSend(this);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.localEnded = true;
    this.carrier.sendEnd(this);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.carrier.release(this, !this.aborted && !(this.localEnded && this.remoteEnded));
    this.inbox.clear();
    this.stopIdleTimer();
    const pending = this.outgoing;
    this.outgoing = null;
    pending?.callback(error ?? resetError(`stream ${this.id} was destroyed before this write was sent`));
    callback(error);
  }

  private deliver(): void {
    if (this.inbox.bytes > 0) {
      this.readWanted = false;
      const bytes = this.inbox.takeAll();
      this.pushedUnasked += bytes.length;
      this.push(bytes);
    } else if (this.remoteEnded) {
      this.readWanted = false;
      this.push(null);
    }
  }

  // What http.Server and http.Agent call on a connection, as on a net.Socket. Keep-alive, Nagle and
  // event-loop references are the transport's business, so those do nothing; the idle timeout is real.

  setKeepAlive(): this {
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  /** Emits 'timeout' after `ms` with nothing sent or received (0 turns it off), as net.Socket does. */
  setTimeout(ms: number, callback?: () => void): this {
    this.timeout = ms;
    if (callback && ms === 0) this.removeListener('timeout', callback);
    else if (callback) this.once('timeout', callback);
    this.stopIdleTimer();
    if (ms > 0 && !this.destroyed) this.idleTimer = setTimeout(() => this.emit('timeout'), ms).unref();
    return this;
  }

  private touch(): void {
    this.idleTimer?.refresh();
  }

  private stopIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
