import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEgressProxy, type ProxySession } from '../../src/egress/proxy.ts';
import type { Lookup } from '../../src/egress/rules.ts';
import type { NetworkRules, Violation } from '../../src/egress/types.ts';

/** Every name in these tests is the stand-in upstream on 127.0.0.1: what the proxy decides is all that differs. */
const lookupToLoopback: Lookup = async (host) => {
  if (host.endsWith('.missing')) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return ['127.0.0.1'];
};

interface Harness {
  socketPath: string;
  rules: NetworkRules;
  violations: Violation[];
  close(): Promise<void>;
}

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function startProxy(rules: NetworkRules, options: Partial<ProxySession> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'brig-egress-'));
  dirs.push(dir);
  const socketPath = join(dir, 'egress.sock');
  const violations: Violation[] = [];
  const harness = { socketPath, rules, violations, close: async () => {} };
  const proxy = createEgressProxy({ sandbox: 'sbx-test', rules: () => harness.rules, violation: (v) => violations.push(v), lookup: lookupToLoopback, ...options });
  await proxy.listen(socketPath);
  harness.close = () => proxy.close();
  return harness;
}

/** Answers with what it received: method, URL, headers and the body's text. */
function echo(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-upstream', 'yes');
    res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
  });
}

async function listenLocal<T extends HttpServer | NetServer>(server: T): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: HttpServer | NetServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
  reusedSocket: boolean;
}

/** An absolute-form (or origin-form) request sent straight to the proxy's socket. */
async function viaProxy(socketPath: string, target: string, options: { method?: string; headers?: Record<string, string>; body?: string; agent?: Agent } = {}): Promise<Answer> {
  const request = httpRequest({ socketPath, path: target, method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false });
  request.end(options.body);
  const [response] = (await once(request, 'response')) as [IncomingMessage];
  return { status: response.statusCode ?? 0, headers: response.headers, body: await text(response), reusedSocket: request.reusedSocket };
}

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks).toString();
}

/** A raw connection to the proxy's socket, read from as bytes arrive. */
class Raw {
  readonly socket: Socket;
  private received = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  readonly closed: Promise<void>;

  constructor(socketPath: string) {
    this.socket = connect(socketPath);
    this.socket.on('error', () => {});
    this.socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.waiting?.();
    });
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.once('close', () => this.waiting?.());
  }

  /** Exactly n bytes (fewer only if the connection closed first). */
  async read(n: number): Promise<Buffer> {
    while (this.received.length < n && !this.socket.destroyed) await new Promise<void>((resolve) => (this.waiting = resolve));
    const bytes = this.received.subarray(0, n);
    this.received = this.received.subarray(n);
    return bytes;
  }

  /** Everything up to the connection's end. */
  async rest(): Promise<string> {
    await this.closed;
    const all = this.received.toString();
    this.received = Buffer.alloc(0);
    return all;
  }

  /** Up to and including the first occurrence of `marker`. */
  async until(marker: string): Promise<string> {
    while (!this.received.includes(marker) && !this.socket.destroyed) await new Promise<void>((resolve) => (this.waiting = resolve));
    const end = this.received.indexOf(marker);
    const upTo = end < 0 ? this.received.length : end + marker.length;
    const bytes = this.received.subarray(0, upTo);
    this.received = this.received.subarray(upTo);
    return bytes.toString();
  }
}

/** A SOCKS5 CONNECT request (after a no-auth greeting) for a name, an IPv4 or an IPv6 address. */
function socksConnect(host: string, port: number, type: 'name' | 'ipv4' | 'ipv6' = 'name'): Buffer {
  const portBytes = Buffer.from([port >> 8, port & 0xff]);
  if (type === 'ipv4') return Buffer.concat([Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number)]), portBytes]);
  if (type === 'ipv6') return Buffer.concat([Buffer.from([5, 1, 0, 4]), Buffer.alloc(15), Buffer.from([1]), portBytes]); // ::1 only
  return Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host), portBytes]);
}

