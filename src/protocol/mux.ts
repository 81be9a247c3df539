/**
 * Many streams over one ordered byte stream: the host and envd in a microVM
 * share one virtio-serial port (no network device, no vsock), and each HTTP
 * connection between them is a stream of it. The same module runs on both
 * ends; the guest's end is hostile, so every frame is checked, every buffer
 * bounded, and no stream can hold up another. docs/mux.md is the protocol note.
 *
 * Wire: frames of type (u8) | stream id (u32 BE) | payload length (u32 BE) | payload.
 *   HELLO  0  id 0, payload version (u8, 1) | the sender's initial window (u32):
 *             each side's first frame (frames before it are dropped); another one
 *             later means the peer restarted, and is answered with a HELLO
 *   OPEN   1  a new stream; the 'client' side picks odd ids, the 'server' side even
 *   DATA   2  up to 64 KiB of the stream's bytes, never more than the sender's credit
 *   WINDOW 3  payload u32: that many more bytes the receiver of this frame may send
 *   END    4  the sender will write no more on the stream (half-close)
 *   RESET  5  abort the stream both ways; payload an optional reason (≤ 256 bytes)
 * Each stream's credit starts at the receiver's HELLO window and is topped up
 * by WINDOW as the receiver's reader takes the bytes. A malformed frame, DATA
 * past the credit, a payload over 64 KiB, an unknown type: the whole mux
 * fails with BRIG_MUX_PROTOCOL. An OPEN past maxStreams is answered with
 * RESET; frames for ids not open (crossing a RESET) are dropped.
 */
import { EventEmitter } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { Duplex } from 'node:stream';
import { BrigError, isBrigError } from './errors.ts';
import { FRAME, FrameReader, MAX_PAYLOAD_BYTES, MAX_WINDOW_BYTES, MUX_VERSION, encodeFrame, frameName, helloPayload, u32, violation } from './mux-frames.ts';
import type { Frame } from './mux-frames.ts';
import { MuxStream, resetError } from './mux-stream.ts';
import type { StreamCarrier } from './mux-stream.ts';

export type { MuxStream };

export interface MuxOptions {
  /** Which ids this side opens streams with ('client' odd, 'server' even), so both sides may open without colliding. */
  role: 'client' | 'server';
  /** Bytes the peer may send on a stream before this side's reader takes them; also what one stream can hold. @default 256 KiB */
  initialWindowBytes?: number;
  /** Streams the peer may have open on this side at once; an OPEN beyond them is answered with RESET. @default 1024 */
  maxStreams?: number;
}

interface MuxEvents {
  /** The peer opened a stream. With no listener it is reset at once. */
  stream: [stream: MuxStream];
  error: [error: Error];
  close: [];
}

const DEFAULT_WINDOW_BYTES = 256 * 1024;
const DEFAULT_MAX_STREAMS = 1024;
/**
 * Frames this side answers with (WINDOW, END, RESET) are written even when the
 * transport is full, and a peer that sends but never reads would let them
 * pile up; more than this many unread bytes of them means it does not read.
 */
const MAX_UNREAD_ANSWER_BYTES = 1024 * 1024;
const LAST_ID = 0xffffffff;

export class Mux extends EventEmitter<MuxEvents> {
  private readonly streams = new Map<number, MuxStream>();
  /** Streams with bytes to send and credit to send them, in turn. */
  private readonly ready = new Set<MuxStream>();
  private readonly reader = new FrameReader();
  private readonly windowBytes: number;
  private readonly maxStreams: number;
  private readonly firstId: number;
  private nextId: number;
  /** The peer's initial window, from its HELLO; null until then. */
  private peerWindow: number | null = null;
  private openedByPeer = 0;
  private blocked = false;
  private pumping = false;
  private closed = false;
  private readonly carrier: StreamCarrier = {
    wantsToSend: (stream) => {
      if (this.streams.get(stream.id) !== stream) return;
      this.ready.add(stream);
      this.pump();
    },
    sendEnd: (stream) => this.sendFor(stream, FRAME.end),
    sendWindow: (stream, bytes) => this.sendFor(stream, FRAME.window, u32(bytes)),
    release: (stream, reset) => this.release(stream, reset),
  };

