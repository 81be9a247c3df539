import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { Conversation } from '../helpers/ports.ts';
import { TEST_TIERS } from '../helpers/tiers.ts';

/**
 * Sandbox ports against a real daemon, real jails and a real server inside
 * (test/fixtures/port-server.py): reached by E2B's header form, by
 * getHost's host name and by brig's path form; HTTP, a streamed answer and a
 * WebSocket; who may reach them (API key, access token, traffic token, the
 * browser's cookie, and a page of another origin that may not); that no
 * credential reaches the sandbox; and what a closed port, a bad port, a
 * host-network sandbox and an ended sandbox answer.
 */

const API_KEY = 'sandbox-ports-key';
const SERVER = readFileSync(new URL('../fixtures/port-server.py', import.meta.url), 'utf8');
const PORT = 8000;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('brig serve: sandbox ports', () => {
  const state = tempWorkspace('brig-sandbox-ports-');
  let daemon: RunningDaemon;
  let daemonPort: number;
  let sandbox: Sandbox;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;

  /** A request to the daemon as given, Host header included (Node resolves no *.localhost name, a browser does). */
  const send = (path: string, headers: Record<string, string>, method = 'GET', body?: string): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: daemonPort, path, method, headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  /** An answer's body as bytes, read slowly (a pause per chunk), so the daemon and envd hold data back while the server has already closed. */
  const sendBytes = (path: string, headers: Record<string, string>): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: daemonPort, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          res.pause();
          setImmediate(() => res.resume());
        });
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  const hostOf = (port: number, id = sandbox.sandboxId) => `${port}-${id}.localhost:${daemonPort}`;
  const traffic = () => ({ 'e2b-traffic-access-token': sandbox.trafficAccessToken ?? '' });

  /** The fixture server listening on `port` in `target`, once it answers. */
  const serve = async (target: Sandbox, port: number, host = '0.0.0.0'): Promise<void> => {
    await target.files.write('/tmp/port-server.py', SERVER);
    await target.commands.run(`python3 /tmp/port-server.py ${port} ${host}`, { background: true, timeoutMs: 0 });
    await target.commands.run(`for i in $(seq 200); do python3 -c "import socket; socket.create_connection(('${host === '::1' ? '::1' : '127.0.0.1'}', ${port}))" 2>/dev/null && exit 0; sleep 0.05; done; exit 1`);
  };

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
    daemonPort = Number(new URL(daemon.url).port);
    sandbox = await Sandbox.create('base', opts());
    await serve(sandbox, PORT);
  });
  after(async () => {
    await sandbox?.kill().catch(() => {});
    await daemon.stop();
    state.remove();
  });

  test('create answers with the domain and a traffic token; getHost names the port by the daemon', async () => {
    assert.equal(sandbox.sandboxDomain, `localhost:${daemonPort}`);
    assert.match(sandbox.trafficAccessToken ?? '', /^[A-Za-z0-9_-]{40,}$/);
    assert.notEqual(sandbox.trafficAccessToken, (sandbox as unknown as { envdAccessToken: string }).envdAccessToken);
    assert.equal(sandbox.getHost(PORT), hostOf(PORT));
  });

  test('the three forms reach the server: E2B headers, getHost\'s host name, the path', async () => {
    const viaHeaders = await send('/headers', { 'e2b-sandbox-id': sandbox.sandboxId, 'e2b-sandbox-port': String(PORT), ...traffic() });
    assert.equal(viaHeaders.status, 200, viaHeaders.body);
    const viaHost = await send('/headers', { host: hostOf(PORT), ...traffic() });
    assert.equal(viaHost.status, 200, viaHost.body);
    assert.equal(JSON.parse(viaHost.body).host, hostOf(PORT), 'the server sees the host name the client used');
    const viaPath = await send(`/sandboxes/${sandbox.sandboxId}/ports/${PORT}/headers`, traffic());
    assert.equal(viaPath.status, 200, viaPath.body);
    const bare = await send(`/sandboxes/${sandbox.sandboxId}/ports/${PORT}?a=1`, traffic());
    assert.equal(bare.status, 307, 'the bare path form goes to its directory, so relative links work');
    assert.equal(bare.headers.location, `/sandboxes/${sandbox.sandboxId}/ports/${PORT}/?a=1`);
    const posted = await send('/echo', { host: hostOf(PORT), ...traffic(), 'content-type': 'text/plain' }, 'POST', 'a body, both ways');
    assert.equal(posted.body, 'a body, both ways');
  });

  test('no credential, or a wrong one, is refused; the API key and the access token open the port too', async () => {
    const none = await send('/headers', { host: hostOf(PORT) });
    assert.equal(none.status, 401);
    assert.equal(JSON.parse(none.body).code, 'BRIG_UNAUTHORIZED');
    assert.equal((await send('/headers', { host: hostOf(PORT), 'e2b-traffic-access-token': 'x'.repeat(43) })).status, 401);
    // A right key does not excuse a wrong token sent with it.
    assert.equal((await send('/headers', { host: hostOf(PORT), 'e2b-traffic-access-token': 'wrong', 'x-api-key': API_KEY })).status, 401);
    assert.equal((await send('/headers', { host: hostOf(PORT), 'x-api-key': API_KEY })).status, 200);
    assert.equal((await send('/headers', { host: hostOf(PORT), authorization: `Bearer ${API_KEY}` })).status, 200);
    const envdToken = (sandbox as unknown as { envdAccessToken: string }).envdAccessToken;
    assert.equal((await send('/headers', { host: hostOf(PORT), 'x-access-token': envdToken })).status, 200);
  });

  test("one sandbox's traffic token opens none of another's ports", async () => {
    const other = await Sandbox.create('base', opts());
    try {
      const answer = await send('/headers', { host: hostOf(PORT), 'e2b-traffic-access-token': other.trafficAccessToken ?? '' });
      assert.equal(answer.status, 401);
    } finally {
      await other.kill();
    }
  });

  test('no credential reaches the sandbox; the request\'s own headers and cookies do', async () => {
    const answer = await send('/headers', {
      host: hostOf(PORT),
      'x-api-key': API_KEY,
      'e2b-sandbox-port': String(PORT),
      cookie: `theirs=1; brig_traffic_token=${sandbox.trafficAccessToken}; also=2`,
      'x-custom': 'kept',
    });
    assert.equal(answer.status, 200, answer.body);
    const seen = JSON.parse(answer.body) as Record<string, string>;
    for (const name of ['x-api-key', 'e2b-traffic-access-token', 'x-access-token', 'e2b-sandbox-id', 'e2b-sandbox-port']) assert.equal(seen[name], undefined, name);
    assert.equal(seen.cookie, 'theirs=1; also=2');
    assert.equal(seen['x-custom'], 'kept');
    assert.equal(seen['x-forwarded-host'], hostOf(PORT));
    const bearer = JSON.parse((await send('/headers', { host: hostOf(PORT), authorization: `Bearer ${API_KEY}` })).body) as Record<string, string>;
    assert.equal(bearer.authorization, undefined, 'the API key as a bearer token is taken out');
    const theirs = JSON.parse((await send('/headers', { host: hostOf(PORT), ...traffic(), authorization: 'Basic dTpw' })).body) as Record<string, string>;
    assert.equal(theirs.authorization, 'Basic dTpw', "the app's own Authorization passes");
  });

  test('a browser brings the traffic token once in the URL: a cookie for that host, and the token leaves the URL', async () => {
    const first = await send(`/headers?x=1&brig_traffic_token=${sandbox.trafficAccessToken}`, { host: hostOf(PORT) });
    assert.equal(first.status, 307);
    assert.equal(first.headers.location, '/headers?x=1');
    const cookie = String(first.headers['set-cookie']);
    assert.match(cookie, /^brig_traffic_token=[^;]+; Path=\/; HttpOnly; SameSite=Lax$/);
    const jar = cookie.split(';')[0] ?? '';
    assert.equal((await send('/headers', { host: hostOf(PORT), cookie: jar })).status, 200);
    // The page's own requests, and a navigation to it from elsewhere, carry it.
    assert.equal((await send('/headers', { host: hostOf(PORT), cookie: jar, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors' })).status, 200);
    assert.equal((await send('/headers', { host: hostOf(PORT), cookie: jar, 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' })).status, 200);
    // Another sandbox's page (same site: *.localhost) may not drive this one with the user's cookie.
    assert.equal((await send('/headers', { host: hostOf(PORT), cookie: jar, 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'cors' })).status, 401);
    assert.equal((await send('/headers', { host: hostOf(PORT), cookie: jar, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' })).status, 401);
    assert.equal((await send(`/headers?brig_traffic_token=wrong`, { host: hostOf(PORT) })).status, 401);
  });

  test("the path form is for programs: the token with each request, no cookie, and pages confined to an origin of their own (the daemon's is every sandbox's there)", async () => {
    const base = `/sandboxes/${sandbox.sandboxId}/ports/${PORT}`;
    const withToken = await send(`${base}/headers?brig_traffic_token=${sandbox.trafficAccessToken}`, {});
    assert.equal(withToken.status, 200, 'no redirect: nothing would carry the token on');
    assert.equal(withToken.headers['set-cookie'], undefined);
    assert.match(String(withToken.headers['content-security-policy']), /^sandbox allow-scripts/);
    assert.equal(JSON.parse(withToken.body)['x-forwarded-host'], `127.0.0.1:${daemonPort}`);
    const cookie = `brig_traffic_token=${sandbox.trafficAccessToken}`;
    assert.equal((await send(`${base}/headers`, { cookie })).status, 401, 'a cookie opens no path');
    const viaHost = await send('/headers', { host: hostOf(PORT), ...traffic() });
    assert.equal(viaHost.headers['content-security-policy'], undefined, 'a host name is an origin of its own already');
  });

  test("a sandbox's server cannot set brig's cookie; its own cookies pass", async () => {
    const answer = await send('/set-cookies', { host: hostOf(PORT), ...traffic() });
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(answer.headers['set-cookie'], ['theirs=1; Path=/']);
  });

  test('large answers arrive whole, many at once (the server closing after its last byte must not cut it)', async () => {
    const expected = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('latin1').repeat(4 * 1024 * 4);
    const answers = await Promise.all(Array.from({ length: 12 }, () => sendBytes('/big', { host: hostOf(PORT), ...traffic() })));
    for (const answer of answers) {
      assert.equal(answer.length, expected.length);
      assert.ok(answer.toString('latin1') === expected, 'byte for byte');
    }
  });

  test('an answer streams: its first part arrives while the server still holds the rest', async () => {
    const conversation = await Conversation.open(daemonPort);
    try {
      conversation.send(`GET /stream HTTP/1.1\r\nHost: ${hostOf(PORT)}\r\nE2B-Traffic-Access-Token: ${sandbox.trafficAccessToken}\r\n\r\n`);
      await conversation.until('first\n');
      assert.doesNotMatch(conversation.text(), /second/);
      assert.equal((await send('/release', { host: hostOf(PORT), ...traffic() })).status, 200);
      await conversation.until('second\n');
    } finally {
      conversation.socket.destroy();
    }
  });

  /** A WebSocket handshake and two echoed messages, as raw bytes: what passes is exactly what the server said. */
  const echoes = async (path: string, host: string, token: string): Promise<void> => {
    const conversation = await Conversation.open(daemonPort);
    try {
      conversation.send(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nE2B-Traffic-Access-Token: ${token}\r\n\r\n`);
      await conversation.until('\r\n\r\n');
      assert.match(conversation.text(), /^HTTP\/1\.1 101 /);
      assert.match(conversation.text(), /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
      for (const message of ['hello', 'again']) {
        const mask = Buffer.from([1, 2, 3, 4]);
        const payload = Buffer.from(message).map((byte, i) => byte ^ (mask[i % 4] ?? 0));
        conversation.send(Buffer.concat([Buffer.from([0x81, 0x80 | message.length]), mask, payload]));
        await conversation.until(`echo:${message}`);
      }
    } finally {
      conversation.socket.destroy();
    }
  };

  test('a WebSocket passes both ways, by host name and by path', async () => {
    await echoes('/ws', hostOf(PORT), sandbox.trafficAccessToken ?? '');
    await echoes(`/sandboxes/${sandbox.sandboxId}/ports/${PORT}/ws`, `127.0.0.1:${daemonPort}`, sandbox.trafficAccessToken ?? '');
  });

  for (const { tier, skip } of TEST_TIERS.filter((entry) => entry.tier !== 'jail')) {
    test(`on the ${tier} tier too: HTTP both ways and a WebSocket`, { skip }, async () => {
      const created = await fetch(`${daemon.url}/sandboxes`, { method: 'POST', headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'base', tier }) });
      assert.equal(created.status, 201, await created.clone().text());
      const other = await Sandbox.connect(((await created.json()) as { sandboxID: string }).sandboxID, opts());
      try {
        await serve(other, PORT);
        const token = other.trafficAccessToken ?? '';
        const answer = await send('/echo', { host: hostOf(PORT, other.sandboxId), 'e2b-traffic-access-token': token }, 'POST', `through ${tier}`);
        assert.equal(answer.body, `through ${tier}`);
        await echoes('/ws', hostOf(PORT, other.sandboxId), token);
      } finally {
        await other.kill();
      }
    });
  }

  test('a WebSocket without a credential, or to the control plane, is refused', async () => {
    const refused = await Conversation.open(daemonPort);
    refused.send(`GET /ws HTTP/1.1\r\nHost: ${hostOf(PORT)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    await refused.closed;
    assert.match(refused.text(), /^HTTP\/1\.1 401 [\s\S]*BRIG_UNAUTHORIZED/);
    const control = await Conversation.open(daemonPort);
    control.send(`GET /v2/sandboxes HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-API-Key: ${API_KEY}\r\n\r\n`);
    await control.closed;
    assert.match(control.text(), /^HTTP\/1\.1 400 [\s\S]*BRIG_BAD_REQUEST/);
  });

  test('a server on IPv6 loopback only is reached too', async () => {
    await serve(sandbox, 8006, '::1');
    const answer = await send('/headers', { host: hostOf(8006), ...traffic() });
    assert.equal(answer.status, 200, answer.body);
  });

  test('a closed port, a port that is no port, and a sandbox that does not exist are clear errors', async () => {
    const closed = await send('/', { host: hostOf(8009), ...traffic() });
    assert.equal(closed.status, 502);
    assert.equal(JSON.parse(closed.body).code, 'BRIG_PORT_CLOSED');
    assert.match(JSON.parse(closed.body).message, /nothing listens on port 8009/);
    const invalid = await send('/', { 'e2b-sandbox-id': sandbox.sandboxId, 'e2b-sandbox-port': '70000', ...traffic() });
    assert.equal(invalid.status, 400);
    const word = await send('/', { 'e2b-sandbox-id': sandbox.sandboxId, 'e2b-sandbox-port': 'http', ...traffic() });
    assert.equal(word.status, 400);
    const unknown = await send('/', { host: hostOf(PORT, 'i0000000000000000000'), ...traffic() });
    assert.equal(unknown.status, 502);
    assert.equal(JSON.parse(unknown.body).code, 'BRIG_SANDBOX_NOT_FOUND');
    // envd's own port by host name is envd, not a server of the sandbox.
    const envd = await send('/health', { host: hostOf(49983) });
    assert.equal(envd.status, 401, 'envd through its host name still needs the access token');
  });

  test("a sandbox in the host's network has no ports brig forwards: they would be the host's", async () => {
    const hostNet = await Sandbox.create('base', { ...opts(), allowInternetAccess: true });
    try {
      const answer = await send('/', { host: hostOf(PORT, hostNet.sandboxId), 'x-api-key': API_KEY });
      assert.equal(answer.status, 403);
      assert.equal(JSON.parse(answer.body).code, 'BRIG_PORT_NOT_ALLOWED');
    } finally {
      await hostNet.kill();
    }
  });

  test("E2B's allowPublicTraffic: true is refused, not silently ignored", async () => {
    await assert.rejects(Sandbox.create('base', { ...opts(), network: { allowPublicTraffic: true } }), /allowPublicTraffic/);
  });

  test('an ended sandbox\'s ports answer 502', async () => {
    const brief = await Sandbox.create('base', opts());
    await serve(brief, PORT);
    const token = brief.trafficAccessToken ?? '';
    assert.equal((await send('/headers', { host: hostOf(PORT, brief.sandboxId), 'e2b-traffic-access-token': token })).status, 200);
    await brief.kill();
    const answer = await send('/headers', { host: hostOf(PORT, brief.sandboxId), 'e2b-traffic-access-token': token });
    assert.equal(answer.status, 502);
  });
});
