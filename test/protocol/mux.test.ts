import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Mux, type MuxStream } from '../../src/protocol/index.ts';
import { RawPeer, TYPE, acceptedAt, closedStream, drain, frame, hello, muxPair, sha256, socketPair, watch, windowFrame } from '../helpers/mux.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const WINDOW = 256 * KiB;

/** Writes `data` in pieces of varying size, waiting for the stream as a well-behaved writer does, then ends it. */
function writeInPieces(stream: MuxStream, data: Buffer): Promise<void> {
  const pieces: Buffer[] = [];
  for (let at = 0, size = 1; at < data.length; at += size, size = (size * 7 + 13) % (96 * KiB) || 1) pieces.push(data.subarray(at, at + size));
  return pipeline(Readable.from(pieces), stream);
}

/** Answers every byte a stream brings with the same byte; ends when it ends. */
function echo(stream: MuxStream): void {
  stream.on('error', () => {});
  stream.pipe(stream);
}

describe('the stream multiplexer between two muxes', () => {
  test('50 concurrent streams, opened from both sides, each echo 2 MiB of random data intact and in order', async (t) => {
    const { client, server } = await muxPair(t);
    client.mux.on('stream', echo);
    server.mux.on('stream', echo);
    const trips = Array.from({ length: 50 }, async (_, index) => {
      const stream = (index % 2 === 0 ? client : server).mux.open();
      const data = randomBytes(2 * MiB);
      const [, back] = await Promise.all([writeInPieces(stream, data), drain(stream)]);
      assert.equal(back.bytes, data.length, `stream ${stream.id}: bytes`);
      assert.equal(back.hash, sha256(data), `stream ${stream.id}: content`);
      await closedStream(stream);
    });
    await Promise.all(trips);
    await Promise.all([...client.accepted, ...server.accepted].map(closedStream));
    assert.equal(client.accepted.length + server.accepted.length, 50);
    assert.deepEqual([client.mux.openStreams, server.mux.openStreams], [0, 0]);
    assert.deepEqual([...client.errors, ...server.errors], []);
  });

  test('a stream whose reader never reads holds its window and no more, and does not stop another moving 10 MiB', async (t) => {
    const { client, server } = await muxPair(t);
    const stalled = client.mux.open();
    const busy = client.mux.open();
    const stalledFar = await acceptedAt(server, 0);
    const busyFar = await acceptedAt(server, 1);
    stalledFar.on('error', () => {});
    const stalledData = randomBytes(MiB);
    let stalledWriteDone = false;
    stalled.write(stalledData, () => (stalledWriteDone = true));

    const busyData = randomBytes(10 * MiB);
    let mostHeld = 0;
    busyFar.on('data', () => (mostHeld = Math.max(mostHeld, stalledFar.unreadBytes)));
    const [, got] = await Promise.all([writeInPieces(busy, busyData), drain(busyFar)]);
    assert.equal(got.hash, sha256(busyData));
    // The stalled stream's first frames went out beside busy's first ones, so its window is full by now: exactly full.
    assert.equal(stalledFar.unreadBytes, WINDOW);
    assert.ok(mostHeld <= WINDOW, `held ${mostHeld} bytes`);
    assert.equal(stalledWriteDone, false, 'the write waits for credit');

    // Reading it gives the credit back, and the rest comes.
    stalled.end();
    const rest = await drain(stalledFar);
    assert.equal(rest.hash, sha256(stalledData));
    assert.equal(stalledWriteDone, true);
  });

  test('half-close: the side that ended still reads the reply; both ends close both streams cleanly, either side opening', async (t) => {
    const { client, server } = await muxPair(t);
    const answer = async (stream: MuxStream) => {
      const question = await drain(stream);
      stream.write(`got ${question.bytes} bytes; `);
      setImmediate(() => stream.end('and this came after your end'));
    };
    server.mux.on('stream', answer);
    client.mux.on('stream', answer);
    for (const opener of [client, server]) {
      const stream = opener.mux.open();
      stream.end('question');
      const reply = await drain(stream);
      assert.equal(reply.bytes, 'got 8 bytes; and this came after your end'.length);
      await closedStream(stream);
      assert.equal(stream.errored, null);
    }
    await Promise.all([...client.accepted, ...server.accepted].map(closedStream));
    assert.ok([...client.accepted, ...server.accepted].every((stream) => stream.errored === null));
    assert.deepEqual([client.mux.openStreams, server.mux.openStreams], [0, 0]);
  });

  test("destroy() on one side resets the peer's stream (ECONNRESET), fails its pending write, and the others go on", async (t) => {
    const { client, server } = await muxPair(t);
    const doomed = client.mux.open();
    const other = client.mux.open();
    doomed.write('some bytes first');
    const doomedFar = await acceptedAt(server, 0);
    const otherFar = await acceptedAt(server, 1);
    echo(otherFar);
    await once(doomedFar, 'readable');
    const farError = once(doomedFar, 'error');
    doomed.destroy();
    const [error] = (await farError) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ECONNRESET');
    assert.match(error.message, /reset by the other end/);
    await closedStream(doomedFar);

    // The far side destroys one in the middle of a write the near side cannot finish (no credit for 1 MiB).
    const second = client.mux.open();
    const secondFar = await acceptedAt(server, 2);
    const writeFailed = new Promise<Error | null | undefined>((resolve) => second.write(randomBytes(MiB), resolve));
    second.on('error', () => {});
    await once(secondFar, 'readable');
    secondFar.destroy();
    assert.equal(((await writeFailed) as NodeJS.ErrnoException).code, 'ECONNRESET');

    const data = randomBytes(MiB);
    const [, back] = await Promise.all([writeInPieces(other, data), drain(other)]);
    assert.equal(back.hash, sha256(data));
    await Promise.all([closedStream(other), closedStream(otherFar)]);
    assert.deepEqual([client.mux.openStreams, server.mux.openStreams], [0, 0]);
    assert.deepEqual([...client.errors, ...server.errors], []);
  });

  test("http.Server fed streams with emit('connection'), http.Agent opening them: 20 parallel streamed requests, then keep-alive reuse", async (t) => {
    const { client, server } = await muxPair(t);
    const httpServer = http.createServer(async (request, response) => {
      const body = await drain(request);
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.write(`${body.bytes} ${body.hash}\n`);
      for (let index = 0; index < 64; index++) {
        if (!response.write(Buffer.alloc(4 * KiB, index))) await once(response, 'drain');
      }
      response.end();
    });
    // envd's keep-alive timeout would close idle streams on a slow machine, and the agent would open new ones.
    httpServer.keepAliveTimeout = 0;
    server.mux.on('stream', (stream) => httpServer.emit('connection', stream));
    let opened = 0;
    class MuxAgent extends http.Agent {
      override createConnection(): MuxStream {
        opened++;
        return client.mux.open();
      }
    }
    const agent = new MuxAgent({ keepAlive: true, maxSockets: 20 });
    t.after(() => agent.destroy());

    const post = (size: number) =>
      new Promise<{ reused: boolean; line: string; bytes: number; sent: string }>((resolve, reject) => {
        const data = randomBytes(size);
        const request = http.request({ agent, method: 'POST', path: '/echo', headers: { 'transfer-encoding': 'chunked' } }, async (response) => {
          const chunks: Buffer[] = [];
          for await (const chunk of response) chunks.push(chunk as Buffer);
          const all = Buffer.concat(chunks);
          const newline = all.indexOf('\n');
          resolve({ reused: request.reusedSocket, line: all.subarray(0, newline).toString(), bytes: all.length - newline - 1, sent: `${size} ${sha256(data)}` });
        });
        request.on('error', reject);
        pipeline(Readable.from([data.subarray(0, size / 2), data.subarray(size / 2)]), request).catch(reject);
      });

    const parallel = await Promise.all(Array.from({ length: 20 }, () => post(512 * KiB)));
    for (const result of parallel) {
      assert.equal(result.line, result.sent);
      assert.equal(result.bytes, 64 * 4 * KiB);
    }
    assert.equal(opened, 20);
    const sequential = [];
    for (let index = 0; index < 5; index++) sequential.push(await post(64 * KiB));
    assert.deepEqual(sequential.map((result) => result.reused), [true, true, true, true, true]);
    assert.equal(opened, 20, 'no stream opened for a kept-alive request');
    assert.equal(server.accepted.length, 20);

    agent.destroy();
    await Promise.all(server.accepted.map(closedStream));
    assert.deepEqual([client.mux.openStreams, server.mux.openStreams], [0, 0]);
    assert.deepEqual([...client.errors, ...server.errors], []);
  });

  test("an idle stream emits 'timeout' after setTimeout's time, so http.Server's keep-alive timeout closes it", async (t) => {
    const { client, server } = await muxPair(t);
    const httpServer = http.createServer((_request, response) => response.end('ok'));
    httpServer.keepAliveTimeout = 50;
    server.mux.on('stream', (stream) => httpServer.emit('connection', stream));
    // By hand: http.Agent would drop the connection itself, as the server's Keep-Alive hint rounds 50 ms down to 0 s.
    const near = client.mux.open();
    near.on('error', () => {});
    near.write('GET / HTTP/1.1\r\nhost: envd\r\n\r\n');
    const [reply] = (await once(near, 'data')) as [Buffer];
    assert.match(reply.toString(), /^HTTP\/1.1 200 OK[^]*\r\n\r\nok$/);
    const far = await acceptedAt(server, 0);
    let timedOut = false;
    far.once('timeout', () => (timedOut = true));
    await Promise.all([closedStream(far), closedStream(near)]);
    assert.equal(timedOut, true);
    assert.ok((far.timeout ?? 0) >= 50, `timeout ${far.timeout}`);
  });

  test("close() destroys its streams, resets the far side's (ECONNRESET), ends the transport; each mux closes once", async (t) => {
    const { client, server } = await muxPair(t);
    const stream = client.mux.open();
    const far = await acceptedAt(server, 0);
    const nearErrors: Error[] = [];
    stream.on('error', (error) => nearErrors.push(error));
    const farError = once(far, 'error');
    let closes = 0;
    client.mux.on('close', () => closes++);
    client.mux.close();
    await Promise.all([client.closed, server.closed, closedStream(stream)]);
    // The closing side asked for it: its streams end quietly, as a destroyed socket does.
    assert.deepEqual(nearErrors, []);
    assert.equal(((await farError)[0] as NodeJS.ErrnoException).code, 'ECONNRESET');
    assert.equal(closes, 1);
    assert.deepEqual([client.mux.openStreams, server.mux.openStreams], [0, 0]);
    assert.deepEqual([...client.errors, ...server.errors], []);
    const late = client.mux.open();
    assert.equal(((await once(late, 'error'))[0] as NodeJS.ErrnoException).code, 'ECONNRESET');
  });
});

