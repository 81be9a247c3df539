import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type RequestOptions, type Server } from 'node:http';
import { Readable, pipeline, type Duplex } from 'node:stream';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Sandbox, SandboxNotFoundError, type SandboxOpts } from 'e2b';
import type { FastifyInstance } from 'fastify';
import { eventually } from '../helpers/brig.ts';
import { buildApi } from '../../src/daemon/api/index.ts';
import type { CreateSandboxRequest, ListQuery, Page, SandboxManager, SandboxRecord, SandboxStats } from '../../src/daemon/sandboxes/index.ts';
import { applyPolicyInput, DEFAULT_POLICY, type NetworkPolicy } from '../../src/policy/index.ts';
import type { NetworkRules, Spent, Violation } from '../../src/egress/index.ts';
import { BrigError, encodeEnvelope, ENVD_VERSION, type MemoryEvent } from '../../src/protocol/index.ts';

/**
 * The API layer for real (fastify, the gateway, the e2b SDK, envd from its
 * bundle on unix sockets) in front of a stand-in SandboxManager: a Map, not
 * the lead's manager, so these tests pin the HTTP contract on their own.
 */

const API_KEY = 'brig_test_api_key';
const ENVD_BUNDLE = new URL('../../dist/envd.cjs', import.meta.url).pathname;
const KEY = { 'x-api-key': API_KEY };

/** An envd a sandbox of the stand-in manager talks to. */
interface Envd {
  socketPath: string;
  token: string;
  home: string;
  /** Absent for a stand-in listening in envd's place. */
  process?: ChildProcess;
}

/** SandboxManager over a Map: what the API may ask of sandboxes, without any jail. */
class StandInManager implements SandboxManager {
  readonly records = new Map<string, SandboxRecord>();
  readonly sockets = new Map<string, string>();
  /** The envds the next creates get, in order; without one a sandbox gets a socket nobody listens on. */
  readonly envds: Envd[] = [];
  requests: CreateSandboxRequest[] = [];
  /** What memoryEvents answers for any sandbox. */
  memoryLog: MemoryEvent[] = [];
  private count = 0;

  async create(request: CreateSandboxRequest): Promise<SandboxRecord> {
    this.requests.push(request);
    if ((request.templateId ?? 'base') !== 'base') throw new BrigError('BRIG_BAD_REQUEST', `unknown template '${request.templateId}'`, 'use base');
    if (request.name && this.live().some((record) => record.name === request.name)) throw new BrigError('BRIG_NAME_TAKEN', `a sandbox named '${request.name}' already runs`, 'pick another');
    const envd = this.envds.shift();
    const id = `i${(++this.count).toString(16).padStart(20, '0')}`;
    const now = Date.parse('2030-01-01T00:00:00Z') + this.count * 1000;
    const record: SandboxRecord = {
      id,
      name: request.name ?? null,
      templateId: 'base',
      metadata: request.metadata ?? {},
      envVars: request.envVars ?? {},
      policy: request.policy ? applyPolicyInput(DEFAULT_POLICY, request.policy) : DEFAULT_POLICY,
      state: 'running',
      startedAt: new Date(now).toISOString(),
      endAt: new Date(Date.now() + (request.timeoutMs ?? 300_000)).toISOString(),
      keepWorkspace: request.keepWorkspace ?? false,
      envdAccessToken: envd?.token ?? randomBytes(12).toString('hex'),
      workspace: envd?.home ?? '/nonexistent',
      handle: null,
    };
    this.records.set(id, record);
    this.sockets.set(id, envd?.socketPath ?? join(tmpdir(), `brig-api-nobody-${id}.sock`));
    return record;
  }

