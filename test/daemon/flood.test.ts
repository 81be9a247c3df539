import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startFlood } from '../helpers/flood.ts';

const API_KEY = 'brig_flood_key';
/** More than every descriptor the daemon has (its hard limit here is 20 000), from two processes: one process may not hold that many either. */
const FLOOD = 27_000;
const FLOODERS = 3;

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, timeoutMs: 600_000 } as SandboxOpts;
}

/** 'ok', 'full' (a 503 BRIG_CAPACITY), or what else went wrong. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return 'ok';
  } catch (error) {
    const text = String((error as Error).message);
    return /BRIG_CAPACITY|\b503\b/.test(text) ? 'full' : text;
  }
}

async function listSandboxes(daemon: RunningDaemon): Promise<void> {
  const response = await fetch(`${daemon.url}/v2/sandboxes`, { headers: { 'X-API-KEY': API_KEY } });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`${response.status} ${body}`);
}

describe('brig serve under a flood of idle connections', () => {
  test('27 000 idle connections: the daemon keeps serving (or answers 503), never dies, holds a bounded number of descriptors, and loses no sandbox', async (t) => {
    const state = tempWorkspace('brig-flood-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    const made: Sandbox[] = [];
    try {
      const sandbox = await Sandbox.create(opts(daemon));
      made.push(sandbox);
      await sandbox.files.write('/home/user/work.txt', 'hours of work');
      const port = Number(new URL(daemon.url).port);
      const floods = await Promise.all(Array.from({ length: FLOODERS }, () => startFlood('127.0.0.1', port, FLOOD / FLOODERS)));
      const outcomes: string[] = [];
      const descriptors: number[] = [];
      const heldAtEnd: number[] = [];
      try {
        for (let round = 0; round < 5; round++) {
          outcomes.push(await outcome(() => listSandboxes(daemon)));
          outcomes.push(await outcome(async () => assert.equal((await sandbox.commands.run('cat work.txt')).stdout, 'hours of work')));
          // A create spawns a jail: the spawn that killed the daemon when it was out of descriptors.
          outcomes.push(await outcome(async () => made.push(await Sandbox.create(opts(daemon)))));
          descriptors.push(readdirSync(`/proc/${daemon.process.pid}/fd`).length);
          assert.equal(daemon.process.exitCode, null, 'the daemon is alive');
        }
        heldAtEnd.push(...floods.map((flood) => flood.held()));
        assert.ok(heldAtEnd.every((held) => held > 0), 'the flood holds connections');
      } finally {
        await Promise.all(floods.map((flood) => flood.stop()));
      }
      t.diagnostic(`outcomes: ${outcomes.join(', ')}; daemon descriptors: ${descriptors.join(', ')}; flooders held: ${heldAtEnd.join(', ')}`);
      const unexpected = outcomes.filter((item) => item !== 'ok' && item !== 'full');
      assert.deepEqual(unexpected, [], 'every answer is served or a 503');
      assert.ok(outcomes.includes('ok'), `some requests were served: ${outcomes.join(', ')}`);
      // The caps: a quarter of the descriptor limit (20 000) for clients, the rest kept for sandboxes and the store.
      assert.ok(Math.max(...descriptors) < 10_000, `the daemon held at most ${Math.max(...descriptors)} descriptors`);
      // After the flood: everything still there, and served.
      assert.equal((await sandbox.commands.run('cat work.txt')).stdout, 'hours of work');
      assert.ok((await Sandbox.list(opts(daemon)).nextItems()).some((info) => info.sandboxId === sandbox.sandboxId), 'no sandbox was lost');
    } finally {
      for (const each of made) await each.kill().catch(() => {});
      await daemon.stop();
      state.remove();
    }
  });
});

/** A raw connection to the daemon, open once connected. */
function rawConnection(daemon: RunningDaemon): Promise<Socket> {
  const url = new URL(daemon.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) }, () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('brig serve: the connection caps', () => {
  test('at the cap an idle connection makes room for a new one; when every held one is busy the newcomer gets 503 BRIG_CAPACITY', async () => {
    const state = tempWorkspace('brig-flood-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--max-connections', '2', '--max-connections-per-client', '2'] });
    const sockets: Socket[] = [];
    try {
      // Two that never say anything fill the cap; a working client still gets in.
      for (let index = 0; index < 2; index++) sockets.push(await rawConnection(daemon));
      const closed = sockets.map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
      await listSandboxes(daemon);
      await Promise.race(closed);
      assert.ok(sockets.some((socket) => socket.destroyed || socket.readableEnded), 'an idle connection was closed to make room');

      // Two requests in flight (a body promised and never sent) fill the cap: nothing to evict.
      const busy: Socket[] = [];
      for (let index = 0; index < 2; index++) {
        const socket = await rawConnection(daemon);
        // Node answers 100 Continue as it hands the request on: from then on the connection is busy.
        const continued = new Promise<void>((resolve) => socket.on('data', (chunk: Buffer) => chunk.toString().includes('100 Continue') && resolve()));
        socket.write(`POST /sandboxes HTTP/1.1\r\nhost: brig\r\nx-api-key: ${API_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n{`);
        busy.push(socket);
        sockets.push(socket);
        await continued;
      }
      const response = await fetch(`${daemon.url}/v2/sandboxes`, { headers: { 'X-API-KEY': API_KEY } });
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('retry-after'), '1');
      const body = (await response.json()) as { code: string; message: string; hint: string };
      assert.equal(body.code, 'BRIG_CAPACITY');
      assert.match(body.message, /2 in all, 2 per client/);
      assert.match(body.hint, /--max-connections/);
      assert.equal(busy.every((socket) => !socket.destroyed), true, 'requests in flight are never cut');

      // Once they are done, the daemon serves again.
      await Promise.all(busy.map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()).destroy())));
      let status = 0;
      // The daemon sees them close a moment after they do.
      for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
        status = (await fetch(`${daemon.url}/v2/sandboxes`, { headers: { 'X-API-KEY': API_KEY } })).status;
        if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(status, 200, 'served again once the busy connections are gone');
    } finally {
      for (const socket of sockets) socket.destroy();
      await daemon.stop();
      state.remove();
    }
  });

  test('at the cap a connection that never sent a request is closed before a kept-alive one a client is using', async () => {
    const state = tempWorkspace('brig-flood-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--max-connections', '2', '--max-connections-per-client', '2'] });
    const sockets: Socket[] = [];
    try {
      // A client's kept-alive connection, idle after its answer; then a silent one.
      const client = await rawConnection(daemon);
      sockets.push(client);
      const answered = (): Promise<string> =>
        new Promise((resolve) => {
          let text = '';
          const onData = (chunk: Buffer): void => {
            text += chunk.toString();
            // One whole answer: its headers, then a body of content-length bytes or a chunked body's last chunk.
            const head = text.indexOf('\r\n\r\n');
            const length = /content-length: (\d+)/i.exec(text.slice(0, head));
            if (head >= 0 && (length ? text.length >= head + 4 + Number(length[1]) : text.endsWith('0\r\n\r\n'))) {
              client.off('data', onData);
              resolve(text);
            }
          };
          client.on('data', onData);
          // Closed by the daemon: no answer (the assertion below says so).
          client.once('close', () => resolve(text));
        });
      const request = `GET /v2/sandboxes HTTP/1.1\r\nhost: brig\r\nx-api-key: ${API_KEY}\r\n\r\n`;
      let reply = answered();
      client.write(request);
      assert.match(await reply, /^HTTP\/1.1 200/);
      const silent = await rawConnection(daemon);
      sockets.push(silent);
      const closed = (socket: Socket, name: string): Promise<string> => new Promise((resolve) => socket.once('close', () => resolve(name)));
      // A newcomer at the cap: the silent one makes room, the client's stays.
      const first = Promise.race([closed(silent, 'the silent one'), closed(client, "the client's")]);
      sockets.push(await rawConnection(daemon));
      assert.equal(await first, 'the silent one', 'the connection closed to make room');
      reply = answered();
      client.write(request);
      assert.match(await reply, /^HTTP\/1.1 200/, 'the kept-alive connection still serves');
    } finally {
      for (const socket of sockets) socket.destroy();
      await daemon.stop();
      state.remove();
    }
  });
});