/** A Mux on one end of a socket, a RawPeer on the other: the peer writes whatever it likes. */
async function hostile(t: TestContext, options: { maxStreams?: number } = {}) {
  const [near, far] = await socketPair(t);
  const watched = watch(new Mux(far, { role: 'server', ...options }), (stream) => stream.on('error', () => {}));
  return { ...watched, peer: new RawPeer(near) };
}

describe('a hostile peer, writing raw frames', () => {
  const opened = Buffer.concat([hello(), frame(TYPE.open, 1)]);
  const violations: Array<[name: string, bytes: Buffer, message: RegExp]> = [
    ['a payload length over 64 KiB', Buffer.concat([opened, frame(TYPE.data, 1, '', 64 * KiB + 1)]), /DATA frame of 65537 bytes/],
    ['DATA beyond the window', Buffer.concat([opened, ...Array.from({ length: 4 }, () => frame(TYPE.data, 1, Buffer.alloc(64 * KiB))), frame(TYPE.data, 1, 'x')]), /1 bytes of DATA on stream 1, which had 0 bytes of window left/],
    ['an unknown frame type', Buffer.concat([opened, frame(9, 1)]), /unknown type 9/],
    ['a frame cut short, then the end of the channel', Buffer.concat([opened, frame(TYPE.data, 1, 'only ten.', 100)]), /cut short: the channel ended 18 bytes into it/],
    ['a HELLO of another version', hello(WINDOW, 2), /protocol version 2/],
    ['a HELLO on a stream id', Buffer.concat([hello(), frame(TYPE.hello, 5, hello().subarray(9))]), /HELLO on stream 5/],
    ['a frame other than HELLO on id 0', Buffer.concat([opened, frame(TYPE.data, 0, 'x')]), /DATA on stream 0/],
    ['an OPEN of an id only the mux side picks', Buffer.concat([hello(), frame(TYPE.open, 2)]), /OPEN of stream 2, an id only this side opens/],
    ['an OPEN of a stream already open', Buffer.concat([opened, frame(TYPE.open, 1)]), /already open/],
    ['DATA after END', Buffer.concat([opened, frame(TYPE.end, 1), frame(TYPE.data, 1, 'x')]), /after its END/],
    ['a WINDOW past 2^31-1', Buffer.concat([opened, windowFrame(1, 2 ** 31 - 1)]), /credit past/],
    ['a control frame of the wrong size', Buffer.concat([opened, frame(TYPE.window, 1, 'xx')]), /WINDOW frame of 2 bytes/],
  ];

  for (const [name, bytes, message] of violations) {
    test(`${name}: BRIG_MUX_PROTOCOL, every stream destroyed, the channel closed`, async (t) => {
      const { mux, errors, accepted, closed, peer } = await hostile(t);
      // The end after the bytes: a mux that missed the violation would close cleanly, not hang.
      peer.socket.end(bytes);
      await closed;
      assert.equal(errors.length, 1, `errors: ${errors.map((error) => error.message).join('; ')}`);
      assert.equal((errors[0] as NodeJS.ErrnoException).code, 'BRIG_MUX_PROTOCOL');
      assert.match((errors[0] as Error).message, message);
      assert.equal(mux.openStreams, 0);
      assert.ok(accepted.every((stream) => stream.destroyed));
      await once(peer.socket, 'close');
    });
  }

  test('OPENs past maxStreams are answered with RESET; the mux survives and takes new ones as old ones close', async (t) => {
    const { mux, errors, accepted, closed, peer } = await hostile(t, { maxStreams: 4 });
    const ids = Array.from({ length: 10 }, (_, index) => 2 * index + 1);
    // DATA for a refused stream is dropped, not an error.
    peer.socket.write(Buffer.concat([hello(), ...ids.map((id) => frame(TYPE.open, id)), frame(TYPE.data, 11, 'dropped'), frame(TYPE.data, 1, 'kept'), frame(TYPE.end, 1)]));
    const resets = (frames: typeof peer.frames) => frames.filter((each) => each.type === TYPE.reset);
    await peer.until((frames) => resets(frames).length === 6);
    assert.deepEqual(resets(peer.frames).map((each) => each.id), ids.slice(4));
    assert.match(resets(peer.frames)[0]?.payload.toString() ?? '', /too many streams \(4\)/);
    assert.deepEqual(accepted.map((stream) => stream.id), ids.slice(0, 4));
    assert.equal((await drain(accepted[0] as MuxStream)).bytes, 4);

    (accepted[1] as MuxStream).destroy();
    peer.socket.write(frame(TYPE.open, 21));
    await peer.until((frames) => frames.some((each) => each.type === TYPE.reset && each.id === 3));
    await acceptedAt({ mux, accepted }, 4);
    assert.equal(accepted[4]?.id, 21);
    assert.equal(mux.openStreams, 4);

    peer.socket.end();
    await closed;
    assert.deepEqual(errors, []);
    assert.ok(accepted.every((stream) => stream.destroyed));
  });

  test('a HELLO mid-session (the peer restarted) resets every open stream without a RESET back, and the session goes on', async (t) => {
    const { mux, errors, accepted, peer } = await hostile(t);
    peer.socket.write(Buffer.concat([hello(), frame(TYPE.open, 1), frame(TYPE.open, 3)]));
    const own = mux.open();
    const resets = [own, await acceptedAt({ mux, accepted }, 0), await acceptedAt({ mux, accepted }, 1)].map((stream) => once(stream, 'error'));
    await peer.until((frames) => frames.some((each) => each.type === TYPE.open && each.id === 2));

    // The restarted peer opens id 1 again at once: it must be a new stream, not hit by a RESET meant for the old one.
    peer.socket.write(Buffer.concat([hello(), frame(TYPE.open, 1)]));
    for (const [error] of (await Promise.all(resets)) as Array<[NodeJS.ErrnoException]>) {
      assert.equal(error.code, 'ECONNRESET');
      assert.match(error.message, /restarted/);
    }
    const fresh = await acceptedAt({ mux, accepted }, 2);
    assert.equal(fresh.id, 1);
    assert.equal(mux.openStreams, 1);
    fresh.end('fresh');
    await peer.until((frames) => frames.some((each) => each.type === TYPE.end && each.id === 1));
    assert.deepEqual(peer.frames.filter((each) => each.type === TYPE.reset).map((each) => each.id), []);
    // ...and it is told this side's HELLO again (it drops everything until it has one), before the new stream's frames.
    const hellos = peer.frames.flatMap((each, index) => (each.type === TYPE.hello ? [index] : []));
    assert.equal(hellos.length, 2);
    assert.ok((hellos[1] ?? Infinity) < peer.frames.findIndex((each) => each.type === TYPE.data && each.id === 1));
    assert.equal(peer.frames.find((each) => each.type === TYPE.data && each.id === 1)?.payload.toString(), 'fresh');
    assert.equal(accepted.length, 3);
    assert.deepEqual(errors, []);
  });

  test("the channel's end or error destroys every stream with ECONNRESET; the mux closes once, reporting only the error", async (t) => {
    for (const ending of ['end', 'error'] as const) {
      const [near, far] = await socketPair(t);
      const { mux, errors, closed } = watch(new Mux(near, { role: 'client' }));
      let closes = 0;
      mux.on('close', () => closes++);
      const stream = mux.open();
      const streamError = once(stream, 'error');
      new RawPeer(far).socket.write(hello());
      if (ending === 'end') far.end();
      else near.destroy(Object.assign(new Error('the channel broke'), { code: 'EPIPE' }));
      assert.equal(((await streamError)[0] as NodeJS.ErrnoException).code, 'ECONNRESET');
      await closed;
      assert.deepEqual(errors.map((error) => error.message), ending === 'end' ? [] : ['the channel broke']);
      assert.equal(mux.openStreams, 0);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(closes, 1);
    }
  });

  test("frames before the peer's HELLO (from its earlier self) are dropped; after it, streams open as usual", async (t) => {
    const { mux, errors, accepted, peer } = await hostile(t);
    peer.socket.write(Buffer.concat([frame(TYPE.open, 1), frame(TYPE.data, 1, 'stale'), windowFrame(2, 10), frame(TYPE.end, 1), frame(TYPE.reset, 1)]));
    peer.socket.write(Buffer.concat([hello(), frame(TYPE.open, 3), frame(TYPE.data, 3, 'new'), frame(TYPE.end, 3)]));
    const stream = await acceptedAt({ mux, accepted }, 0);
    assert.equal(stream.id, 3);
    assert.equal((await drain(stream)).bytes, 3);
    assert.equal(accepted.length, 1);
    assert.deepEqual(errors, []);
  });

  test('an OPEN with no one listening for streams is reset at once', async (t) => {
    const [near, far] = await socketPair(t);
    const mux = new Mux(far, { role: 'server' });
    mux.on('error', () => {});
    const peer = new RawPeer(near);
    peer.socket.write(Buffer.concat([hello(), frame(TYPE.open, 7)]));
    await peer.until((frames) => frames.some((each) => each.type === TYPE.reset && each.id === 7));
    assert.equal(mux.openStreams, 0);
  });

  test('a peer that floods OPENs and never reads the RESETs is cut off, not buffered for', async (t) => {
    const transport = stuckTransport();
    const { errors, closed } = watch(new Mux(transport, { role: 'server', maxStreams: 1 }), (stream) => stream.on('error', () => {}));
    const opens = Array.from({ length: 60_000 }, (_, index) => frame(TYPE.open, 2 * index + 1));
    transport.push(Buffer.concat([hello(), ...opens]));
    await closed;
    assert.equal((errors[0] as NodeJS.ErrnoException | undefined)?.code, 'BRIG_MUX_PROTOCOL');
    assert.match((errors[0] as Error).message, /does not read/);
    t.diagnostic(`written before the cut: ${transport.writableLength} bytes`);
  });

  test('a transport that takes nothing: a stream with credit for 100 MiB builds no more than one frame past its high-water mark', async () => {
    const transport = stuckTransport();
    const mux = new Mux(transport, { role: 'client' });
    mux.on('error', () => {});
    transport.push(hello(2 ** 31 - 1));
    await new Promise((resolve) => setImmediate(resolve));
    const stream = mux.open();
    stream.on('error', () => {});
    let done = false;
    stream.write(Buffer.alloc(100 * MiB), () => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(transport.writableLength <= transport.writableHighWaterMark + 64 * KiB + 64, `${transport.writableLength} bytes queued`);
    assert.ok(transport.writableLength >= transport.writableHighWaterMark, 'it did write up to the mark');
    assert.equal(done, false);
    mux.close();
  });
});

/** A transport whose writes never complete: a peer that does not read. Its readable side is pushed to by the test. */
function stuckTransport(): Duplex {
  return new Duplex({ read() {}, write() {} });
}