  get(idOrName: string): SandboxRecord {
    const record = this.live().find((candidate) => candidate.id === idOrName || candidate.name === idOrName);
    if (!record) throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `no sandbox '${idOrName}'`, 'list them');
    return record;
  }

  list(query: ListQuery): Page<SandboxRecord> {
    let after = '';
    if (query.after !== undefined) {
      after = Buffer.from(query.after, 'base64url').toString();
      if (!this.records.has(after)) throw new BrigError('BRIG_BAD_REQUEST', 'malformed page cursor', 'pass back the cursor you got');
    }
    const matching = [...this.records.values()]
      .filter((record) => (query.states?.length ? query.states.includes(record.state) : true))
      .filter((record) => Object.entries(query.metadata ?? {}).every(([key, value]) => record.metadata[key] === value))
      .filter((record) => record.id > after)
      .sort((a, b) => a.id.localeCompare(b.id));
    const items = matching.slice(0, query.limit);
    const last = items.at(-1);
    return { items, next: matching.length > query.limit && last ? Buffer.from(last.id).toString('base64url') : null };
  }

  async kill(idOrName: string): Promise<void> {
    this.get(idOrName).state = 'stopped';
  }

  pool() {
    return { ready: 0, booting: 0, size: 0 };
  }

  listAll(): SandboxRecord[] {
    return [...this.records.values()];
  }

  lookup(idOrName: string): SandboxRecord {
    return this.get(idOrName);
  }

  async remove(idOrName: string): Promise<void> {
    const record = [...this.records.values()].find((candidate) => candidate.id === idOrName || candidate.name === idOrName);
    if (!record) throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `no sandbox '${idOrName}'`, 'list them');
    this.records.delete(record.id);
  }

  async prune(): Promise<string[]> {
    const stopped = [...this.records.values()].filter((record) => record.state === 'stopped').map((record) => record.id);
    for (const id of stopped) this.records.delete(id);
    return stopped;
  }

  setTimeout(idOrName: string, timeoutMs: number): SandboxRecord {
    const record = this.get(idOrName);
    record.endAt = new Date(Date.now() + timeoutMs).toISOString();
    return record;
  }

  endpoint(idOrName: string): { socketPath: string; accessToken: string } {
    const record = this.get(idOrName);
    return { socketPath: this.sockets.get(record.id) ?? '', accessToken: record.envdAccessToken };
  }

  metrics(idOrName: string): never[] {
    this.get(idOrName);
    return [];
  }

  async stats(idOrName: string): Promise<SandboxStats> {
    if (idOrName === 'explodes') throw new Error('a bug in the manager');
    this.get(idOrName);
    return { memoryBytes: 1 << 20, pids: 3, cpuUsec: 1500, diskBytes: 4096 };
  }

  logs(idOrName: string): string {
    return `envd log of ${this.get(idOrName).id}\n`;
  }

  readonly violationLog: Violation[] = [];

  network(idOrName: string): NetworkPolicy {
    return this.get(idOrName).policy.network;
  }

  setNetworkRules(idOrName: string, rules: NetworkRules): NetworkPolicy {
    const record = this.get(idOrName);
    const policy = applyPolicyInput(record.policy, { network: { mode: 'allowlist', ...rules } });
    this.records.set(record.id, { ...record, policy });
    return policy.network;
  }

  violations(idOrName: string | null, limit: number): Violation[] {
    const id = idOrName === null ? null : this.get(idOrName).id;
    return this.violationLog.filter((violation) => id === null || violation.sandbox === id).slice(-limit);
  }

  recordViolation(violation: Violation): void {
    this.violationLog.push(violation);
  }

  llmUsage(idOrName: string): Spent {
    this.get(idOrName);
    return { requests: 0, inputTokens: 0, outputTokens: 0 };
  }

  transcript(idOrName: string): string | null {
    this.get(idOrName);
    return null;
  }

  memoryEvents(idOrName: string, limit: number): MemoryEvent[] {
    this.get(idOrName);
    return this.memoryLog.slice(-limit);
  }

  async commit(): Promise<never> {
    throw new BrigError('BRIG_COMMIT_UNSUPPORTED', 'the stand-in has no images', 'none');
  }

  async templates(): Promise<[]> {
    return [];
  }

  async removeImage(ref: string): Promise<never> {
    throw new BrigError('BRIG_IMAGE_NOT_FOUND', `no image ${ref}`, 'none');
  }

  async close(): Promise<void> {}

  private live(): SandboxRecord[] {
    return [...this.records.values()].filter((record) => record.state !== 'stopped');
  }
}

async function startEnvd(dir: string, name: string): Promise<Envd> {
  const home = mkdtempSync(join(dir, `${name}-home-`));
  const socketPath = join(dir, `${name}.sock`);
  const token = randomBytes(16).toString('hex');
  const child = spawn(process.execPath, [ENVD_BUNDLE, '--listen', `unix:${socketPath}`], {
    cwd: home,
    env: { ...process.env, HOME: home, BRIG_ENVD_ACCESS_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('envd listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`envd exited (${code}): ${stderr}`)));
  });
  return { socketPath, token, home, process: child };
}

async function stopEnvd({ process: child }: Envd): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

function rssMiB(): number {
  return process.memoryUsage().rss / (1 << 20);
}

/** How far the process's RSS rose above where it started while `work` ran, in MiB, garbage collected first. */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  collectGarbage();
  const before = rssMiB();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB())), 10);
  try {
    const result = await work();
    return { result, growth: Math.max(peak, rssMiB()) - before };
  } finally {
    clearInterval(sampler);
  }
}

function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** `mib` MiB of zeros, one reused 1 MiB chunk at a time. */
async function* zeros(mib: number): AsyncGenerator<Uint8Array> {
  const chunk = new Uint8Array(1 << 20);
  for (let index = 0; index < mib; index++) yield chunk;
}

/**
 * One HTTP exchange with node:http, the body written with backpressure and the
 * answer counted, not kept (fetch's own upload buffering would hide the gateway's).
 */
async function exchange(base: string, options: RequestOptions, body: AsyncIterable<Uint8Array> | Uint8Array[] = []): Promise<{ status: number; bytes: number; tail: string }> {
  const target = new URL(base);
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: target.hostname, port: target.port, ...options }, (answer) => {
      let bytes = 0;
      let tail = Buffer.alloc(0);
      answer.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        tail = Buffer.concat([tail, chunk.subarray(-4096)]).subarray(-4096);
      });
      answer.on('end', () => resolve({ status: answer.statusCode ?? 0, bytes, tail: tail.toString('latin1') }));
      answer.on('error', reject);
    });
    outgoing.on('error', reject);
    pipeline(Readable.from(body), outgoing, (error) => error && reject(error));
  });
}

/** exchange(), keeping the answer's headers; rejects when the answer is cut short. */
function exchangeWithHeaders(base: string, options: RequestOptions, body: string[] = []): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  const target = new URL(base);
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: target.hostname, port: target.port, ...options }, (answer) => {
      let text = '';
      answer.setEncoding('latin1');
      answer.on('data', (chunk: string) => (text += chunk));
      answer.on('end', () => resolve({ status: answer.statusCode ?? 0, headers: answer.headers, text }));
      answer.on('error', reject);
      answer.on('aborted', () => reject(new Error('the answer was cut short')));
    });
    outgoing.on('error', reject);
    outgoing.end(body.join(''));
  });
}

/** The first error body of a response, as JSON. */
async function errorOf(response: Response): Promise<{ code: unknown; message: string; hint: string; error_code?: string }> {
  return (await response.json()) as { code: unknown; message: string; hint: string };
}