  constructor(
    private readonly transport: Duplex,
    options: MuxOptions,
  ) {
    super();
    this.windowBytes = options.initialWindowBytes ?? DEFAULT_WINDOW_BYTES;
    this.maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
    if (!Number.isInteger(this.windowBytes) || this.windowBytes < 1 || this.windowBytes > MAX_WINDOW_BYTES) throw new BrigError('BRIG_INTERNAL', `a mux's initial window of ${this.windowBytes} bytes`, `give 1 to ${MAX_WINDOW_BYTES} bytes`);
    if (!Number.isInteger(this.maxStreams) || this.maxStreams < 1) throw new BrigError('BRIG_INTERNAL', `a mux's maxStreams of ${this.maxStreams}`, 'give a whole number of at least 1');
    this.firstId = options.role === 'client' ? 1 : 2;
    this.nextId = this.firstId;
    transport.on('data', this.onData);
    transport.on('drain', this.onDrain);
    transport.on('end', this.onEnd);
    transport.on('error', this.onError);
    transport.on('close', this.onClose);
    if (transport.destroyed) process.nextTick(this.onClose);
    else this.send(encodeFrame(FRAME.hello, 0, helloPayload(this.windowBytes)));
  }

  /** Streams open on this side, whoever opened them. */
  get openStreams(): number {
    return this.streams.size;
  }

  /** A new stream to the peer. On a closed mux it is one that fails with ECONNRESET, as a socket to nowhere would. */
  open(): MuxStream {
    const id = this.allocateId();
    const stream = new MuxStream(this.carrier, id, false, this.windowBytes, this.peerWindow ?? 0);
    if (this.closed) {
      process.nextTick(() => stream.abort(resetError('the mux is closed')));
      return stream;
    }
    this.streams.set(id, stream);
    this.send(encodeFrame(FRAME.open, id));
    return stream;
  }

