import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { createGateway, PLACEHOLDER_KEY, TRANSCRIPT_BODY_CAP, type Gateway, type GatewayConfig, type GatewaySession } from '../../src/egress/gateway/index.ts';
import type { Provider, Spent, TranscriptEntry, Violation } from '../../src/egress/types.ts';

/**
 * The gateway for real, over HTTP on 127.0.0.1: a client playing the jailed
 * agent, the gateway behind a plain http server (as the proxy hands it
 * requests), and a stand-in provider that records what reached it and answers
 * as the provider would, in JSON or server-sent events.
 */

const KEYS: Record<Provider, string> = {
  anthropic: 'sk-ant-REAL-host-key-0123456789',
  openai: 'sk-proj-REAL-host-key-0123456789',
  gemini: 'AIzaREAL-host-key-0123456789',
};
/** What a sandbox might try to slip upstream besides the placeholder. */
const SANDBOX_SECRET = 'sk-sandbox-own-key-should-never-travel';

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, received: Received) => void | Promise<void>;

/** The stand-in provider: records each request (body read in full), then lets the test's handler answer. */
class Upstream {
  readonly received: Received[] = [];
  handler: Handler = (_req, res) => json(res, 200, {});
  private readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      this.received.push(received);
      void this.handler(req, res, received);
    });
  });

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A sandbox as plain objects: what the gateway charged, recorded and refused is all here. */
class PlainSession implements GatewaySession {
  sandbox = 'sbx-test';
  providers: Provider[] = ['anthropic', 'openai', 'gemini'];
  budget = { maxRequests: 0, maxTokens: 0 };
  total: Spent = { requests: 0, inputTokens: 0, outputTokens: 0 };
  charges: Spent[] = [];
  entries: TranscriptEntry[] = [];
  violations: Violation[] = [];
  private waiting: (() => void)[] = [];

  spent(): Spent {
    return { ...this.total };
  }

  charge(delta: Spent): void {
    this.charges.push(delta);
    this.total = { requests: this.total.requests + delta.requests, inputTokens: this.total.inputTokens + delta.inputTokens, outputTokens: this.total.outputTokens + delta.outputTokens };
  }

  transcript(entry: TranscriptEntry): void {
    this.entries.push(entry);
    for (const wake of this.waiting.splice(0)) wake();
  }

  violation(violation: Violation): void {
    this.violations.push(violation);
  }

  /** The transcript entry of the n-th exchange, once the gateway has written it (after the body ended). */
  async entry(index = 0): Promise<TranscriptEntry> {
    while (this.entries.length <= index) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return this.entries[index]!;
  }
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
}

function sse(events: unknown[], options: { named?: boolean; done?: boolean } = {}): string {
  const lines = events.map((event) => {
    const type = options.named ? `event: ${(event as { type: string }).type}\n` : '';
    return `${type}data: ${JSON.stringify(event)}\n\n`;
  });
  return lines.join('') + (options.done ? 'data: [DONE]\n\n' : '');
}