describe('control plane (inject)', () => {
  let manager: StandInManager;
  let app: FastifyInstance;
  before(async () => {
    manager = new StandInManager();
    app = buildApi(manager, { apiKey: API_KEY, bodyLimitBytes: 64 * 1024 });
    await app.ready();
  });
  after(() => app.close());

  const create = async (body: Record<string, unknown> = {}): Promise<Record<string, unknown>> => {
    const response = await app.inject({ method: 'POST', url: '/v2/sandboxes', headers: KEY, payload: { templateID: 'base', ...body } });
    assert.equal(response.statusCode, 201, response.body);
    return response.json();
  };

  test('every control-plane route needs the API key, as X-API-KEY or a bearer token', async () => {
    for (const headers of [{}, { 'x-api-key': 'wrong' }, { authorization: `Bearer ${API_KEY}x` }, { authorization: `Basic ${API_KEY}` }, { 'x-api-key': '' }]) {
      const response = await app.inject({ method: 'GET', url: '/v2/sandboxes', headers });
      assert.equal(response.statusCode, 401, JSON.stringify(headers));
      const body = response.json();
      assert.equal(body.code, 'BRIG_UNAUTHORIZED');
      assert.match(body.hint, /X-API-KEY/);
    }
    for (const headers of [KEY, { authorization: `Bearer ${API_KEY}` }, { authorization: `bearer ${API_KEY}` }]) {
      assert.equal((await app.inject({ method: 'GET', url: '/v2/sandboxes', headers })).statusCode, 200, JSON.stringify(headers));
    }
    assert.throws(() => buildApi(manager, { apiKey: '' }), /empty API key/);
  });

  test('the OpenAPI document and the docs need no key, and list the routes with their schemas', async () => {
    const document = await app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(document.statusCode, 200);
    const paths = document.json().paths as Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
    for (const path of ['/sandboxes', '/v2/sandboxes', '/sandboxes/{sandboxID}', '/sandboxes/{sandboxID}/timeout', '/v2/sandboxes/{sandboxID}/connect', '/v1/sandboxes/{sandboxID}/policy', '/v1/sandboxes/{sandboxID}/stats', '/v1/sandboxes/{sandboxID}/logs']) {
      assert.ok(paths[path], `${path} is documented`);
    }
    assert.ok(paths['/v2/sandboxes']?.post?.requestBody, 'create documents its body');
    assert.ok(paths['/v2/sandboxes']?.post?.responses['201'], 'create documents its answer');
    assert.equal(paths['/openapi.json'], undefined);
    const docs = await app.inject({ method: 'GET', url: '/docs' });
    assert.ok(docs.statusCode < 400, `GET /docs: ${docs.statusCode}`);
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /swagger/i);
  });

  test('create: E2B\'s body in, E2B\'s fields out; timeout in seconds becomes timeoutMs; name and policy pass through', async () => {
    const body = await create({ timeout: 90, metadata: { team: 'a' }, envVars: { A: '1' }, allow_internet_access: true, name: 'first', policy: { resources: { memoryMiB: 2048 } }, keepWorkspace: true, secure: true, mcp: null });
    assert.match(String(body.sandboxID), /^i[0-9a-f]+$/);
    assert.equal(body.templateID, 'base');
    assert.equal(body.clientID, 'brig');
    assert.equal(body.envdVersion, ENVD_VERSION);
    assert.equal(typeof body.envdAccessToken, 'string');
    assert.equal(body.name, 'first');
    assert.deepEqual(manager.requests.at(-1), {
      templateId: 'base',
      timeoutMs: 90_000,
      metadata: { team: 'a' },
      envVars: { A: '1' },
      name: 'first',
      policy: { resources: { memoryMiB: 2048 } },
      keepWorkspace: true,
      allowInternetAccess: true,
    });
    const v1 = await app.inject({ method: 'POST', url: '/sandboxes', headers: KEY, payload: { templateID: 'base' } });
    assert.equal(v1.statusCode, 201);
    assert.equal(manager.requests.at(-1)?.timeoutMs, undefined, 'no timeout: the manager\'s default');
  });

  test('create refuses what it cannot honour, with the field named', async () => {
    const cases: Array<[Record<string, unknown>, number, string, RegExp]> = [
      [{ name: 'dup' }, 201, '', /./],
      [{ name: 'dup' }, 409, 'BRIG_NAME_TAKEN', /dup/],
      [{ policy: { resources: { memoryMiB: 'lots' } } }, 400, 'BRIG_POLICY_INVALID', /resources\.memoryMiB/],
      [{ policy: { nonsense: true } }, 400, 'BRIG_POLICY_INVALID', /nonsense/],
      [{ autoPause: true }, 400, 'BRIG_BAD_REQUEST', /body\.autoPause/],
      [{ network: { rules: { 'api.example.com': [{ transform: { headers: { a: 'b' } } }] } } }, 400, 'BRIG_BAD_REQUEST', /body\.network\.rules/],
      [{ network: { denyOut: ['1.1.1.1'] } }, 400, 'BRIG_BAD_REQUEST', /body\.network\.denyOut/],
      [{ volumeMounts: [{ name: 'v', path: '/data' }] }, 400, 'BRIG_BAD_REQUEST', /body\.volumeMounts/],
      [{ timeout: 'soon' }, 400, 'BRIG_BAD_REQUEST', /body\.timeout must be integer/],
      [{ timeout: 0 }, 400, 'BRIG_BAD_REQUEST', /body\.timeout/],
      [{ name: '../etc' }, 400, 'BRIG_BAD_REQUEST', /body\.name/],
      [{ metadata: 'x' }, 400, 'BRIG_BAD_REQUEST', /body\.metadata must be object/],
      [{ templateID: 'ubuntu' }, 400, 'BRIG_BAD_REQUEST', /ubuntu/],
    ];
    for (const [body, status, code, message] of cases) {
      const response = await app.inject({ method: 'POST', url: '/v2/sandboxes', headers: KEY, payload: { templateID: 'base', ...body } });
      assert.equal(response.statusCode, status, `${JSON.stringify(body)}: ${response.body}`);
      if (status === 201) continue;
      assert.equal(response.json().code, code, JSON.stringify(body));
      assert.match(response.json().message, message, JSON.stringify(body));
    }
  });

  test("E2B's allowOut becomes the allowlist, and a denyOut of all traffic no network", async () => {
    const allowed = await app.inject({ method: 'POST', url: '/sandboxes', headers: KEY, payload: { templateID: 'base', network: { allowOut: ['*.example.com', '1.1.1.1'], denyOut: ['0.0.0.0/0'] } } });
    assert.equal(allowed.statusCode, 201, allowed.body);
    assert.deepEqual(manager.requests.at(-1)?.policy?.network, { mode: 'allowlist', allow: ['*.example.com', '1.1.1.1'] });
    const closed = await app.inject({ method: 'POST', url: '/sandboxes', headers: KEY, payload: { templateID: 'base', network: { denyOut: ['0.0.0.0/0'] } } });
    assert.equal(closed.statusCode, 201, closed.body);
    assert.deepEqual(manager.requests.at(-1)?.policy?.network, { mode: 'none' });
  });

  test('list: pages by limit with X-Next-Token, filters metadata as the SDK encodes it, and state', async () => {
    const tricky = { 'key with space': 'a&b=c%d+e', plain: 'yes' };
    const ids = [];
    for (let index = 0; index < 3; index++) ids.push((await create({ metadata: { ...tricky, index: String(index) } })).sandboxID);
    // The SDK: each key and value encoded, joined as a query string, which is then encoded as one parameter.
    const metadata = new URLSearchParams(Object.fromEntries(Object.entries(tricky).map(([key, value]) => [encodeURIComponent(key), encodeURIComponent(value)]))).toString();
    const url = `/v2/sandboxes?metadata=${encodeURIComponent(metadata)}&limit=2`;
    const first = await app.inject({ method: 'GET', url, headers: KEY });
    assert.equal(first.statusCode, 200, first.body);
    assert.deepEqual(first.json().map((item: { sandboxID: string }) => item.sandboxID), ids.slice(0, 2));
    const next = first.headers['x-next-token'];
    assert.equal(typeof next, 'string');
    const second = await app.inject({ method: 'GET', url: `${url}&nextToken=${next}`, headers: KEY });
    assert.deepEqual(second.json().map((item: { sandboxID: string }) => item.sandboxID), ids.slice(2));
    assert.equal(second.headers['x-next-token'], undefined, 'the last page has no next token');
    const item = second.json()[0];
    for (const field of ['templateID', 'clientID', 'startedAt', 'endAt', 'state', 'cpuCount', 'memoryMB', 'diskSizeMB', 'envdVersion', 'metadata']) assert.ok(field in item, field);
    assert.equal(item.state, 'running');
    assert.deepEqual(item.metadata, { ...tricky, index: '2' });

    const running = await app.inject({ method: 'GET', url: `/v2/sandboxes?state=running,paused&metadata=${encodeURIComponent(metadata)}`, headers: KEY });
    assert.equal(running.json().length, 3);
    const paused = await app.inject({ method: 'GET', url: '/v2/sandboxes?state=paused', headers: KEY });
    assert.deepEqual(paused.json(), [], 'brig never pauses');
    const v1 = await app.inject({ method: 'GET', url: `/sandboxes?metadata=${encodeURIComponent(metadata)}`, headers: KEY });
    assert.equal(v1.json().length, 3, 'the v1 list is every running sandbox, unpaged');
  });

  test('get, set timeout, connect and kill', async () => {
    const { sandboxID: id, envdAccessToken } = await create({ timeout: 60, name: 'detailed' });
    const detail = await app.inject({ method: 'GET', url: `/sandboxes/${id}`, headers: KEY });
    assert.equal(detail.statusCode, 200);
    assert.equal(detail.json().envdAccessToken, envdAccessToken);
    assert.equal(detail.json().memoryMB, DEFAULT_POLICY.resources.memoryMiB);
    assert.equal(detail.json().allowInternetAccess, false);
    assert.equal((await app.inject({ method: 'GET', url: '/sandboxes/detailed', headers: KEY })).json().sandboxID, id, 'a name works as the id');

    const endAt = (): number => Date.parse(manager.get(String(id)).endAt);
    const timeout = await app.inject({ method: 'POST', url: `/sandboxes/${id}/timeout`, headers: KEY, payload: { timeout: 3600 } });
    assert.equal(timeout.statusCode, 204);
    assert.ok(Math.abs(endAt() - (Date.now() + 3_600_000)) < 5000);

    const shorter = await app.inject({ method: 'POST', url: `/v2/sandboxes/${id}/connect`, headers: KEY, payload: { timeout: 10 } });
    assert.equal(shorter.statusCode, 200);
    assert.equal(shorter.json().envdAccessToken, envdAccessToken);
    assert.ok(endAt() > Date.now() + 3_000_000, 'connect never shortens');
    await app.inject({ method: 'POST', url: `/sandboxes/${id}/timeout`, headers: KEY, payload: { timeout: 5 } });
    const longer = await app.inject({ method: 'POST', url: `/sandboxes/${id}/connect`, headers: KEY, payload: { timeout: 600 } });
    assert.equal(longer.statusCode, 200);
    assert.ok(endAt() > Date.now() + 500_000, 'connect extends');
    const bodiless = await app.inject({ method: 'POST', url: `/v2/sandboxes/${id}/connect`, headers: { ...KEY, 'content-type': 'application/json' } });
    assert.equal(bodiless.statusCode, 200, bodiless.body);

    assert.equal((await app.inject({ method: 'DELETE', url: `/sandboxes/${id}`, headers: KEY })).statusCode, 204);
    const again = await app.inject({ method: 'DELETE', url: `/sandboxes/${id}`, headers: KEY });
    assert.equal(again.statusCode, 404);
    // E2B's shape, which the SDK reads (Sandbox.kill → false, getInfo → SandboxNotFoundError); brig's code beside it.
    assert.deepEqual({ code: again.json().code, error_code: again.json().error_code }, { code: 404, error_code: 'BRIG_SANDBOX_NOT_FOUND' });
  });

  test('brig\'s /v1 routes: the resolved policy, stats and envd\'s log', async () => {
    const { sandboxID: id } = await create({ policy: { resources: { pids: 77 } } });
    const policy = await app.inject({ method: 'GET', url: `/v1/sandboxes/${id}/policy`, headers: KEY });
    assert.equal(policy.statusCode, 200);
    assert.equal(policy.json().resources.pids, 77);
    assert.deepEqual(Object.keys(policy.json()).sort(), Object.keys(DEFAULT_POLICY).sort(), 'the whole policy, nothing dropped by serialization');
    assert.deepEqual((await app.inject({ method: 'GET', url: `/v1/sandboxes/${id}/stats`, headers: KEY })).json(), { memoryBytes: 1 << 20, pids: 3, cpuUsec: 1500, diskBytes: 4096 });
    const logs = await app.inject({ method: 'GET', url: `/v1/sandboxes/${id}/logs`, headers: KEY });
    assert.match(String(logs.headers['content-type']), /^text\/plain/);
    assert.equal(logs.body, `envd log of ${id}\n`);
    const unknown = await app.inject({ method: 'GET', url: '/v1/sandboxes/nope/policy', headers: KEY });
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().code, 'BRIG_SANDBOX_NOT_FOUND', 'brig\'s routes keep brig\'s code');
  });

  test('bad input on every route is a 4xx with a code, never a 5xx', async () => {
    const { sandboxID: id } = await create();
    const json = { ...KEY, 'content-type': 'application/json' };
    const big = JSON.stringify({ templateID: 'base', metadata: { filler: 'x'.repeat(80 * 1024) } });
    const cases: Array<{ method: 'GET' | 'POST' | 'DELETE'; url: string; headers?: Record<string, string>; payload?: string; status: number; code: string | number }> = [
      { method: 'POST', url: '/v2/sandboxes', headers: json, payload: '{"templateID":', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: '/sandboxes', headers: json, payload: 'null', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: '/v2/sandboxes', headers: json, payload: '{"__proto__":{"x":1}}', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: '/v2/sandboxes', headers: json, payload: big, status: 413, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: '/v2/sandboxes', headers: { ...KEY, 'content-type': 'application/xml' }, payload: '<x/>', status: 415, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: '/v2/sandboxes', headers: { ...KEY, 'content-type': 'text/plain' }, payload: '{}', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?limit=0', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?limit=many', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?state=asleep', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?nextToken=garbage', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?order=desc', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?metadata=a%3D%25zz', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v2/sandboxes?startedAfter=yesterday', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/sandboxes/nope', headers: KEY, status: 404, code: 404 },
      { method: 'GET', url: `/sandboxes/${'x'.repeat(200)}`, headers: KEY, status: 414, code: 'BRIG_BAD_REQUEST' },
      { method: 'DELETE', url: '/sandboxes/nope', headers: KEY, status: 404, code: 404 },
      { method: 'POST', url: '/sandboxes/nope/timeout', headers: json, payload: '{"timeout":5}', status: 404, code: 404 },
      { method: 'POST', url: `/sandboxes/${id}/timeout`, headers: json, payload: '{}', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: `/sandboxes/${id}/timeout`, headers: json, payload: '{"timeout":-1}', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: `/sandboxes/${id}/timeout`, headers: json, payload: 'five', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'POST', url: '/v2/sandboxes/nope/connect', headers: json, payload: '{"timeout":5}', status: 404, code: 404 },
      { method: 'POST', url: '/sandboxes/nope/connect', headers: json, payload: '{"timeout":5}', status: 404, code: 404 },
      { method: 'POST', url: `/v2/sandboxes/${id}/connect`, headers: json, payload: '{"timeout":"x"}', status: 400, code: 'BRIG_BAD_REQUEST' },
      { method: 'GET', url: '/v1/sandboxes/nope/stats', headers: KEY, status: 404, code: 'BRIG_SANDBOX_NOT_FOUND' },
      { method: 'GET', url: '/v1/sandboxes/nope/logs', headers: KEY, status: 404, code: 'BRIG_SANDBOX_NOT_FOUND' },
      { method: 'GET', url: '/no/such/route', headers: KEY, status: 404, code: 'BRIG_NOT_FOUND' },
      { method: 'POST', url: '/sandboxes/nope/pause', headers: KEY, status: 404, code: 'BRIG_NOT_FOUND' },
      { method: 'GET', url: '/sandboxes/%E0%A4%A', headers: KEY, status: 400, code: 'BRIG_BAD_REQUEST' },
    ];
    for (const { method, url, headers, payload, status, code } of cases) {
      const response = await app.inject({ method, url, headers, payload });
      const label = `${method} ${url.slice(0, 60)} ${payload?.slice(0, 40) ?? ''}: ${response.body.slice(0, 300)}`;
      assert.equal(response.statusCode, status, label);
      assert.equal(response.json().code, code, label);
      assert.equal(typeof response.json().message, 'string', label);
      assert.equal(typeof response.json().hint, 'string', label);
    }
    const timeoutField = await app.inject({ method: 'POST', url: `/sandboxes/${id}/timeout`, headers: json, payload: '{}' });
    assert.match(timeoutField.json().message, /body\.timeout is required/);
    // A field a newer SDK adds is ignored, not refused: E2B's bodies grow.
    assert.equal((await app.inject({ method: 'POST', url: `/sandboxes/${id}/timeout`, headers: json, payload: '{"timeout":5,"extra":1}' })).statusCode, 204);
  });

  test('a fault of brig\'s own is a 500 with a code, not a crash', async () => {
    const response = await app.inject({ method: 'GET', url: '/v1/sandboxes/explodes/stats', headers: KEY });
    assert.equal(response.statusCode, 500);
    assert.equal(response.json().code, 'BRIG_INTERNAL');
  });
});

