import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Mux, type MuxOptions, type MuxStream } from '../../src/protocol/index.ts';
import { FrameReader, type Frame } from '../../src/protocol/mux-frames.ts';

/** Both ends of a real unix socket on a temp path; the socket, its directory and its listener go with the test. */
export async function socketPair(t: TestContext): Promise<[Socket, Socket]> {
  const dir = mkdtempSync(join(tmpdir(), 'brig-mux-'));
  const path = join(dir, 'channel.sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const near = connect(path);
  const far = await accepted;
  server.close();
  t.after(() => {
    near.destroy();
    far.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return [near, far];
}

/** What a mux reported: its errors, whether it closed, and the streams its peer opened. */
export interface Watched {
  mux: Mux;
  errors: Error[];
  accepted: MuxStream[];
  closed: Promise<void>;
}

export function watch(mux: Mux, onStream?: (stream: MuxStream) => void): Watched {
  const watched: Watched = { mux, errors: [], accepted: [], closed: new Promise((resolve) => mux.once('close', resolve)) };
  mux.on('error', (error) => watched.errors.push(error));
  mux.on('stream', (stream) => {
    watched.accepted.push(stream);
    onStream?.(stream);
  });
  return watched;
}

/** The stream the peer opened `index`-th, once it is there (the list is filled by a listener that never misses one). */
export async function acceptedAt(watched: Pick<Watched, 'mux' | 'accepted'>, index: number): Promise<MuxStream> {
  for (;;) {
    const stream = watched.accepted[index];
    if (stream) return stream;
    await once(watched.mux, 'stream');
  }
}

/** Resolves when the stream has closed, however it ended (events.once would reject on its 'error'). */
export async function closedStream(stream: MuxStream): Promise<void> {
  if (!stream.closed) await new Promise((resolve) => stream.once('close', resolve));
}

/** Two muxes over one socket pair, as the host ('client') and envd ('server') will be. */
export async function muxPair(t: TestContext, options: Partial<MuxOptions> = {}): Promise<{ client: Watched; server: Watched }> {
  const [near, far] = await socketPair(t);
  const client = watch(new Mux(near, { ...options, role: 'client' }));
  const server = watch(new Mux(far, { ...options, role: 'server' }));
  t.after(() => {
    client.mux.close();
    server.mux.close();
  });
  return { client, server };
}

export const TYPE = { hello: 0, open: 1, data: 2, window: 3, end: 4, reset: 5 } as const;

/** A frame built by hand, not by the module under test. */
export function frame(type: number, id: number, payload: Buffer | string = '', declaredLength?: number): Buffer {
  const body = Buffer.from(payload);
  const header = Buffer.alloc(9);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(id, 1);
  header.writeUInt32BE(declaredLength ?? body.length, 5);
  return Buffer.concat([header, body]);
}

export function hello(windowBytes = 256 * 1024, version = 1): Buffer {
  const payload = Buffer.alloc(5);
  payload.writeUInt8(version, 0);
  payload.writeUInt32BE(windowBytes, 1);
  return frame(TYPE.hello, 0, payload);
}

export function windowFrame(id: number, bytes: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(bytes, 0);
  return frame(TYPE.window, id, payload);
}

/** A peer with no Mux: the test writes raw bytes and reads the frames the mux answers with. */
export class RawPeer {
  readonly frames: Frame[] = [];
  private readonly reader = new FrameReader();
  private waiters: Array<() => void> = [];

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.reader.push(chunk).map((each) => ({ ...each, payload: Buffer.from(each.payload) })));
      for (const wake of this.waiters) wake();
    });
    socket.on('close', () => {
      for (const wake of this.waiters) wake();
    });
    socket.on('error', () => {});
  }

  /** Resolves once the frames received satisfy `done`; rejects if the socket closes first. */
  async until(done: (frames: Frame[]) => boolean): Promise<Frame[]> {
    while (!done(this.frames)) {
      if (this.socket.destroyed) throw new Error(`the socket closed; frames so far: ${this.frames.map((each) => `${each.type}:${each.id}`).join(' ')}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      this.waiters = [];
    }
    return this.frames;
  }
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Reads a stream to its end, hashing what came. Not with for-await: that
 * destroys the stream at its end, which resets a half-open one.
 */
export function drain(stream: NodeJS.ReadableStream): Promise<{ bytes: number; hash: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    stream.on('error', reject);
    stream.once('end', () => resolve({ bytes, hash: hash.digest('hex') }));
  });
}