/** Promise.withResolvers, which Node 20 lacks. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => (resolve = settle));
  return { promise, resolve };
}

let upstream: Upstream;
let gateway: Gateway;
let server: Server;
let session: PlainSession;
let config: GatewayConfig;

async function startGateway(overrides: Partial<GatewayConfig> = {}): Promise<void> {
  config = {
    keys: { ...KEYS },
    upstreams: { anthropic: `${upstream.origin}/proxy`, openai: upstream.origin, gemini: `${upstream.origin}/` },
    headerTimeoutMs: 600_000,
    ...overrides,
  };
  gateway = createGateway(config);
  server = createServer((req, res) => gateway.handle(req, res, session));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
}

async function stopGateway(): Promise<void> {
  gateway.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function gatewayPort(): number {
  return (server.address() as AddressInfo).port;
}

/** One request to the gateway, as an agent would send it; the whole answer. */
function send(method: string, path: string, headers: OutgoingHttpHeaders, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gatewayPort(), method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function post(path: string, body: unknown, headers: OutgoingHttpHeaders = {}): Promise<Reply> {
  return send('POST', path, { 'content-type': 'application/json', ...headers }, JSON.stringify(body));
}

/** Every place a key could have leaked to in what the session was handed. */
function assertNoKey(value: unknown): void {
  const text = JSON.stringify(value);
  for (const key of Object.values(KEYS)) assert.ok(!text.includes(key), `a host key leaked: ${text.slice(0, 400)}`);
}

before(async () => {
  upstream = new Upstream();
  await upstream.start();
});

after(async () => {
  await upstream.stop();
});

describe('the LLM gateway', () => {
  before(async () => {
    session = new PlainSession();
    await startGateway();
  });
  after(stopGateway);
  afterEach(() => {
    session = new PlainSession();
    upstream.received.length = 0;
    upstream.handler = (_req, res) => json(res, 200, {});
  });

  test('anthropic: the host key reaches upstream in x-api-key; the placeholder and any sandbox credential never do', async () => {
    upstream.handler = (_req, res) => json(res, 200, { id: 'msg_1', type: 'message', content: [{ type: 'text', text: 'hi' }], usage: { input_tokens: 12, output_tokens: 7 } });
    const reply = await post(
      '/anthropic/v1/messages?beta=true',
      { model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] },
      {
        'x-api-key': PLACEHOLDER_KEY,
        authorization: `Bearer ${SANDBOX_SECRET}`,
        'x-goog-api-key': SANDBOX_SECRET,
        'anthropic-version': '2023-06-01',
        connection: 'keep-alive, x-hop',
        'x-hop': 'only for the next hop',
        'keep-alive': 'timeout=5',
      },
    );
    assert.equal(reply.status, 200);
    assert.equal(JSON.parse(reply.body).usage.output_tokens, 7);

    const [received] = upstream.received;
    assert.ok(received);
    // The upstream base URL's own path (/proxy) stays in front of the request's.
    assert.equal(received.url, '/proxy/v1/messages?beta=true');
    assert.equal(received.headers['x-api-key'], KEYS.anthropic);
    assert.equal(received.headers.authorization, undefined);
    assert.equal(received.headers['x-goog-api-key'], undefined);
    assert.equal(received.headers.host, new URL(upstream.origin).host);
    assert.equal(received.headers['anthropic-version'], '2023-06-01');
    assert.equal(received.headers['x-hop'], undefined);
    assert.equal(received.headers['keep-alive'], undefined);
    const everything = JSON.stringify(received);
    assert.ok(!everything.includes(PLACEHOLDER_KEY) && !everything.includes(SANDBOX_SECRET), 'a sandbox credential reached upstream');

    const entry = await session.entry();
    assert.deepEqual(entry.usage, { inputTokens: 12, outputTokens: 7 });
    assert.deepEqual(session.total, { requests: 1, inputTokens: 12, outputTokens: 7 });
    assert.equal(entry.provider, 'anthropic');
    assert.equal(entry.method, 'POST');
    assert.equal(entry.path, '/proxy/v1/messages?beta=true');
    assert.equal(entry.status, 200);
    assert.match(entry.request, /"content":"hello"/);
    assert.match(entry.response, /"msg_1"/);
    assert.equal(entry.truncated, false);
    assert.ok(entry.headersMs >= 0 && entry.totalMs >= entry.headersMs);
    assert.equal(entry.error, undefined);
    assertNoKey(session.entries);
  });

  test('anthropic: a base URL without /v1 (the AI SDK convention) still reaches /v1/messages', async () => {
    await post('/anthropic/messages', { model: 'm', messages: [] }, { 'x-api-key': PLACEHOLDER_KEY });
    assert.equal(upstream.received[0]?.url, '/proxy/v1/messages');
  });

  test('anthropic SSE: chunks reach the client one by one, as upstream sends them, and usage is counted', async () => {
    const events = [
      { type: 'message_start', message: { id: 'msg_2', usage: { input_tokens: 25, cache_read_input_tokens: 100, cache_creation_input_tokens: 5, output_tokens: 1 } } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hel' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'lo' } },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 40 } },
      { type: 'message_stop' },
    ];
    // Upstream sends an event only once the client has received the one before: a gateway that
    // buffered would never let this stream finish.
    const seen = events.map(() => deferred<void>());
    upstream.handler = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const [index, event] of events.entries()) {
        res.write(sse([event], { named: true }));
        await seen[index]!.promise;
      }
      res.end();
    };
    const arrivals: string[] = [];
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gatewayPort(), method: 'POST', path: '/anthropic/v1/messages', headers: { 'content-type': 'application/json', 'x-api-key': PLACEHOLDER_KEY } }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          arrivals.push(chunk.toString());
          text += chunk.toString();
          events.forEach((event, index) => {
            if (text.includes(`"type":"${event.type}"`)) seen[index]!.resolve();
          });
        });
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ model: 'm', stream: true, messages: [] }));
    });
    assert.equal(status, 200);
    assert.equal(arrivals.length, events.length, 'each event arrived on its own');
    assert.match(arrivals[0]!, /^event: message_start\n/);

    const entry = await session.entry();
    assert.deepEqual(entry.usage, { inputTokens: 130, outputTokens: 40 });
    assert.deepEqual(session.total, { requests: 1, inputTokens: 130, outputTokens: 40 });
    assert.match(entry.response, /message_stop/);
    assertNoKey(session.entries);
  });

  test('openai chat completions: Bearer host key upstream; usage from the last SSE chunk', async () => {
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.end(
        sse(
          [
            { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'Hi' } }], usage: null },
            { id: 'c1', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 31, completion_tokens: 9, total_tokens: 40 } },
          ],
          { done: true },
        ),
      );
    };
    const reply = await post('/openai/v1/chat/completions', { model: 'gpt-4o', stream: true, stream_options: { include_usage: true }, messages: [] }, { authorization: `Bearer ${PLACEHOLDER_KEY}`, 'api-key': SANDBOX_SECRET });
    assert.equal(reply.status, 200);
    assert.match(reply.body, /\[DONE\]/);
    const [received] = upstream.received;
    assert.equal(received?.url, '/v1/chat/completions');
    assert.equal(received?.headers.authorization, `Bearer ${KEYS.openai}`);
    assert.equal(received?.headers['api-key'], undefined);
    const entry = await session.entry();
    assert.deepEqual(entry.usage, { inputTokens: 31, outputTokens: 9 });
    assertNoKey(session.entries);
  });

  test('openai chat completions: usage from a JSON body', async () => {
    upstream.handler = (_req, res) => json(res, 200, { id: 'c2', choices: [{ message: { role: 'assistant', content: 'ok' } }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
    await post('/openai/v1/chat/completions', { model: 'gpt-4o', messages: [] }, { authorization: `Bearer ${PLACEHOLDER_KEY}` });
    assert.deepEqual((await session.entry()).usage, { inputTokens: 3, outputTokens: 2 });
  });

  test('openai responses: usage from response.completed (SSE) and from the JSON body', async () => {
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(
        sse(
          [
            { type: 'response.created', response: { id: 'resp_1', usage: null } },
            { type: 'response.output_text.delta', delta: 'Hi' },
            { type: 'response.completed', response: { id: 'resp_1', usage: { input_tokens: 50, output_tokens: 14, total_tokens: 64 } } },
          ],
          { named: true },
        ),
      );
    };
    await post('/openai/v1/responses', { model: 'gpt-5', stream: true, input: 'hi' }, { authorization: `Bearer ${PLACEHOLDER_KEY}` });
    assert.deepEqual((await session.entry(0)).usage, { inputTokens: 50, outputTokens: 14 });

    upstream.handler = (_req, res) => json(res, 200, { id: 'resp_2', object: 'response', output: [], usage: { input_tokens: 8, output_tokens: 4, total_tokens: 12 } });
    await post('/openai/v1/responses', { model: 'gpt-5', input: 'hi' }, { authorization: `Bearer ${PLACEHOLDER_KEY}` });
    assert.deepEqual((await session.entry(1)).usage, { inputTokens: 8, outputTokens: 4 });
    assert.deepEqual(session.total, { requests: 2, inputTokens: 58, outputTokens: 18 });
  });

  test('gemini SSE: x-goog-api-key upstream, key= dropped from the query, the last usageMetadata wins', async () => {
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(
        // Gemini separates its events with CRLF.
        sse([
          { candidates: [{ content: { parts: [{ text: 'a' }] } }], usageMetadata: { promptTokenCount: 20 } },
          { candidates: [{ content: { parts: [{ text: 'b' }] } }], usageMetadata: { promptTokenCount: 20, candidatesTokenCount: 6, thoughtsTokenCount: 4 } },
        ]).replaceAll('\n', '\r\n'),
      );
    };
    const reply = await post(`/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=${SANDBOX_SECRET}`, { contents: [] }, { 'x-goog-api-key': PLACEHOLDER_KEY });
    assert.equal(reply.status, 200);
    const [received] = upstream.received;
    assert.equal(received?.url, '/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse');
    assert.equal(received?.headers['x-goog-api-key'], KEYS.gemini);
    const entry = await session.entry();
    assert.equal(entry.path, '/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse');
    assert.deepEqual(entry.usage, { inputTokens: 20, outputTokens: 10 });
    assert.ok(!JSON.stringify(session.entries).includes(SANDBOX_SECRET));
    assertNoKey(session.entries);
  });

  test('gemini: usage from a JSON body and from the streamed JSON array (no alt=sse)', async () => {
    upstream.handler = (_req, res) => json(res, 200, { candidates: [], usageMetadata: { promptTokenCount: 11, candidatesTokenCount: 3 } });
    await post('/gemini/v1beta/models/gemini-2.5-flash:generateContent', { contents: [] }, { 'x-goog-api-key': PLACEHOLDER_KEY });
    assert.deepEqual((await session.entry(0)).usage, { inputTokens: 11, outputTokens: 3 });

    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8' });
      res.write('[{"candidates": [], "usageMetadata": {"promptTokenCount": 15}}\n');
      res.write(',\r\n{"candidates": [], "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 22}}\n');
      res.end(']');
    };
    await post('/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent', { contents: [] }, { 'x-goog-api-key': PLACEHOLDER_KEY });
    assert.deepEqual((await session.entry(1)).usage, { inputTokens: 15, outputTokens: 22 });
  });

  test('a spent request budget: 429 in the provider\'s shape, a violation, and nothing sent upstream', async () => {
    session.budget = { maxRequests: 2, maxTokens: 0 };
    session.total = { requests: 2, inputTokens: 0, outputTokens: 0 };
    const reply = await post('/anthropic/v1/messages', { model: 'm', messages: [] }, { 'x-api-key': PLACEHOLDER_KEY });
    assert.equal(reply.status, 429);
    assert.equal(reply.headers['x-should-retry'], 'false');
    const body = JSON.parse(reply.body);
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.match(body.error.message, /request budget \(2 of 2 requests\)/);
    assert.equal(upstream.received.length, 0);
    assert.equal(session.violations.length, 1);
    assert.deepEqual({ ...session.violations[0], time: undefined }, { time: undefined, sandbox: 'sbx-test', kind: 'llm', target: '/anthropic/v1/messages', rule: 'budget: requests' });
    assert.ok(!Number.isNaN(Date.parse(session.violations[0]!.time)));
    assert.equal(session.entries.length, 0);
  });

  test('a token budget running out: the request that crosses it passes, the next is refused', async () => {
    session.budget = { maxRequests: 0, maxTokens: 100 };
    upstream.handler = (_req, res) => json(res, 200, { usage: { prompt_tokens: 90, completion_tokens: 20 } });
    assert.equal((await post('/openai/v1/chat/completions', { messages: [] })).status, 200);
    await session.entry();
    const reply = await post('/openai/v1/chat/completions', { messages: [] });
    assert.equal(reply.status, 429);
    assert.deepEqual(JSON.parse(reply.body), {
      error: {
        message: 'brig: sandbox sbx-test has spent its LLM token budget (110 of 100 tokens: 90 input, 20 output); the gateway forwards no more of its requests. Raise the budget\'s maxTokens on the host to go on.',
        type: 'insufficient_quota',
        param: null,
        code: 'insufficient_quota',
      },
    });
    assert.equal(upstream.received.length, 1);
    assert.equal(session.violations[0]?.rule, 'budget: tokens');

    const gemini = await post('/gemini/v1beta/models/g:generateContent', { contents: [] });
    assert.equal(gemini.status, 429);
    assert.equal(JSON.parse(gemini.body).error.status, 'RESOURCE_EXHAUSTED');
    assert.equal(JSON.parse(gemini.body).error.code, 429);
  });

  test('a provider the policy does not allow: 403 in its shape and a violation', async () => {
    session.providers = ['anthropic'];
    const reply = await post('/gemini/v1beta/models/g:generateContent', { contents: [] }, { 'x-goog-api-key': PLACEHOLDER_KEY });
    assert.equal(reply.status, 403);
    assert.deepEqual(JSON.parse(reply.body), { error: { code: 403, message: 'brig: sandbox sbx-test may not use Gemini (its policy allows: anthropic).', status: 'PERMISSION_DENIED' } });
    assert.equal(upstream.received.length, 0);
    assert.equal(session.violations[0]?.rule, 'provider not allowed');
    assert.equal(session.violations[0]?.target, '/gemini/v1beta/models/g:generateContent');
    assert.deepEqual(session.total, { requests: 0, inputTokens: 0, outputTokens: 0 });
  });

  test('a path that names no provider: 404', async () => {
    const reply = await send('GET', '/mistral/v1/models', {});
    assert.equal(reply.status, 404);
    assert.equal(upstream.received.length, 0);
  });

  test('upstream 5xx passes through as it is', async () => {
    const overloaded = { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } };
    upstream.handler = (_req, res) => json(res, 529, overloaded);
    const reply = await post('/anthropic/v1/messages', {});
    assert.equal(reply.status, 529);
    assert.deepEqual(JSON.parse(reply.body), overloaded);
    const entry = await session.entry();
    assert.equal(entry.status, 529);
    assert.equal(entry.error, undefined);
  });

  test('the transcript keeps the first MiB of a body, and says it cut the rest', async () => {
    const big = 'x'.repeat(TRANSCRIPT_BODY_CAP + 1000);
    upstream.handler = (_req, res, received) => json(res, 200, { echoed: received.body.length });
    const reply = await send('POST', '/openai/v1/chat/completions', { 'content-type': 'text/plain' }, big);
    assert.equal(JSON.parse(reply.body).echoed, big.length, 'the body reached upstream whole');
    const entry = await session.entry();
    assert.equal(entry.truncated, true);
    assert.equal(entry.request.length, TRANSCRIPT_BODY_CAP);
  });

  test('the client going away cancels the upstream request', async () => {
    const upstreamClosed = deferred<boolean>();
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sse([{ type: 'message_start', message: { usage: { input_tokens: 5 } } }]));
      res.on('close', () => upstreamClosed.resolve(res.writableFinished));
    };
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gatewayPort(), method: 'POST', path: '/anthropic/v1/messages', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? undefined : reject(error)));
      req.end('{}');
    });
    assert.equal(await upstreamClosed.promise, false, 'upstream saw its connection closed before it finished');
    const entry = await session.entry();
    assert.equal(entry.error, 'the client closed the connection');
    // What was known when it stopped is still charged.
    assert.deepEqual(entry.usage, { inputTokens: 5, outputTokens: 0 });
    assert.equal(session.total.inputTokens, 5);
  });
});

