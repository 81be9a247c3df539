import { BrigError } from './errors.ts';

/** The mux's frames on the wire; mux.ts's header and docs/mux.md say what each carries. */
export const FRAME = { hello: 0, open: 1, data: 2, window: 3, end: 4, reset: 5 } as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];

export const MUX_VERSION = 1;
export const HEADER_BYTES = 9;
export const MAX_PAYLOAD_BYTES = 64 * 1024;
/** The most credit a stream may hold, as in HTTP/2: more can only be a peer's arithmetic gone wrong. */
export const MAX_WINDOW_BYTES = 2 ** 31 - 1;
export const MAX_REASON_BYTES = 256;

const NAMES = Object.fromEntries(Object.entries(FRAME).map(([name, type]) => [type, name.toUpperCase()])) as Record<FrameType, string>;

/** The payload length each type may have, [min, max]: anything else is refused before its body is read. */
const PAYLOAD_BYTES: Record<FrameType, readonly [number, number]> = {
  [FRAME.hello]: [5, 5],
  [FRAME.open]: [0, 0],
  [FRAME.data]: [0, MAX_PAYLOAD_BYTES],
  [FRAME.window]: [4, 4],
  [FRAME.end]: [0, 0],
  [FRAME.reset]: [0, MAX_REASON_BYTES],
};

export interface Frame {
  type: FrameType;
  id: number;
  payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

export function frameName(type: FrameType): string {
  return NAMES[type];
}

export function encodeFrame(type: FrameType, id: number, payload: Buffer = EMPTY): Buffer {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  frame.writeUInt8(type, 0);
  frame.writeUInt32BE(id, 1);
  frame.writeUInt32BE(payload.length, 5);
  payload.copy(frame, HEADER_BYTES);
  return frame;
}

export function u32(value: number): Buffer {
  const bytes = Buffer.allocUnsafe(4);
  bytes.writeUInt32BE(value, 0);
  return bytes;
}

export function helloPayload(initialWindowBytes: number): Buffer {
  return Buffer.concat([Buffer.of(MUX_VERSION), u32(initialWindowBytes)]);
}

/** What a peer broke; the whole mux ends with it. */
export function violation(what: string): BrigError {
  return new BrigError('BRIG_MUX_PROTOCOL', `the other end of the mux sent ${what}`, 'it broke the protocol (docs/mux.md): a compromised guest, or one running an envd of another version; the channel was closed and its streams reset');
}

/**
 * Splits the transport's bytes into frames as they complete. Chunks are kept
 * as they came and copied once, when a frame spans them: a peer dribbling a
 * byte at a time cannot make each byte cost a copy of the frame so far.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: { type: FrameType; id: number; length: number } | null = null;

  /** Throws a BRIG_MUX_PROTOCOL BrigError for a header no frame may have. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < HEADER_BYTES) return frames;
        this.header = parseHeader(this.take(HEADER_BYTES));
      }
      if (this.buffered < this.header.length) return frames;
      frames.push({ type: this.header.type, id: this.header.id, payload: this.take(this.header.length) });
      this.header = null;
    }
  }

  /** Bytes of a frame begun but not finished. */
  get pending(): number {
    return this.buffered + (this.header ? HEADER_BYTES : 0);
  }

  private take(bytes: number): Buffer {
    if (bytes === 0) return EMPTY;
    this.buffered -= bytes;
    const first = this.chunks[0] as Buffer;
    if (first.length >= bytes) {
      if (first.length === bytes) this.chunks.shift();
      else this.chunks[0] = first.subarray(bytes);
      return first.subarray(0, bytes);
    }
    const out = Buffer.allocUnsafe(bytes);
    for (let at = 0; at < bytes; ) {
      const chunk = this.chunks[0] as Buffer;
      const used = chunk.copy(out, at, 0, Math.min(chunk.length, bytes - at));
      at += used;
      if (used === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(used);
    }
    return out;
  }
}

function parseHeader(header: Buffer): { type: FrameType; id: number; length: number } {
  const type = header.readUInt8(0);
  const id = header.readUInt32BE(1);
  const length = header.readUInt32BE(5);
  if (!(type in NAMES)) throw violation(`a frame of unknown type ${type}`);
  const [min, max] = PAYLOAD_BYTES[type as FrameType];
  if (length < min || length > max) throw violation(`a ${NAMES[type as FrameType]} frame of ${length} bytes (it must have ${min === max ? min : `${min} to ${max}`})`);
  return { type: type as FrameType, id, length };
}