describe('envd gateway (envd from its bundle on unix sockets, the e2b SDK, plain fetch)', () => {
  let dir: string;
  let manager: StandInManager;
  let app: FastifyInstance;
  let url: string;
  let alpha: Envd;
  let beta: Envd;
  let sandbox: Sandbox;
  let betaId: string;
  const sdk = (extra: Partial<SandboxOpts> = {}): SandboxOpts => ({ apiKey: API_KEY, apiUrl: url, sandboxUrl: url, ...extra }) as SandboxOpts;

  before(async () => {
    assert.ok(existsSync(ENVD_BUNDLE), 'dist/envd.cjs: run `npm run build` first');
    dir = mkdtempSync(join(tmpdir(), 'brig-api-'));
    [alpha, beta] = await Promise.all([startEnvd(dir, 'alpha'), startEnvd(dir, 'beta')]);
    manager = new StandInManager();
    manager.envds.push(alpha, beta);
    app = buildApi(manager, { apiKey: API_KEY });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
    sandbox = await Sandbox.create(sdk({ metadata: { suite: 'gateway' } }));
    betaId = String((await (await fetch(`${url}/v2/sandboxes`, { method: 'POST', headers: { ...KEY, 'content-type': 'application/json' }, body: '{"templateID":"base"}' })).json()).sandboxID);
  });
  after(async () => {
    await app.close();
    await Promise.all([alpha, beta].filter(Boolean).map(stopEnvd));
    rmSync(dir, { recursive: true, force: true });
  });

  const envdFetch = (path: string, id: string, token: string | null, init: RequestInit = {}): Promise<Response> =>
    fetch(`${url}${path}`, { ...init, headers: { 'e2b-sandbox-id': id, ...(token ? { 'x-access-token': token } : {}), ...(init.headers as Record<string, string>) } });
  const rpc = (id: string, token: string | null, method: string, body: unknown): Promise<Response> =>
    envdFetch(`/${method}`, id, token, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' } });

  test('the SDK creates a sandbox and runs a command whose output streams through the gateway', async () => {
    assert.equal(sandbox.sandboxId, [...manager.records.keys()][0]);
    const arrivals: number[] = [];
    let stdout = '';
    const result = await sandbox.commands.run('for i in 1 2 3; do echo "line $i"; sleep 0.3; done; echo done >&2', {
      onStdout: (data) => {
        stdout += data;
        arrivals.push(Date.now());
      },
    });
    assert.equal(result.exitCode, 0);
    assert.equal(stdout, 'line 1\nline 2\nline 3\n');
    assert.equal(result.stderr, 'done\n');
    assert.ok((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0) >= 400, `output arrived as it was written, not at the end: ${arrivals.map((at) => at - (arrivals[0] ?? 0))}`);
  });

  test('files written and read through the gateway land in that sandbox only', async () => {
    await sandbox.files.write('notes/hello.txt', 'hello from the gateway');
    assert.equal(await sandbox.files.read('notes/hello.txt'), 'hello from the gateway');
    assert.equal(readFileSync(join(alpha.home, 'notes/hello.txt'), 'utf8'), 'hello from the gateway');
    assert.equal(existsSync(join(beta.home, 'notes/hello.txt')), false);
  });

  test('signed URLs work with no sandbox id and no token, and only for what they were signed', async () => {
    writeFileSync(join(alpha.home, 'signed.txt'), 'alpha\'s file');
    writeFileSync(join(beta.home, 'signed.txt'), 'beta\'s file');
    const download = await sandbox.downloadUrl('signed.txt');
    assert.ok(download.startsWith(`${url}/files?`), download);
    const read = await fetch(download);
    assert.equal(read.status, 200);
    assert.equal(await read.text(), 'alpha\'s file', 'the sandbox whose token signed it');

    const upload = await sandbox.uploadUrl('uploaded/by-url.txt');
    const form = new FormData();
    form.append('file', new Blob(['sent by a browser']), 'by-url.txt');
    const written = await fetch(upload, { method: 'POST', body: form });
    assert.equal(written.status, 200, await written.clone().text());
    assert.equal(readFileSync(join(alpha.home, 'uploaded/by-url.txt'), 'utf8'), 'sent by a browser');

    const tampered = download.replace('signed.txt', 'other.txt');
    assert.equal((await fetch(tampered)).status, 401, 'a signature covers its path');
    assert.equal((await fetch(download, { method: 'POST', body: 'x' })).status, 401, 'a read signature does not write');
    const expired = await sandbox.downloadUrl('signed.txt', { useSignatureExpiration: 1 });
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const late = await fetch(expired);
    assert.equal(late.status, 401);
    assert.match((await errorOf(late)).message, /expired/);
  });

  test('one sandbox\'s token never drives another sandbox', async () => {
    const alphaId = sandbox.sandboxId;
    const list = { path: '/home' };
    assert.equal((await rpc(alphaId, alpha.token, 'filesystem.Filesystem/ListDir', list)).status, 200);
    for (const [id, token] of [[betaId, alpha.token], [alphaId, beta.token], [alphaId, null], [alphaId, 'guess']] as const) {
      const response = await rpc(id, token, 'filesystem.Filesystem/ListDir', list);
      assert.equal(response.status, 401, `${id} with ${token === alpha.token ? 'alpha' : token === beta.token ? 'beta' : token}'s token`);
      assert.equal((await errorOf(response)).code, 'BRIG_UNAUTHORIZED');
    }
    // A wrong token is refused even when it comes with a valid signature (as envd does).
    const signed = new URL(await sandbox.downloadUrl('signed.txt'));
    assert.equal((await envdFetch(`${signed.pathname}${signed.search}`, alphaId, beta.token)).status, 401);
    // alpha's signed URL sent with beta's id reaches beta, whose token did not sign it.
    assert.equal((await envdFetch(`${signed.pathname}${signed.search}`, betaId, null)).status, 401);
    // envd itself refuses too, should anything get past the gateway.
    const direct = await new Promise<number>((resolve, reject) => {
      request({ socketPath: alpha.socketPath, method: 'POST', path: '/filesystem.Filesystem/ListDir', headers: { 'content-type': 'application/json', 'x-access-token': beta.token } }, (answer) => {
        answer.resume();
        resolve(answer.statusCode ?? 0);
      }).on('error', reject).end(JSON.stringify(list));
    });
    assert.equal(direct, 401);
  });

  test('the path form /sandboxes/{id}/envd/… reaches the same envd without headers but the token', async () => {
    const health = await fetch(`${url}/sandboxes/${sandbox.sandboxId}/envd/health`, { headers: { 'x-access-token': alpha.token } });
    assert.equal(health.status, 204);
    const file = await fetch(`${url}/sandboxes/${sandbox.sandboxId}/envd/files?path=signed.txt`, { headers: { 'x-access-token': alpha.token } });
    assert.equal(await file.text(), 'alpha\'s file');
    assert.equal((await fetch(`${url}/sandboxes/${sandbox.sandboxId}/envd/health`)).status, 401, 'no token, no entry');
    assert.equal((await fetch(`${url}/sandboxes/${sandbox.sandboxId}/envd/health`, { headers: { 'x-access-token': beta.token } })).status, 401);
  });

  test('the control plane through the SDK: list, getInfo, setTimeout, connect', async () => {
    const listed = await Sandbox.list(sdk({ query: { metadata: { suite: 'gateway' } } } as Partial<SandboxOpts>)).nextItems();
    assert.deepEqual(listed.map((info) => info.sandboxId), [sandbox.sandboxId]);
    const info = await sandbox.getInfo();
    assert.equal(info.envdVersion, ENVD_VERSION);
    assert.equal(info.state, 'running');
    await sandbox.setTimeout(600_000);
    assert.ok(info.endAt.getTime() < (await sandbox.getInfo()).endAt.getTime());
    const again = await Sandbox.connect(sandbox.sandboxId, sdk());
    assert.equal((await again.commands.run('echo connected')).stdout, 'connected\n');
    assert.equal(await again.isRunning(), true);
  });

  test('a 256 MiB upload, its download and a 1 GiB stdout stream each pass in bounded memory', { timeout: 120_000 }, async (t) => {
    const headers = { 'e2b-sandbox-id': sandbox.sandboxId, 'x-access-token': alpha.token };
    const upload = await peakGrowth(() => exchange(url, { method: 'POST', path: '/files?path=big.bin', headers: { ...headers, 'content-type': 'application/octet-stream' } }, zeros(256)));
    assert.equal(upload.result.status, 200, upload.result.tail);
    assert.equal(statSync(join(alpha.home, 'big.bin')).size, 256 << 20);

    const download = await peakGrowth(() => exchange(url, { method: 'GET', path: '/files?path=big.bin', headers }));
    assert.equal(download.result.bytes, 256 << 20);

    const start = encodeEnvelope({ process: { cmd: '/bin/sh', args: ['-c', 'head -c 1073741824 /dev/zero'] } });
    const stream = await peakGrowth(() => exchange(url, { method: 'POST', path: '/process.Process/Start', headers: { ...headers, 'content-type': 'application/connect+json', 'connect-protocol-version': '1' } }, [start]));
    assert.equal(stream.result.status, 200);
    // Base64 makes 1 GiB of output 4/3 GiB on the wire; the stream ends with the end event and end-of-stream.
    assert.ok(stream.result.bytes > (1 << 30) * (4 / 3), `${stream.result.bytes} bytes streamed`);
    assert.match(stream.result.tail, /"end":\{"exitCode":0,"exited":true/);

    // Buffering would grow the process by the body's size (256 MiB, 1.4 GiB); streaming holds a
    // few chunks plus garbage not yet collected (25-60 MiB measured, the client's included).
    for (const [step, growth] of [['upload', upload.growth], ['download', download.growth], ['stdout stream', stream.growth]] as const) {
      t.diagnostic(`${step}: RSS +${Math.round(growth)} MiB`);
      assert.ok(growth < 128, `${step}: RSS grew by ${Math.round(growth)} MiB`);
    }
  });

  test('a slow reader holds the stream back instead of filling the gateway\'s memory', async () => {
    const headers = { 'e2b-sandbox-id': sandbox.sandboxId, 'x-access-token': alpha.token };
    const before = rssMiB();
    const download = await fetch(`${url}/files?path=big.bin`, { headers });
    const reader = (download.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const grown = rssMiB() - before;
    await reader.cancel();
    assert.ok(grown < 48, `RSS grew by ${Math.round(grown)} MiB while the reader paused`);
  });

  test('kill: the SDK sees the sandbox gone (kill → false, isRunning → false, getInfo → SandboxNotFoundError)', async () => {
    const victim = await Sandbox.connect(betaId, sdk());
    assert.equal(await victim.isRunning(), true);
    assert.equal(await Sandbox.kill(betaId, sdk()), true);
    assert.equal(await Sandbox.kill(betaId, sdk()), false);
    assert.equal(await victim.isRunning(), false);
    await assert.rejects(Sandbox.getInfo(betaId, sdk()), SandboxNotFoundError);
    await assert.rejects(victim.commands.run('echo nope'), (error: Error) => /not running|not found|timeout/i.test(error.message));
    const response = await rpc(betaId, beta.token, 'process.Process/List', {});
    assert.equal(response.status, 502);
    assert.equal((await errorOf(response)).code, 'BRIG_SANDBOX_NOT_FOUND');
  });

  test('an envd that stopped answering is a 502 with a code', async () => {
    const orphan = await manager.create({});
    const response = await rpc(orphan.id, orphan.envdAccessToken, 'process.Process/List', {});
    assert.equal(response.status, 502);
    assert.match((await errorOf(response)).message, /does not answer/);
  });

  test('closing the API cuts open streams instead of waiting for them', async () => {
    const start = new Uint8Array(encodeEnvelope({ process: { cmd: '/bin/sh', args: ['-c', 'sleep 30'] } }));
    const stream = await fetch(`${url}/process.Process/Start`, {
      method: 'POST',
      body: start,
      headers: { 'e2b-sandbox-id': sandbox.sandboxId, 'x-access-token': alpha.token, 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
    });
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    const began = Date.now();
    await app.close();
    assert.ok(Date.now() - began < 5000, `close took ${Date.now() - began} ms`);
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) throw new Error('the stream ended cleanly instead of being cut');
    });
  });
});

describe('gateway mechanics (a recording server in envd\'s place)', () => {
  let dir: string;
  let manager: StandInManager;
  let app: FastifyInstance;
  let url: string;
  let fake: Server;
  let id: string;
  let token: string;
  const seen: IncomingMessage[] = [];
  const closed: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'brig-api-fake-'));
    const socketPath = join(dir, 'fake-envd.sock');
    fake = createServer((incoming, outgoing) => {
      seen.push(incoming);
      incoming.resume();
      outgoing.once('close', () => closed.push(incoming.url ?? ''));
      if (incoming.url === '/forever') {
        outgoing.writeHead(200, { 'content-type': 'application/connect+json' });
        const tick = setInterval(() => outgoing.write('tick'), 10);
        outgoing.once('close', () => clearInterval(tick));
      } else if (incoming.url === '/dies') {
        // Chunked, so a clean end would look complete to the client: only a cut tells it something broke.
        outgoing.writeHead(200, { 'content-type': 'application/octet-stream' });
        outgoing.write(Buffer.alloc(1000));
        setTimeout(() => outgoing.destroy(), 50);
      } else {
        incoming.on('end', () => outgoing.writeHead(200, { 'keep-alive': 'timeout=5', 'x-envd': 'yes', 'proxy-authenticate': 'Basic' }).end('ok'));
      }
    });
    await new Promise<void>((resolve) => fake.listen(socketPath, resolve));
    manager = new StandInManager();
    manager.envds.push({ socketPath, token: 'fake-token', home: dir });
    ({ id, envdAccessToken: token } = await manager.create({}));
    app = buildApi(manager, { apiKey: API_KEY });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await app.close();
    fake.closeAllConnections();
    await new Promise((resolve) => fake.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  test('hop-by-hop headers and the daemon\'s API key are not forwarded; the rest is, both ways', async () => {
    const response = await exchangeWithHeaders(url, {
      method: 'POST',
      path: '/process.Process/List?x=1',
      headers: {
        'e2b-sandbox-id': id,
        'x-access-token': token,
        'x-api-key': API_KEY,
        connection: 'keep-alive, x-per-hop',
        'x-per-hop': 'dropped',
        'proxy-authorization': 'Basic eDp5',
        te: 'trailers',
        authorization: `Bearer ${API_KEY}`,
        'content-type': 'application/json',
        'x-end-to-end': 'kept',
      },
    }, ['{}']);
    assert.equal(response.status, 200);
    const headers = seen.at(-1)?.headers ?? {};
    assert.equal(seen.at(-1)?.url, '/process.Process/List?x=1');
    for (const name of ['x-api-key', 'x-per-hop', 'proxy-authorization', 'te', 'authorization']) assert.equal(headers[name], undefined, name);
    assert.equal(headers['x-end-to-end'], 'kept');
    assert.equal(headers['x-access-token'], token);
    assert.equal(headers['e2b-sandbox-id'], id);
    assert.equal(response.headers['x-envd'], 'yes');
    assert.equal(response.headers['proxy-authenticate'], undefined);

    await exchangeWithHeaders(url, { method: 'POST', path: '/process.Process/List', headers: { 'e2b-sandbox-id': id, 'x-access-token': token, authorization: 'Basic dXNlcjo=' } }, ['{}']);
    assert.equal(seen.at(-1)?.headers.authorization, 'Basic dXNlcjo=', 'envd\'s own Authorization (the user) passes');
  });

  test('a client that leaves closes the stream to envd', async () => {
    const controller = new AbortController();
    const response = await fetch(`${url}/forever`, { headers: { 'e2b-sandbox-id': id, 'x-access-token': token }, signal: controller.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    await eventually(() => closed.includes('/forever'));
    assert.ok(closed.includes('/forever'), 'envd\'s side was closed');
  });

  test('envd dying mid-answer reaches the client as a cut stream, not a clean end', async () => {
    await assert.rejects(exchangeWithHeaders(url, { method: 'GET', path: '/dies', headers: { 'e2b-sandbox-id': id, 'x-access-token': token } }));
  });

  test("another port than envd's is asked of envd as a CONNECT to that loopback port, with the sandbox's token", async () => {
    const asked: Array<{ target: string; token: unknown }> = [];
    const answer = (request: IncomingMessage, socket: Duplex): void => {
      asked.push({ target: request.url ?? '', token: request.headers['x-access-token'] });
      socket.end('HTTP/1.1 502 Bad Gateway\r\nX-Brig-Error: nothing listens on port 8080\r\nContent-Length: 0\r\n\r\n');
    };
    fake.on('connect', answer);
    try {
      const response = await fetch(`${url}/`, { headers: { 'e2b-sandbox-id': id, 'x-access-token': token, 'e2b-sandbox-port': '8080' } });
      assert.equal(response.status, 502);
      assert.equal((await errorOf(response)).code, 'BRIG_PORT_CLOSED');
      assert.deepEqual(asked, [{ target: 'localhost:8080', token }]);
    } finally {
      fake.off('connect', answer);
    }
  });
});