describe('the LLM gateway without keys', () => {
  before(async () => {
    session = new PlainSession();
    await startGateway({ keys: { anthropic: KEYS.anthropic } });
  });
  after(stopGateway);

  test('a provider with no key: 401 in its shape, naming the host variable to set', async () => {
    const reply = await post('/openai/v1/responses', { input: 'hi' }, { authorization: `Bearer ${SANDBOX_SECRET}` });
    assert.equal(reply.status, 401);
    const body = JSON.parse(reply.body);
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.code, 'invalid_api_key');
    assert.equal(body.error.param, null);
    assert.match(body.error.message, /set OPENAI_API_KEY in brig's environment or its key file/);
    assert.equal(upstream.received.length, 0);

    const gemini = JSON.parse((await post('/gemini/v1beta/models/g:generateContent', {})).body);
    assert.equal(gemini.error.status, 'UNAUTHENTICATED');
    assert.match(gemini.error.message, /GEMINI_API_KEY or GOOGLE_API_KEY/);
  });
});

describe('the LLM gateway when upstream fails', () => {
  let closedPort: number;
  const hanging = new Set<ServerResponse>();

  before(async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    session = new PlainSession();
    await startGateway({ upstreams: { anthropic: `http://127.0.0.1:${closedPort}`, openai: upstream.origin, gemini: upstream.origin }, headerTimeoutMs: 50 });
    upstream.handler = (_req, res) => void hanging.add(res);
  });
  after(async () => {
    for (const res of hanging) res.destroy();
    await stopGateway();
  });

  test('connection refused: 502 in the provider\'s shape, and a transcript entry saying why', async () => {
    const reply = await post('/anthropic/v1/messages', {}, { 'x-api-key': PLACEHOLDER_KEY });
    assert.equal(reply.status, 502);
    const body = JSON.parse(reply.body);
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'api_error');
    assert.match(body.error.message, /could not reach Anthropic at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    const entry = await session.entry();
    assert.equal(entry.status, 502);
    assert.match(entry.error ?? '', /ECONNREFUSED/);
    assert.equal(entry.response, reply.body);
    assertNoKey(session.entries);
  });

  test('no response headers in time: 504 in the provider\'s shape', async () => {
    const reply = await post('/gemini/v1beta/models/g:generateContent', { contents: [] });
    assert.equal(reply.status, 504);
    assert.deepEqual(JSON.parse(reply.body), { error: { code: 504, message: `Gemini (${upstream.origin}) sent no response headers within 0.05 s.`, status: 'DEADLINE_EXCEEDED' } });
    const openai = JSON.parse((await post('/openai/v1/chat/completions', {})).body);
    assert.equal(openai.error.type, 'server_error');
    assert.equal(openai.error.code, 'upstream_timeout');
  });
});
