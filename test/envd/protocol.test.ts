import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEnvelope, EnvelopeReader, ENVELOPE_FLAG } from '../../src/protocol/index.ts';
import { startEnvd, type Envd } from '../../src/envd/index.ts';
import { startTestEnvd, type TestEnvd } from '../helpers/envd.ts';
import { runBrig, startBrig } from '../helpers/brig.ts';

const json = { 'content-type': 'application/json', 'connect-protocol-version': '1' };
const stream = { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' };

async function call(url: string, path: string, body: string, headers: Record<string, string> = json) {
  const response = await fetch(url + path, { method: 'POST', headers, body });
  const text = await response.text();
  return { status: response.status, text, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Read a whole server stream and split it into its envelopes. */
async function callStream(url: string, path: string, message: unknown, headers: Record<string, string> = stream) {
  const response = await fetch(url + path, { method: 'POST', headers, body: new Uint8Array(encodeEnvelope(message)) });
  const reader = new EnvelopeReader(1 << 30);
  const envelopes = reader.push(Buffer.from(await response.arrayBuffer()));
  return { status: response.status, messages: envelopes.map((envelope) => ({ end: (envelope.flags & ENVELOPE_FLAG.endStream) !== 0, body: JSON.parse(envelope.data.toString()) as Record<string, unknown> })) };
}

describe('envd protocol: bad input gets a Connect error, never a crash or a hang', () => {
  let envd: TestEnvd;
  before(async () => {
    envd = await startTestEnvd({ jailed: false });
  });
  after(() => envd.close());

  test('GET /health answers 204', async () => {
    const response = await fetch(`${envd.url}/health`);
    assert.equal(response.status, 204);
  });

  test('an unknown method answers unimplemented', async () => {
    const result = await call(envd.url, '/process.Process/Frobnicate', '{}');
    assert.equal(result.status, 501);
    assert.equal(result.body.code, 'unimplemented');
  });

  test('an unknown service answers unimplemented', async () => {
    assert.equal((await call(envd.url, '/nope.Nope/List', '{}')).body.code, 'unimplemented');
  });

  test('a malformed body answers invalid_argument', async () => {
    for (const body of ['{not json', '[1,2]', '"text"', 'null']) {
      const result = await call(envd.url, '/process.Process/List', body);
      assert.equal(result.status, 400, body);
      assert.equal(result.body.code, 'invalid_argument', body);
    }
  });

  test('a wrong content type answers invalid_argument', async () => {
    const result = await call(envd.url, '/filesystem.Filesystem/Stat', '{"path":"/"}', { 'content-type': 'text/plain' });
    assert.equal(result.body.code, 'invalid_argument');
  });

  test('a stream cut in the middle of an envelope answers invalid_argument in the end-of-stream message', async () => {
    const frame = encodeEnvelope({ path: '/', recursive: false });
    const response = await fetch(`${envd.url}/filesystem.Filesystem/WatchDir`, { method: 'POST', headers: stream, body: new Uint8Array(frame.subarray(0, frame.length - 3)) });
    const bytes = Buffer.from(await response.arrayBuffer());
    assert.match(bytes.toString(), /invalid_argument/);
  });

  test('a stream with a second request message is refused', async () => {
    const body = Buffer.concat([encodeEnvelope({ path: '/' }), encodeEnvelope({ path: '/' })]);
    const response = await fetch(`${envd.url}/filesystem.Filesystem/WatchDir`, { method: 'POST', headers: stream, body: new Uint8Array(body) });
    assert.match(Buffer.from(await response.arrayBuffer()).toString(), /invalid_argument/);
  });

  test('compressed stream messages are refused as unimplemented', async () => {
    const result = await callStream(envd.url, '/process.Process/Start', { process: { cmd: 'true' } }, { ...stream, 'connect-content-encoding': 'gzip' });
    assert.equal(result.status, 501);
  });

  test('an oversized envelope is refused before it is read', async () => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(1 << 31 >>> 0, 1);
    const response = await fetch(`${envd.url}/process.Process/Start`, { method: 'POST', headers: stream, body: new Uint8Array(header) });
    assert.match(Buffer.from(await response.arrayBuffer()).toString(), /resource_exhausted/);
  });

  test('a user envd cannot act as is refused with permission_denied', async () => {
    const result = await call(envd.url, '/process.Process/List', '{}', { ...json, authorization: `Basic ${Buffer.from('mallory:').toString('base64')}` });
    assert.equal(result.status, 403);
    assert.equal(result.body.code, 'permission_denied');
  });

  test('envd is still serving after all of that', async () => {
    assert.equal((await fetch(`${envd.url}/health`)).status, 204);
    assert.equal(envd.process?.exitCode, null);
  });
});

describe('envd protocol: access token', () => {
  let envd: TestEnvd;
  before(async () => {
    envd = await startTestEnvd({ jailed: false, accessToken: 'secret-token' });
  });
  after(() => envd.close());

  test('calls without the token are unauthenticated; with it they work', async () => {
    const without = await call(envd.url, '/process.Process/List', '{}');
    assert.equal(without.status, 401);
    assert.equal(without.body.code, 'unauthenticated');
    const wrong = await call(envd.url, '/process.Process/List', '{}', { ...json, 'x-access-token': 'secret-tokeN' });
    assert.equal(wrong.status, 401);
    const right = await call(envd.url, '/process.Process/List', '{}', { ...json, 'x-access-token': 'secret-token' });
    assert.equal(right.status, 200, right.text);
  });

  test('/health needs no token', async () => {
    assert.equal((await fetch(`${envd.url}/health`)).status, 204);
  });
});

describe('envd protocol: a unix socket, as a jail is reached from the host', () => {
  let envd: Envd;
  const socket = join(tmpdir(), `brig-envd-test-${process.pid}.sock`);
  before(async () => {
    envd = await startEnvd({ listen: `unix:${socket}` });
  });
  after(async () => {
    await envd.close();
    rmSync(socket, { force: true });
  });

  test('it listens there, owner-only, and answers', async () => {
    assert.equal(envd.address, `unix:${socket}`);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ socketPath: socket, path: '/health', method: 'GET' }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 204);
  });
});

describe('brig envd: envd unjailed, for development', () => {
  test('its help says loudly that it is not jailed', async () => {
    const result = await runBrig(['envd', '--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /NOT JAILED/);
  });

  test('it serves, and warns on start', async () => {
    const child = startBrig(['envd', '--listen', '127.0.0.1:0']);
    try {
      let stdout = '';
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const address = await new Promise<string>((resolve) => {
        child.stdout?.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /envd listening on (\S+)/.exec(stdout);
          if (match?.[1]) resolve(match[1]);
        });
      });
      assert.equal((await fetch(`http://${address}/health`)).status, 204);
      assert.match(stderr, /WARNING: envd runs unjailed/);
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  });
});