  /** Resets every stream and ends the transport. */
  close(): void {
    for (const stream of [...this.streams.values()]) stream.destroy();
    this.shutdown(null, null);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closed) return;
    try {
      for (const frame of this.reader.push(chunk)) {
        this.handle(frame);
        if (this.closed) return;
      }
    } catch (error) {
      if (isBrigError(error) && error.code === 'BRIG_MUX_PROTOCOL') return this.fail(error);
      // A stream's reader threw from a 'data' handler; the rest of this chunk's frames are lost with it, so the mux cannot go on.
      this.fail(error as Error);
      throw error;
    }
  };

  private handle(frame: Frame): void {
    const { type, id, payload } = frame;
    if (type === FRAME.hello) return this.onHello(id, payload);
    // Before the peer's HELLO, frames are from the peer this side knew before it restarted: that
    // peer's streams are gone, and it resets them itself when this side's HELLO reaches it.
    if (this.peerWindow === null) return;
    if (id === 0) throw violation(`${frameName(type)} on stream 0, which only HELLO uses`);
    if (type === FRAME.open) return this.onOpen(id);
    const stream = this.streams.get(id);
    // Not open (any more): a frame that crossed a RESET, or one for a stream refused.
    if (!stream) return;
    if (type === FRAME.data) return stream.receive(payload);
    if (type === FRAME.window) return stream.addCredit(payload.readUInt32BE(0));
    if (type === FRAME.end) return stream.receiveEnd();
    stream.abort(resetError(`stream ${id} was reset by the other end${describeReason(payload)}`));
  }

  private onHello(id: number, payload: Buffer): void {
    if (id !== 0) throw violation(`HELLO on stream ${id}`);
    const version = payload.readUInt8(0);
    if (version !== MUX_VERSION) throw violation(`HELLO of protocol version ${version}; this side speaks ${MUX_VERSION}`);
    const window = payload.readUInt32BE(1);
    if (window > MAX_WINDOW_BYTES) throw violation(`HELLO with a window of ${window} bytes, over ${MAX_WINDOW_BYTES}`);
    const restarted = this.peerWindow !== null;
    this.peerWindow = window;
    for (const stream of [...this.streams.values()]) {
      // A restarted peer knows none of the old ids, and may already reuse them: reset them here only, sending nothing.
      if (restarted) stream.abort(resetError(`stream ${stream.id} was reset: the other end restarted`));
      else if (window > 0) stream.addCredit(window);
    }
    // The restarted peer drops every frame until it has this side's HELLO.
    if (restarted) this.send(encodeFrame(FRAME.hello, 0, helloPayload(this.windowBytes)));
  }

  private onOpen(id: number): void {
    if (id % 2 === this.firstId % 2) throw violation(`OPEN of stream ${id}, an id only this side opens`);
    if (this.streams.has(id)) throw violation(`OPEN of stream ${id}, which is already open`);
    if (this.openedByPeer >= this.maxStreams) return this.send(encodeFrame(FRAME.reset, id, Buffer.from(`too many streams (${this.maxStreams})`)));
    const stream = new MuxStream(this.carrier, id, true, this.windowBytes, this.peerWindow ?? 0);
    this.streams.set(id, stream);
    this.openedByPeer++;
    if (!this.emit('stream', stream)) stream.destroy();
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id + 2 > LAST_ID ? this.firstId : id + 2;
      if (!this.streams.has(id)) return id;
    }
  }

  private release(stream: MuxStream, reset: boolean): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.ready.delete(stream);
    if (stream.openedByPeer) this.openedByPeer--;
    if (reset) this.send(encodeFrame(FRAME.reset, stream.id));
  }

  private sendFor(stream: MuxStream, type: typeof FRAME.end | typeof FRAME.window, payload?: Buffer): void {
    if (this.streams.get(stream.id) === stream) this.send(encodeFrame(type, stream.id, payload));
  }

  /** Feeds the ready streams to the transport a frame each in turn, until it is full. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.blocked && !this.closed) {
        const stream = this.ready.values().next().value;
        if (!stream) break;
        this.ready.delete(stream);
        stream.sendNext((payload) => this.send(encodeFrame(FRAME.data, stream.id, payload)));
        if (stream.canSend && this.streams.get(stream.id) === stream) this.ready.add(stream);
      }
    } finally {
      this.pumping = false;
    }
  }

  private send(frame: Buffer): void {
    if (this.closed || !this.transport.writable) return;
    if (!this.transport.write(frame)) this.blocked = true;
    // DATA is written only while the transport takes it, so what piles up past its high-water mark is answers.
    const unread = this.transport.writableLength - this.transport.writableHighWaterMark - MAX_PAYLOAD_BYTES;
    if (unread > MAX_UNREAD_ANSWER_BYTES) this.fail(violation(`frames whose answers it does not read (${unread} bytes wait)`));
  }

  private readonly onDrain = (): void => {
    this.blocked = false;
    this.pump();
  };

  private readonly onEnd = (): void => {
    if (this.reader.pending > 0) this.fail(violation(`a frame cut short: the channel ended ${this.reader.pending} bytes into it`));
    else this.shutdown(null, resetError('the mux channel ended'));
  };

  private readonly onError = (error: Error): void => this.fail(error);

  private readonly onClose = (): void => this.shutdown(null, resetError('the mux channel closed'));

  private fail(error: Error): void {
    this.shutdown(error, resetError(`the mux failed: ${error.message}`, error));
  }

  /** Ends the mux once: every stream destroyed, the transport ended (or destroyed on an error), 'error' then 'close'. */
  private shutdown(error: Error | null, streamError: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    for (const stream of [...this.streams.values()]) {
      if (streamError) stream.abort(streamError);
      else stream.destroy();
    }
    this.streams.clear();
    this.ready.clear();
    if (error) this.transport.destroy();
    else this.transport.end();
    process.nextTick(() => {
      if (error) this.emit('error', error);
      this.emit('close');
    });
  }
}

/** A hostile peer's reason, made safe to print. */
function describeReason(payload: Buffer): string {
  if (payload.length === 0) return '';
  return `: ${payload.toString('utf8').replace(/[^\x20-\x7e]/g, '?')}`;
}

/**
 * Two byte streams joined both ways (a connection and a mux stream): bytes
 * and half-closes pass through; either side's error or close ends the other.
 */
export function joinStreams(a: Duplex, b: Duplex): void {
  a.pipe(b).pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
}

/**
 * A mux's transport on an open fd that is not a socket (in a VM guest, a
 * virtio-serial port: a character device): fs streams, which libuv serves
 * from its thread pool. The fd stays open when the streams end.
 */
export function fdTransport(fd: number): Duplex {
  return Duplex.from({ readable: createReadStream('', { fd, autoClose: false }), writable: createWriteStream('', { fd, autoClose: false }) });
}
