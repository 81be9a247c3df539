import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import brigSpawn from 'brig-spawn';

const { relayPath } = brigSpawn;

/**
 * brig-relay (native/spawn/relay.c): 127.0.0.1:PORT in the command's network
 * namespace relayed to a unix socket, the command exec'd in its place. Real
 * processes throughout; the last block runs it in a bubblewrap jail with its
 * own network namespace.
 */

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const relay = (args: string[], env: Record<string, string> = {}): Promise<Result> => run(relayPath, args, env);

/** A port free on the host's loopback right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
}

const closeServer = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

/** The pids of processes whose command line holds `text` (none: []). */
function pgrep(text: string): number[] {
  const result = spawnSync('pgrep', ['-f', text], { encoding: 'utf8' });
  return result.stdout.split('\n').filter(Boolean).map(Number);
}

/** Waits (boundedly) for every process whose command line holds `text` to go. */
async function gone(text: string): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (pgrep(text).length === 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

// Clients run as the relayed command: a separate process, as in a jail.
const node = process.execPath;

/** Sends SIZE random bytes, half-closes, reads the echo to EOF; prints both hashes. */
const echoClient = `
const net = require('node:net'), crypto = require('node:crypto');
let left = Number(process.env.SIZE), received = 0, sentHex = '';
const sent = crypto.createHash('sha256'), got = crypto.createHash('sha256');
const sock = net.connect(Number(process.env.RELAY_PORT), '127.0.0.1');
sock.on('data', (d) => { got.update(d); received += d.length; });
sock.on('close', () => console.log(JSON.stringify({ sent: sentHex, got: got.digest('hex'), received })));
function pump() {
  while (left > 0) {
    const buf = crypto.randomBytes(Math.min(left, 1 << 20));
    sent.update(buf);
    left -= buf.length;
    if (!sock.write(buf)) return void sock.once('drain', pump);
  }
  sentHex = sent.digest('hex');
  sock.end();
}
sock.on('connect', pump);
`;

/** COUNT connections at once, each echoing 1 MiB; prints how many came back intact. */
const parallelClient = `
const net = require('node:net'), crypto = require('node:crypto');
const count = Number(process.env.COUNT);
let intact = 0, done = 0;
for (let i = 0; i < count; i++) {
  const payload = crypto.randomBytes(1 << 20), chunks = [];
  const sock = net.connect(Number(process.env.RELAY_PORT), '127.0.0.1', () => sock.end(payload));
  sock.on('data', (d) => chunks.push(d));
  sock.on('error', () => {});
  sock.on('close', () => {
    if (Buffer.concat(chunks).equals(payload)) intact++;
    if (++done === count) console.log('intact ' + intact);
  });
}
`;

/** Connects with no daemon behind the socket, then starts one and connects again. */
const restartClient = `
const net = require('node:net');
function attempt(done) {
  const sock = net.connect(Number(process.env.RELAY_PORT), '127.0.0.1');
  let data = '';
  sock.on('data', (d) => (data += d));
  sock.on('error', () => {});
  sock.on('close', () => done(data));
  sock.end('ping');
}
attempt((first) => {
  const server = net.createServer((c) => c.end('pong')).listen(process.env.SOCK, () =>
    attempt((second) => { console.log(JSON.stringify({ first, second })); server.close(); }));
});
`;

describe('brig-relay on the host', () => {
  let dir: string;
  let echo: Server;
  let echoSock: string;
  const uploads: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'brig-relay-'));
    echoSock = join(dir, 'echo.sock');
    // Echoes everything and hashes what it got; ends its side only after the client ends its.
    echo = createServer({ allowHalfOpen: true }, (socket: Socket) => {
      const hash = createHash('sha256');
      socket.on('data', (chunk: Buffer) => hash.update(chunk));
      socket.on('end', () => uploads.push(hash.digest('hex')));
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    await listen(echo, echoSock);
  });

  after(async () => {
    await closeServer(echo);
    rmSync(dir, { recursive: true, force: true });
  });

  test('relays a connection both ways, with a half-close from the client', async () => {
    const port = await freePort();
    const result = await relay([`${port}=${echoSock}`, '--', node, '-e', echoClient], { RELAY_PORT: String(port), SIZE: '1000' });
    assert.equal(result.code, 0, result.stderr);
    const answer = JSON.parse(result.stdout) as { sent: string; got: string; received: number };
    assert.equal(answer.received, 1000);
    assert.equal(answer.got, answer.sent);
    assert.ok(uploads.includes(answer.sent), 'the daemon got every byte');
  });

  test('moves 50 MiB each way byte for byte', async () => {
    const port = await freePort();
    const size = 50 * 1024 * 1024;
    const result = await relay([`${port}=${echoSock}`, '--', node, '-e', echoClient], { RELAY_PORT: String(port), SIZE: String(size) });
    assert.equal(result.code, 0, result.stderr);
    const answer = JSON.parse(result.stdout) as { sent: string; got: string; received: number };
    assert.equal(answer.received, size);
    assert.equal(answer.got, answer.sent);
    assert.ok(uploads.includes(answer.sent), 'the daemon got every byte');
  });

  test('carries many connections at once', async () => {
    const port = await freePort();
    const result = await relay([`${port}=${echoSock}`, '--', node, '-e', parallelClient], { RELAY_PORT: String(port), COUNT: '64' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'intact 64');
  });

  test('relays several ports to several sockets', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const other = createHttpServer((_request, response) => response.end('other'));
    const otherSock = join(dir, 'other.sock');
    await listen(other as unknown as Server, otherSock);
    try {
      const script = `exec 3<>/dev/tcp/127.0.0.1/${a}; printf x >&3; curl -s http://127.0.0.1:${b}/; echo`;
      const result = await relay([`${a}=${echoSock}`, `${b}=${otherSock}`, '--', 'bash', '-c', script]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'other\n');
    } finally {
      await closeServer(other as unknown as Server);
    }
  });

  test('closes the connection while the daemon is down, and keeps relaying', async () => {
    const port = await freePort();
    const sock = join(dir, 'restart.sock');
    const result = await relay([`${port}=${sock}`, '--', node, '-e', restartClient], { RELAY_PORT: String(port), SOCK: sock });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { first: '', second: 'pong' });
  });

  test("passes the command's exit status through, and says why a command cannot run", async () => {
    const port = await freePort();
    const pair = `${port}=${echoSock}`;
    assert.equal((await relay([pair, '--', 'sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await relay([pair, '--', 'sh', '-c', 'kill -TERM $$'])).signal, 'SIGTERM');
    const missing = await relay([pair, '--', 'brig-relay-no-such-command']);
    assert.equal(missing.code, 127);
    assert.equal(missing.stderr, 'brig-relay: brig-relay-no-such-command: No such file or directory\n');
    const notExecutable = join(dir, 'not-executable');
    writeFileSync(notExecutable, 'echo no\n', { mode: 0o644 });
    assert.equal((await relay([pair, '--', notExecutable])).code, 126);
    // No pairs at all: just the command.
    assert.equal((await relay(['--', 'sh', '-c', 'echo plain'])).stdout, 'plain\n');
  });

  test('fails with 125 and one line before starting the command on a setup error', async () => {
    const marker = join(dir, 'ran');
    const command = ['--', 'sh', '-c', `touch ${marker}`];
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
    const address = busy.address();
    const busyPort = typeof address === 'object' && address ? address.port : 0;
    try {
      const inUse = await relay([`${busyPort}=${echoSock}`, ...command]);
      assert.equal(inUse.code, 125);
      assert.equal(inUse.stderr, `brig-relay: ${busyPort}=${echoSock}: Address already in use\n`);
    } finally {
      await closeServer(busy);
    }
    for (const bad of [['nonsense', ...command], ['0=/x', ...command], ['80', ...command], [`1=${'x'.repeat(200)}`, ...command], ['1=/x']]) {
      const result = await relay(bad);
      assert.equal(result.code, 125, bad.join(' '));
      assert.match(result.stderr, /^(brig-relay: |usage: brig-relay)[^\n]*\n$/);
    }
    assert.equal(spawnSync('test', ['-e', marker]).status, 1, 'the command never ran');
  });

  test("the relay is the command's child, holds /dev/null for stdio, and sits in its own session", async () => {
    const port = await freePort();
    // A round trip first: the relay answers only once its setup is done.
    const script = `exec 3<>/dev/tcp/127.0.0.1/${port}; printf x >&3; head -c 1 <&3 >/dev/null
      p=$(pgrep -P $$ -x brig-relay)
      readlink /proc/$p/fd/0 /proc/$p/fd/1 /proc/$p/fd/2
      test "$(ps -o sid= -p $p)" != "$(ps -o sid= -p $$)" && echo own-session`;
    const result = await relay([`${port}=${echoSock}`, '--', 'bash', '-c', script]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '/dev/null\n/dev/null\n/dev/null\nown-session\n');
  });

  test('the relay dies with the command, even when the command is killed', async () => {
    const port = await freePort();
    // A socket path no other process names, to find the relay by.
    const sock = join(dir, `unique-${process.pid}-${port}.sock`);
    const child = spawn(relayPath, [`${port}=${sock}`, '--', 'sleep', '1000'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      // The relay keeps brig-relay's command line; the command's own process loses it at exec.
      const settled = (): boolean => {
        const pids = pgrep(sock);
        return pids.length === 1 && pids[0] !== child.pid;
      };
      for (let i = 0; i < 100 && !settled(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.ok(settled(), 'one relay process, named by its socket, beside the command');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    assert.ok(await gone(sock), 'no relay is left');

    // And after a normal exit.
    const sock2 = join(dir, `unique-${process.pid}-${port}-b.sock`);
    assert.equal((await relay([`${port}=${sock2}`, '--', 'true'])).code, 0);
    assert.ok(await gone(sock2), 'no relay is left');
  });
});

describe('brig-relay in a bubblewrap jail with its own network', () => {
  let dir: string;
  let server: ReturnType<typeof createHttpServer>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'brig-relay-jail-'));
    server = createHttpServer((request, response) => response.end(`hello from the host: ${request.method} ${request.url}\n`));
    await listen(server as unknown as Server, join(dir, 's.sock'));
  });

  after(async () => {
    await closeServer(server as unknown as Server);
    rmSync(dir, { recursive: true, force: true });
  });

  // The root is read-only, so /run gets a tmpfs for the bind's mount point.
  const jail = (command: string[]): string[] => [
    '--unshare-net', '--unshare-pid', '--die-with-parent',
    '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/run', '--bind', dir, '/run/relaytest',
    relayPath, '3128=/run/relaytest/s.sock', '--', ...command,
  ];

  test("curl in the jail reaches the host's unix socket through 127.0.0.1:3128", async () => {
    const result = await run('bwrap', jail(['curl', '-s', 'http://127.0.0.1:3128/hello']));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'hello from the host: GET /hello\n');
  });

  test("the jail's loopback is its own, and the exit status comes out of the jail", async () => {
    // Nothing else listens in the jail; the relay's listener is not the command's fd; the relay dies with the command.
    const script = 'curl -s -o /dev/null http://127.0.0.1:3129/; echo curl=$?; for f in /proc/$$/fd/*; do [ "${f##*/}" -gt 2 ] && readlink "$f" | grep socket; done; exit 3';
    const result = await run('bwrap', jail(['bash', '-c', script]));
    assert.equal(result.code, 3, result.stderr);
    assert.equal(result.stdout, 'curl=7\n');
  });
});