async function socksHandshake(socketPath: string, request: Buffer): Promise<{ raw: Raw; reply: number }> {
  const raw = new Raw(socketPath);
  raw.socket.write(Buffer.from([5, 1, 0]));
  assert.deepEqual([...(await raw.read(2))], [5, 0]);
  raw.socket.write(request);
  const reply = await raw.read(10);
  return { raw, reply: reply[1] ?? -1 };
}

describe('egress proxy: HTTP', () => {
  let upstream: HttpServer;
  let port: number;
  let proxy: Harness;
  before(async () => {
    upstream = createHttpServer(echo);
    port = await listenLocal(upstream);
    proxy = await startProxy({ allow: [], deny: [] });
  });
  after(async () => {
    await proxy.close();
    await closeServer(upstream);
  });
  const withRules = (allow: string[], deny: string[] = []) => {
    proxy.rules = { allow, deny };
    proxy.violations.length = 0;
  };

  it('forwards an absolute-form GET to an allowed name, with the URL authority as Host and proxy headers dropped', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    const answer = await viaProxy(proxy.socketPath, `http://api.example.com:${port}/v1/models?x=1`, {
      headers: { host: 'front.example.net', 'proxy-authorization': 'Basic c2VjcmV0', 'proxy-connection': 'keep-alive', connection: 'x-hop', 'x-hop': 'gone', 'x-kept': 'here' },
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['x-upstream'], 'yes');
    const seen = JSON.parse(answer.body) as { method: string; url: string; headers: Record<string, string> };
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, '/v1/models?x=1');
    assert.equal(seen.headers.host, `api.example.com:${port}`);
    assert.equal(seen.headers['x-kept'], 'here');
    for (const name of ['proxy-authorization', 'proxy-connection', 'x-hop']) assert.equal(seen.headers[name], undefined, name);
    assert.deepEqual(proxy.violations, []);
  });

  it('streams a POST body upstream while the client is still sending it, and the answer back', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    let firstChunkArrived!: () => void;
    const arrived = new Promise<void>((resolve) => (firstChunkArrived = resolve));
    const streaming = createHttpServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      req.once('data', (chunk: Buffer) => {
        res.write(`got ${chunk.toString()};`);
        firstChunkArrived();
      });
      req.on('end', () => res.end('end'));
      req.resume();
    });
    const streamingPort = await listenLocal(streaming);
    try {
      const request = httpRequest({ socketPath: proxy.socketPath, method: 'POST', path: `http://api.example.com:${streamingPort}/upload`, headers: { host: 'api.example.com' }, agent: false });
      request.write('first');
      // Only a proxy that streams lets the upstream see the first chunk before the body ends.
      await arrived;
      request.end('second');
      const [response] = (await once(request, 'response')) as [IncomingMessage];
      assert.equal(response.statusCode, 200);
      assert.equal(await text(response), 'got first;end');
    } finally {
      await closeServer(streaming);
    }
  });

  it('forwards a POST with a known length', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    const answer = await viaProxy(proxy.socketPath, `http://api.example.com:${port}/p`, { method: 'POST', headers: { 'content-type': 'text/plain', 'content-length': '5' }, body: 'hello' });
    const seen = JSON.parse(answer.body) as { method: string; body: string };
    assert.deepEqual([seen.method, seen.body], ['POST', 'hello']);
  });

  it('serves several requests on one kept-alive client connection', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push(await viaProxy(proxy.socketPath, `http://api.example.com:${port}/n/${i}`, { agent }));
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200]);
      assert.deepEqual(answers.map((a) => a.reusedSocket), [false, true, true]);
      assert.deepEqual(answers.map((a) => (JSON.parse(a.body) as { url: string }).url), ['/n/0', '/n/1', '/n/2']);
    } finally {
      agent.destroy();
    }
  });

  it('refuses a name not in the allowlist with 403, naming the rule and how to allow it, and records it', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    const answer = await viaProxy(proxy.socketPath, `http://other.example.com:${port}/`);
    assert.equal(answer.status, 403);
    assert.match(answer.body, new RegExp(`sandbox sbx-test may not reach other\\.example\\.com:${port}: not in allowlist`));
    assert.match(answer.body, /--allow other\.example\.com/);
    assert.equal(proxy.violations.length, 1);
    const [violation] = proxy.violations;
    assert.deepEqual({ ...violation, time: undefined }, { time: undefined, sandbox: 'sbx-test', kind: 'network', target: `other.example.com:${port}`, rule: 'not in allowlist' });
    assert.ok(!Number.isNaN(Date.parse(violation?.time ?? '')), 'an ISO time');
  });

  it('keeps a client connection usable after a refusal', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await viaProxy(proxy.socketPath, `http://refused.example.com:${port}/`, { agent })).status, 403);
      const allowed = await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`, { agent });
      assert.deepEqual([allowed.status, allowed.reusedSocket], [200, true]);
    } finally {
      agent.destroy();
    }
  });

  it('matches wildcards and ports', async () => {
    withRules([`*.example.com:${port}`, '127.0.0.1']);
    assert.equal((await viaProxy(proxy.socketPath, `http://deep.api.example.com:${port}/`)).status, 200);
    assert.equal((await viaProxy(proxy.socketPath, `http://example.com:${port}/`)).status, 403);
    withRules(['*.example.com:1', '127.0.0.1']);
    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`)).status, 403);
  });

  it('checks deny first', async () => {
    withRules(['*.example.com', '127.0.0.1'], ['*.evil.example.com']);
    const answer = await viaProxy(proxy.socketPath, `http://x.evil.example.com:${port}/`);
    assert.equal(answer.status, 403);
    assert.match(answer.body, /deny \*\.evil\.example\.com/);
    assert.match(answer.body, /network\.deny/);
    assert.equal(proxy.violations[0]?.rule, 'deny *.evil.example.com');
  });

  it('reaches an IP literal only when an address entry lists it', async () => {
    withRules(['*.example.com']);
    assert.equal((await viaProxy(proxy.socketPath, `http://127.0.0.1:${port}/`)).status, 403);
    assert.equal(proxy.violations[0]?.rule, 'not in allowlist');
    withRules(['127.0.0.0/8']);
    assert.equal((await viaProxy(proxy.socketPath, `http://127.0.0.1:${port}/`)).status, 200);
  });

  it('refuses a name that resolves to loopback unless the address is listed (the rebinding guard)', async () => {
    withRules(['api.example.com']);
    const answer = await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`);
    assert.equal(answer.status, 403);
    assert.match(answer.body, /resolves to loopback address 127\.0\.0\.1/);
    assert.match(answer.body, /--allow 127\.0\.0\.1/);
    assert.equal(proxy.violations[0]?.rule, 'resolves to loopback address 127.0.0.1');
    withRules(['api.example.com', '127.0.0.0/8']);
    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`)).status, 200);
  });

  it('reads the rules on every request, so a change applies to the next one', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`)).status, 200);
    withRules(['127.0.0.1']);
    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`)).status, 403);
    withRules(['api.example.com', '127.0.0.1'], ['api.example.com']);
    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`)).status, 403);
    withRules(['api.example.com', '127.0.0.1']);
    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`)).status, 200);
  });

  it('refuses everything, saying so, while the rules do not parse', async () => {
    withRules(['api.example.com', 'not a destination']);
    const answer = await viaProxy(proxy.socketPath, `http://api.example.com:${port}/`);
    assert.equal(answer.status, 403);
    assert.match(proxy.violations[0]?.rule ?? '', /^the network rules are invalid \(allow: "not a destination" is not a destination/);
  });

  it('answers 502 for an upstream that refuses the connection or a name that does not resolve, recording no violation', async () => {
    const closed = createNetServer();
    const closedPort = await listenLocal(closed);
    await closeServer(closed);
    withRules(['*.example.com', '*.missing', '127.0.0.1']);
    const refused = await viaProxy(proxy.socketPath, `http://api.example.com:${closedPort}/`);
    assert.equal(refused.status, 502);
    assert.match(refused.body, /could not reach api\.example\.com:\d+: ECONNREFUSED/);
    const unresolved = await viaProxy(proxy.socketPath, `http://nowhere.missing/`);
    assert.equal(unresolved.status, 502);
    assert.match(unresolved.body, /nowhere\.missing does not resolve \(ENOTFOUND\)/);
    assert.deepEqual(proxy.violations, []);
  });

  it('answers 400 for a proxy request that is not http://', async () => {
    withRules(['*.example.com', '127.0.0.1']);
    assert.equal((await viaProxy(proxy.socketPath, 'https://api.example.com/')).status, 400);
    assert.equal((await viaProxy(proxy.socketPath, 'http://user@api.example.com/')).status, 400);
  });

  it('answers origin-form requests with 404 when the sandbox has no gateway', async () => {
    const answer = await viaProxy(proxy.socketPath, '/anthropic/v1/messages', { method: 'POST', body: '{}' });
    assert.equal(answer.status, 404);
    assert.match(answer.body, /gateway is not enabled for sandbox sbx-test/);
  });

  it('survives garbage, an oversized header and a client that leaves mid-request', async () => {
    withRules(['api.example.com', '127.0.0.1']);
    const garbage = new Raw(proxy.socketPath);
    garbage.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]));
    assert.match(await garbage.rest(), /^HTTP\/1\.1 400 /);

    const huge = new Raw(proxy.socketPath);
    huge.socket.write(`GET http://api.example.com:${port}/ HTTP/1.1\r\nHost: api.example.com\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`);
    assert.match(await huge.rest(), /^HTTP\/1\.1 431 /);

    const leaving = new Raw(proxy.socketPath);
    leaving.socket.write(`POST http://api.example.com:${port}/ HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 100000\r\n\r\nsome`);
    leaving.socket.destroy();

    const ended = new Raw(proxy.socketPath);
    ended.socket.end('GET http://api.exa');
    await ended.rest();

    const silent = new Raw(proxy.socketPath);
    silent.socket.end();
    await silent.closed;

    assert.equal((await viaProxy(proxy.socketPath, `http://api.example.com:${port}/still`)).status, 200);
  });
});

describe('egress proxy: CONNECT tunnels', () => {
  let upstream: HttpServer;
  let port: number;
  let proxy: Harness;
  before(async () => {
    upstream = createHttpServer(echo);
    port = await listenLocal(upstream);
    proxy = await startProxy({ allow: ['api.example.com', '127.0.0.1'], deny: [] });
  });
  after(async () => {
    await proxy.close();
    await closeServer(upstream);
  });

  it('tunnels to an allowed name: 200 Connection Established, then bytes both ways', async () => {
    const raw = new Raw(proxy.socketPath);
    raw.socket.write(`CONNECT api.example.com:${port} HTTP/1.1\r\nHost: api.example.com:${port}\r\n\r\n`);
    assert.equal(await raw.until('\r\n\r\n'), 'HTTP/1.1 200 Connection Established\r\n\r\n');
    raw.socket.write('GET /through HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
    const response = await raw.rest();
    assert.match(response, /^HTTP\/1\.1 200 OK/);
    assert.match(response, /"url":"\/through"/);
  });

  it('sends bytes written right behind the CONNECT request on through the tunnel', async () => {
    const raw = new Raw(proxy.socketPath);
    raw.socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\nGET /eager HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(await raw.until('\r\n\r\n'), 'HTTP/1.1 200 Connection Established\r\n\r\n');
    assert.match(await raw.rest(), /"url":"\/eager"/);
  });

  it('works with a client that tunnels through http.request', async () => {
    const request = httpRequest({ socketPath: proxy.socketPath, method: 'CONNECT', path: `[::ffff:127.0.0.1]:${port}`, agent: false });
    request.end();
    const [response, socket] = (await once(request, 'connect')) as [IncomingMessage, Socket];
    assert.equal(response.statusCode, 200);
    socket.end('GET /sdk HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(await text(socket), /"url":"\/sdk"/);
  });

  it('refuses a target with 403 and closes, recording the violation', async () => {
    const raw = new Raw(proxy.socketPath);
    raw.socket.write('CONNECT evil.example.com:443 HTTP/1.1\r\n\r\n');
    const answer = await raw.rest();
    assert.match(answer, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(answer, /may not reach evil\.example\.com:443: not in allowlist/);
    assert.equal(proxy.violations.at(-1)?.target, 'evil.example.com:443');
  });

  it('answers 400 to a CONNECT without a port', async () => {
    const raw = new Raw(proxy.socketPath);
    raw.socket.write('CONNECT api.example.com HTTP/1.1\r\n\r\n');
    assert.match(await raw.rest(), /^HTTP\/1\.1 400 /);
  });

  it('answers 504 when the connection is not made in time', async () => {
    const slow = await startProxy({ allow: ['*.example.com'], deny: [] }, { lookup: () => new Promise(() => {}), connectTimeoutMs: 50 });
    try {
      const raw = new Raw(slow.socketPath);
      raw.socket.write('CONNECT api.example.com:443 HTTP/1.1\r\n\r\n');
      assert.match(await raw.rest(), /^HTTP\/1\.1 504 Gateway Timeout/);
      assert.equal((await viaProxy(slow.socketPath, 'http://api.example.com/')).status, 504);
    } finally {
      await slow.close();
    }
  });

  it('passes a half-close on, lets the other side answer, and cuts the upstream when the client vanishes', async () => {
    const upstreamClosed: Promise<void>[] = [];
    const tcp = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {});
      upstreamClosed.push(new Promise((resolve) => socket.once('close', () => resolve())));
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('end', () => socket.end(`heard ${Buffer.concat(chunks).toString()}`));
    });
    const tcpPort = await listenLocal(tcp);
    try {
      const halfClosing = new Raw(proxy.socketPath);
      halfClosing.socket.write(`CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\r\n\r\n`);
      await halfClosing.until('\r\n\r\n');
      halfClosing.socket.end('ping');
      assert.equal(await halfClosing.rest(), 'heard ping');

      const vanishing = new Raw(proxy.socketPath);
      vanishing.socket.write(`CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\r\n\r\n`);
      await vanishing.until('\r\n\r\n');
      while (upstreamClosed.length < 2) await new Promise((resolve) => setImmediate(resolve));
      vanishing.socket.destroy();
      await upstreamClosed[1];
    } finally {
      await closeServer(tcp);
    }
  });

  it('cuts open tunnels when it closes', async () => {
    const own = await startProxy({ allow: ['127.0.0.1'], deny: [] });
    const raw = new Raw(own.socketPath);
    raw.socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`);
    await raw.until('\r\n\r\n');
    await own.close();
    await raw.closed;
  });
});

describe('egress proxy: SOCKS5', () => {
  let upstream: HttpServer;
  let port: number;
  let proxy: Harness;
  before(async () => {
    upstream = createHttpServer(echo);
    port = await listenLocal(upstream);
    proxy = await startProxy({ allow: ['api.example.com', '127.0.0.1'], deny: ['denied.example.com'] });
  });
  after(async () => {
    await proxy.close();
    await closeServer(upstream);
  });

  async function roundTrip(raw: Raw, path: string): Promise<string> {
    raw.socket.write(`GET ${path} HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n`);
    return raw.rest();
  }

  it('connects to a name (socks5h: the proxy resolves it)', async () => {
    const { raw, reply } = await socksHandshake(proxy.socketPath, socksConnect('api.example.com', port));
    assert.equal(reply, 0x00);
    assert.match(await roundTrip(raw, '/by-name'), /"url":"\/by-name"/);
  });

  it('connects to an IPv4 address', async () => {
    const { raw, reply } = await socksHandshake(proxy.socketPath, socksConnect('127.0.0.1', port, 'ipv4'));
    assert.equal(reply, 0x00);
    assert.match(await roundTrip(raw, '/by-address'), /"url":"\/by-address"/);
  });

  it('takes the greeting, the request and the first bytes in one write', async () => {
    const raw = new Raw(proxy.socketPath);
    raw.socket.write(Buffer.concat([Buffer.from([5, 1, 0]), socksConnect('api.example.com', port), Buffer.from('GET /eager HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]));
    assert.deepEqual([...(await raw.read(12))], [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert.match(await raw.rest(), /"url":"\/eager"/);
  });

  it('answers "not allowed by ruleset" (2) for a refused target, and records it', async () => {
    const { raw, reply } = await socksHandshake(proxy.socketPath, socksConnect('denied.example.com', 443));
    assert.equal(reply, 0x02);
    await raw.closed;
    assert.deepEqual(
      proxy.violations.map((v) => [v.target, v.rule]),
      [['denied.example.com:443', 'deny denied.example.com']],
    );
    const unlisted = await socksHandshake(proxy.socketPath, socksConnect('::1', 443, 'ipv6'));
    assert.equal(unlisted.reply, 0x02);
    assert.deepEqual(proxy.violations.at(-1)?.target, '[::1]:443');
  });

  it('records a name with control characters quoted, so it cannot rewrite a terminal that shows it', async () => {
    const name = '\x1b[2Jx.example.com';
    const { raw, reply } = await socksHandshake(proxy.socketPath, socksConnect(name, 443));
    assert.equal(reply, 0x02);
    await raw.closed;
    assert.deepEqual([proxy.violations.at(-1)?.target, proxy.violations.at(-1)?.rule], [JSON.stringify(`${name}:443`), 'not a host name']);
  });

  it('answers "connection refused" (5) and "host unreachable" (4) for upstreams that are not there', async () => {
    const closed = createNetServer();
    const closedPort = await listenLocal(closed);
    await closeServer(closed);
    assert.equal((await socksHandshake(proxy.socketPath, socksConnect('127.0.0.1', closedPort, 'ipv4'))).reply, 0x05);
    proxy.rules = { allow: ['*.missing'], deny: [] };
    try {
      assert.equal((await socksHandshake(proxy.socketPath, socksConnect('nowhere.missing', 443))).reply, 0x04);
    } finally {
      proxy.rules = { allow: ['api.example.com', '127.0.0.1'], deny: ['denied.example.com'] };
    }
  });

  it('answers "command not supported" (7) to BIND and UDP ASSOCIATE, and 8 to an unknown address type', async () => {
    const bind = socksConnect('api.example.com', port);
    bind[1] = 0x02;
    assert.equal((await socksHandshake(proxy.socketPath, bind)).reply, 0x07);
    const udp = socksConnect('127.0.0.1', port, 'ipv4');
    udp[1] = 0x03;
    assert.equal((await socksHandshake(proxy.socketPath, udp)).reply, 0x07);
    assert.equal((await socksHandshake(proxy.socketPath, Buffer.from([5, 1, 0, 9, 1, 2, 3]))).reply, 0x08);
  });

  it('offers no method to a client that wants authentication', async () => {
    const raw = new Raw(proxy.socketPath);
    raw.socket.write(Buffer.from([5, 1, 2]));
    assert.deepEqual([...(await raw.read(2))], [5, 0xff]);
    await raw.closed;
  });

  it('drops a request with a wrong version, a client that leaves mid-handshake, and keeps serving', async () => {
    const wrongVersion = new Raw(proxy.socketPath);
    wrongVersion.socket.write(Buffer.from([5, 1, 0]));
    await wrongVersion.read(2);
    wrongVersion.socket.write(Buffer.from([4, 1, 0, 1, 127, 0, 0, 1, 0, 80]));
    await wrongVersion.closed;

    const leaving = new Raw(proxy.socketPath);
    leaving.socket.end(Buffer.from([5, 1]));
    await leaving.closed;

    const socks4 = new Raw(proxy.socketPath);
    socks4.socket.write(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]));
    await socks4.closed;

    const { raw, reply } = await socksHandshake(proxy.socketPath, socksConnect('api.example.com', port));
    assert.equal(reply, 0x00);
    assert.match(await roundTrip(raw, '/after'), /"url":"\/after"/);
  });

  it('reads the rules on every connection', async () => {
    proxy.rules = { allow: ['127.0.0.1'], deny: [] };
    try {
      const first = await socksHandshake(proxy.socketPath, socksConnect('api.example.com', port));
      assert.equal(first.reply, 0x02);
      proxy.rules = { allow: ['api.example.com', '127.0.0.1'], deny: [] };
      const second = await socksHandshake(proxy.socketPath, socksConnect('api.example.com', port));
      assert.equal(second.reply, 0x00);
      second.raw.socket.destroy();
    } finally {
      proxy.rules = { allow: ['api.example.com', '127.0.0.1'], deny: ['denied.example.com'] };
    }
  });
});

describe('egress proxy: the gateway', () => {
  it('hands origin-form requests to the gateway, and proxy requests still to the proxy', async () => {
    const seen: string[] = [];
    const proxy = await startProxy(
      { allow: [], deny: [] },
      {
        gateway: (req, res) => {
          seen.push(`${req.method} ${req.url}`);
          req.resume();
          req.on('end', () => res.end('from the gateway'));
        },
      },
    );
    try {
      const answer = await viaProxy(proxy.socketPath, '/anthropic/v1/messages', { method: 'POST', body: '{"model":"x"}' });
      assert.deepEqual([answer.status, answer.body], [200, 'from the gateway']);
      assert.deepEqual(seen, ['POST /anthropic/v1/messages']);
      assert.equal((await viaProxy(proxy.socketPath, 'http://api.example.com/')).status, 403);
      assert.deepEqual(seen, ['POST /anthropic/v1/messages']);
    } finally {
      await proxy.close();
    }
  });

  it('answers 500 when the gateway throws, and keeps serving', async () => {
    const proxy = await startProxy(
      { allow: [], deny: [] },
      {
        gateway: () => {
          throw new Error('gateway bug');
        },
      },
    );
    try {
      assert.equal((await viaProxy(proxy.socketPath, '/openai/v1/chat/completions')).status, 500);
      assert.equal((await viaProxy(proxy.socketPath, '/openai/v1/chat/completions')).status, 500);
    } finally {
      await proxy.close();
    }
  });
});

describe('egress proxy: localhost through the real resolver', () => {
  it('refuses localhost as a loopback address unless loopback is listed', async () => {
    const upstream = createHttpServer(echo);
    const port = await listenLocal(upstream);
    const proxy = await startProxy({ allow: ['localhost'], deny: [] }, { lookup: undefined });
    try {
      const refused = await viaProxy(proxy.socketPath, `http://localhost:${port}/`);
      assert.equal(refused.status, 403);
      assert.match(refused.body, /resolves to loopback address/);
      proxy.rules = { allow: ['localhost', '127.0.0.1', '::1'], deny: [] };
      assert.equal((await viaProxy(proxy.socketPath, `http://localhost:${port}/`)).status, 200);
    } finally {
      await proxy.close();
      await closeServer(upstream);
    }
  });
});
