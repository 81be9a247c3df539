import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EGRESS_PORT } from '../src/protocol/index.ts';
import { createGateway, loadGatewayConfig, startSandboxEgress, type Gateway, type SandboxEgress, type Spent } from '../src/egress/index.ts';
import { percentile } from './measure.ts';

const BRIG = fileURLToPath(new URL('../bin/brig', import.meta.url));

/**
 * Issue 5's benchmark: the latency brig's egress proxy and LLM gateway add to
 * one request (p50, p99 of sequential keep-alive requests), and streaming
 * throughput through each. Target: ≤ 2 ms added at p50.
 *
 * One stand-in upstream (its own Node process on 127.0.0.1) answers a small
 * JSON body, a small Messages answer with usage, a bulk download and a
 * server-sent-events stream of Messages deltas. The same client program (its
 * own Node process, Node's http module, one keep-alive connection per path)
 * runs on the host and inside a real `brig run --net allowlist --llm
 * anthropic` jail, both driven over stdin so every path is measured in the
 * same run, interleaved in batches. Paths:
 *   - direct: host → upstream (the baseline);
 *   - host → egress socket: the host client on the proxy's unix socket,
 *     started here with startSandboxEgress (no jail, no relay);
 *   - jail → relay → proxy: through brig-relay on 127.0.0.1:3128;
 * each as an absolute-form request (GET http://…), inside one CONNECT tunnel,
 * and to the gateway (POST /anthropic/v1/messages, key injected).
 */
export async function benchEgress(requests: number, bulkMiB = 256, sseMiB = 64): Promise<string> {
  if (!Number.isInteger(requests) || requests < BATCH) throw new Error(`benchEgress: requests must be a whole number ≥ ${BATCH} (a p99 of fewer is noise)`);
  const scratch = mkdtempSync(join(tmpdir(), 'brig-bench-egress-'));
  const workspace = join(scratch, 'ws');
  mkdirSync(workspace);
  writeFileSync(join(workspace, 'upstream.mjs'), UPSTREAM);
  writeFileSync(join(workspace, 'client.mjs'), CLIENT);
  const children: ChildProcess[] = [];
  let egress: SandboxEgress | null = null;
  let gateway: Gateway | null = null;
  try {
    const upstreamChild = spawn(process.execPath, [join(workspace, 'upstream.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(upstreamChild);
    const port = Number(await firstLine(upstreamChild));
    const upstream = `127.0.0.1:${port}`;
    const upstreamUrl = `http://${upstream}`;

    // The host side of a sandbox's egress as brig run has it, minus the jail and the relay.
    const spent: Spent = { requests: 0, inputTokens: 0, outputTokens: 0 };
    const transcriptFile = join(scratch, 'transcript.jsonl');
    gateway = createGateway(loadGatewayConfig({ ANTHROPIC_API_KEY: 'bench-key', BRIG_ANTHROPIC_URL: upstreamUrl }));
    egress = await startSandboxEgress({
      sandbox: 'bench',
      dir: join(scratch, 'egress'),
      owner: null,
      network: () => ({ mode: 'allowlist', allow: [upstream], deny: [], llm: ['anthropic'], budget: { requests: 0, tokens: 0 }, publish: 'none' }),
      gateway,
      ledger: {
        violation: (violation) => process.stderr.write(`bench: egress refused ${violation.target}: ${violation.rule}\n`),
        spent: () => spent,
        charge: (_sandbox, delta) => {
          spent.requests += delta.requests;
          spent.inputTokens += delta.inputTokens;
          spent.outputTokens += delta.outputTokens;
        },
        transcript: (entry) => appendFileSync(transcriptFile, JSON.stringify(entry) + '\n', { mode: 0o600 }),
      },
    });
    const socket = { socketPath: egress.socketPath };
    const relay = { host: '127.0.0.1', port: EGRESS_PORT };

    const hostClient = new Client(spawn(process.execPath, [join(workspace, 'client.mjs'), upstream], { cwd: workspace, stdio: ['pipe', 'pipe', 'pipe'] }), 'host client');
    children.push(hostClient.child);
    // By name too: the proxy resolves a name on every request (and pins what it checked), an address it takes as it is.
    const byName = `localhost:${port}`;
    const allow = [upstream, byName, `[::1]:${port}`].flatMap((entry) => ['--allow', entry]);
    const jailEnv = { ...process.env, BRIG_STATE_DIR: join(scratch, 'state'), ANTHROPIC_API_KEY: 'bench-key', BRIG_ANTHROPIC_URL: upstreamUrl };
    const jailArgv = ['run', '--net', 'allowlist', ...allow, '--llm', 'anthropic', '--', process.execPath, 'client.mjs', upstream];
    const jailClient = new Client(spawn(BRIG, jailArgv, { cwd: workspace, env: jailEnv, stdio: ['pipe', 'pipe', 'pipe'] }), 'brig run client');
    children.push(jailClient.child);

    const direct: PathSpec = { name: 'direct, host → upstream', client: hostClient, route: { kind: 'direct' }, request: 'small', stream: 'bulk' };
    const directMessages: PathSpec = { name: 'direct, host → upstream', client: hostClient, route: { kind: 'direct' }, request: 'messages', stream: 'sse' };
    const paths: PathSpec[] = [
      direct,
      { name: 'host → egress socket, absolute-form', client: hostClient, route: { kind: 'absolute', via: socket }, request: 'small', stream: 'bulk', baseline: direct },
      { name: 'host → egress socket, CONNECT tunnel', client: hostClient, route: { kind: 'connect', via: socket }, request: 'small', stream: 'bulk', baseline: direct },
      { name: 'jail → relay → proxy, absolute-form', client: jailClient, route: { kind: 'absolute', via: relay }, request: 'small', stream: 'bulk', baseline: direct, target: 'proxy, absolute-form' },
      { name: 'jail → relay → proxy, absolute-form, by name', client: jailClient, route: { kind: 'absolute', via: relay, authority: byName }, request: 'small', baseline: direct },
      { name: 'jail → relay → proxy, CONNECT tunnel', client: jailClient, route: { kind: 'connect', via: relay }, request: 'small', stream: 'bulk', baseline: direct, target: 'proxy, CONNECT' },
      directMessages,
      { name: 'jail → relay → proxy, absolute-form', client: jailClient, route: { kind: 'absolute', via: relay }, request: 'messages', stream: 'sse', baseline: directMessages },
      { name: 'host → egress socket → gateway', client: hostClient, route: { kind: 'gateway', via: socket }, request: 'messages', stream: 'sse', baseline: directMessages },
      { name: 'jail → relay → gateway', client: jailClient, route: { kind: 'gateway', via: relay }, request: 'messages', stream: 'sse', baseline: directMessages, target: 'gateway' },
    ];
    const streamMiB = (stream: 'bulk' | 'sse') => (stream === 'bulk' ? bulkMiB : sseMiB);

    // Every process warms up on every path (JIT, connection pools, tunnels); then batches, round-robin, so drift falls on all paths alike.
    for (const spec of paths) {
      await spec.client.ask({ route: spec.route, op: 'latency', request: spec.request, count: WARM_UP });
      if (spec.stream) await spec.client.ask({ route: spec.route, op: 'stream', stream: spec.stream, mib: 8 });
    }
    const latencies = paths.map((): number[] => []);
    for (let done = 0; done < requests; done += BATCH) {
      for (const [index, spec] of paths.entries()) {
        const answer = await spec.client.ask({ route: spec.route, op: 'latency', request: spec.request, count: Math.min(BATCH, requests - done) });
        latencies[index]?.push(...(answer.ms ?? []));
      }
    }
    const throughputs = paths.map((): number[] => []);
    for (let round = 0; round < STREAM_ROUNDS; round++) {
      for (const [index, spec] of paths.entries()) {
        if (!spec.stream) continue;
        const mib = streamMiB(spec.stream);
        const answer = await spec.client.ask({ route: spec.route, op: 'stream', stream: spec.stream, mib });
        if ((answer.bytes ?? 0) < mib * 1024 * 1024) throw new Error(`${spec.name}: streamed ${answer.bytes} bytes, expected ${mib} MiB`);
        throughputs[index]?.push((answer.bytes ?? 0) / 1e6 / ((answer.elapsed ?? Infinity) / 1000));
      }
    }
    await Promise.all([hostClient.end(), jailClient.end()]);
    if (jailClient.child.exitCode !== 0) throw new Error(`brig run exited ${jailClient.child.exitCode}: ${jailClient.stderr}`);

    const results = new Map(
      paths.map((spec, index) => {
        const sorted = (latencies[index] ?? []).sort((a, b) => a - b);
        const rates = (throughputs[index] ?? []).sort((a, b) => a - b);
        return [spec, { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), mbps: percentile(rates, 0.5) }];
      }),
    );
    const measured = (spec: PathSpec) => results.get(spec) ?? { p50: NaN, p99: NaN, mbps: NaN };
    const added = (spec: PathSpec): number => measured(spec).p50 - measured(spec.baseline ?? spec).p50;
    const header = ['path', 'request', 'p50 ms', 'p99 ms', 'added p50 ms', 'stream MB/s', '× direct'];
    const rows = paths.map((spec) => {
      const { p50, p99, mbps } = measured(spec);
      return [
        spec.name,
        spec.request === 'small' ? 'GET, 120 B JSON' : 'POST Messages, 350 B',
        p50.toFixed(3),
        p99.toFixed(3),
        spec.baseline ? `+${added(spec).toFixed(3)}` : '—',
        spec.stream ? `${mbps.toFixed(0)} (${spec.stream === 'bulk' ? `${bulkMiB} MiB` : `${sseMiB} MiB SSE`})` : '—',
        spec.stream ? (mbps / measured(spec.baseline ?? spec).mbps).toFixed(2) : '—',
      ];
    });
    const verdicts = paths.flatMap((spec) => (spec.target ? [`${spec.target} +${added(spec).toFixed(2)} ms: ${added(spec) <= 2 ? 'met' : 'NOT met'}`] : []));
    return [
      `### egress: ${requests} sequential keep-alive requests per path after ${WARM_UP} to warm up, interleaved in batches of ${BATCH}; stream MB/s the median of ${STREAM_ROUNDS}`,
      '',
      formatTable(header, rows),
      '',
      `target: ≤ 2 ms added at p50 — ${verdicts.join('; ')}`,
    ].join('\n');
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.all(children.map((child) => exited(child)));
    await egress?.close();
    gateway?.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

const STREAM_ROUNDS = 3;
const WARM_UP = 200;
const BATCH = 100;

type Via = { host: string; port: number } | { socketPath: string };
/** `authority`: the upstream as the request names it (by default 127.0.0.1:PORT). */
type Route = { kind: 'direct' } | { kind: 'absolute' | 'connect' | 'gateway'; via: Via; authority?: string };

interface PathSpec {
  name: string;
  client: Client;
  route: Route;
  request: 'small' | 'messages';
  /** What it streams for the throughput column, if anything. */
  stream?: 'bulk' | 'sse';
  /** The direct path its added latency (and its throughput ratio) is counted from. */
  baseline?: PathSpec;
  /** On a path the ≤ 2 ms target is judged on: what the verdict calls it. */
  target?: string;
}

type Command = { route: Route; op: 'latency'; request: 'small' | 'messages'; count: number } | { route: Route; op: 'stream'; stream: 'bulk' | 'sse'; mib: number };

interface Answer {
  ms?: number[];
  bytes?: number;
  elapsed?: number;
  error?: string;
}

/** The client program, driven one command at a time: a JSON line in, a JSON line out. */
class Client {
  private readonly lines: AsyncIterator<string>;
  /** Kept, and shown only when something fails: brig run ends with a summary of what its gateway served. */
  stderr = '';

  constructor(
    readonly child: ChildProcess,
    private readonly label: string,
  ) {
    if (!child.stdout) throw new Error(`${label}: no stdout`);
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  async ask(command: Command): Promise<Answer> {
    this.child.stdin?.write(JSON.stringify(command) + '\n');
    const line = await this.lines.next();
    if (line.done) throw new Error(`${this.label} exited (code ${this.child.exitCode}) before answering ${JSON.stringify(command)}: ${this.stderr}`);
    const answer = JSON.parse(line.value) as Answer;
    if (answer.error) throw new Error(`${this.label}: ${answer.error}\n${this.stderr}`);
    return answer;
  }

  async end(): Promise<void> {
    this.child.stdin?.end();
    await exited(this.child);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function firstLine(child: ChildProcess): Promise<string> {
  if (!child.stdout) throw new Error('no stdout');
  for await (const line of createInterface({ input: child.stdout })) return line;
  throw new Error(`the stand-in upstream exited (code ${child.exitCode}) before listening`);
}

function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

/**
 * The stand-in upstream: GET /small (120 B of JSON), POST /v1/messages (a
 * small Messages answer with usage; with "stream":true in the body, ?mib=N of
 * Messages server-sent events), GET /bulk?mib=N (N MiB as fast as the client
 * takes them). Prints its port.
 */
const UPSTREAM = String.raw`
import { createServer } from 'node:http';
const SMALL = JSON.stringify({ ok: true, id: 'bench', items: [1, 2, 3], text: 'a small answer from the stand-in upstream, about 120 bytes in all' });
const MESSAGE = JSON.stringify({ id: 'msg_bench', type: 'message', role: 'assistant', model: 'claude-bench', content: [{ type: 'text', text: 'Hello from the stand-in upstream.' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 12, output_tokens: 9 } });
const BLOCK = Buffer.alloc(64 * 1024, 120);
const event = (type, data) => 'event: ' + type + '\ndata: ' + JSON.stringify({ type, ...data }) + '\n\n';
const DELTA = event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'tokens stream by, each delta a few words long, as a model writes them out. ' } });
const SSE_BLOCK = Buffer.from(DELTA.repeat(Math.floor(64 * 1024 / DELTA.length)));
const START = event('message_start', { message: { id: 'msg_bench', type: 'message', role: 'assistant', model: 'claude-bench', content: [], usage: { input_tokens: 12, output_tokens: 1 } } }) + event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
const END = event('content_block_stop', { index: 0 }) + event('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 1000 } }) + event('message_stop', {});

function pump(res, block, total, last) {
  let sent = 0;
  const go = () => {
    while (sent < total) {
      const size = Math.min(block.length, total - sent);
      sent += size;
      if (!res.write(size === block.length ? block : block.subarray(0, size))) return void res.once('drain', go);
    }
    res.end(last);
  };
  go();
}

const server = createServer({ keepAliveTimeout: 120000 }, (req, res) => {
  const url = new URL(req.url, 'http://upstream');
  const mib = Number(url.searchParams.get('mib') ?? 1);
  if (req.method === 'GET' && url.pathname === '/small') return void res.writeHead(200, { 'content-type': 'application/json', 'content-length': SMALL.length }).end(SMALL);
  if (req.method === 'GET' && url.pathname === '/bulk') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': mib * 1024 * 1024 });
    return pump(res, BLOCK, mib * 1024 * 1024);
  }
  if (req.method === 'POST' && url.pathname === '/v1/messages') {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      if (req.headers['x-api-key'] === undefined) return void res.writeHead(401).end();
      if (!body.includes('"stream":true')) return void res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(MESSAGE) }).end(MESSAGE);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(START);
      pump(res, SSE_BLOCK, mib * 1024 * 1024, END);
    });
    return;
  }
  res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * The client, the same program on the host and in the jail: one keep-alive
 * connection per route, sequential requests, each timed from the call to
 * the end of its body. Reads commands (JSON lines) on stdin, answers each on
 * stdout. Node's http module reads no proxy variable: every route says where
 * it connects (the upstream, the egress socket, or the relay's port).
 */
const CLIENT = String.raw`
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
const upstream = process.argv[2];
const [upstreamHost, upstreamPort] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];
const PROMPT = JSON.stringify({ model: 'claude-bench', max_tokens: 1024, messages: [{ role: 'user', content: 'Say hello. '.repeat(24) }] });
const STREAM_PROMPT = JSON.stringify({ model: 'claude-bench', max_tokens: 1024, stream: true, messages: [{ role: 'user', content: 'Say hello. '.repeat(24) }] });
const agents = new Map();

function connectTunnel(via, authority) {
  return new Promise((resolve, reject) => {
    const req = request({ ...via, method: 'CONNECT', path: authority, agent: false, headers: { host: authority } });
    req.once('connect', (res, socket) => (res.statusCode === 200 ? resolve(socket) : reject(new Error('CONNECT answered ' + res.statusCode))));
    req.once('error', reject);
    req.end();
  });
}

async function agentFor(route) {
  const key = JSON.stringify(route);
  let agent = agents.get(key);
  if (agent) return agent;
  agent = new Agent({ keepAlive: true, maxSockets: 1 });
  if (route.kind === 'connect') {
    const tunnel = await connectTunnel(route.via, route.authority ?? upstream);
    tunnel.setNoDelay(true);
    agent.createConnection = () => tunnel;
  }
  agents.set(key, agent);
  return agent;
}

/** Where to connect, which path to ask for, with what, for a route and a resource. */
function options(route, agent, method, path, body) {
  const authority = route.authority ?? upstream;
  const headers = { host: authority };
  if (body !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-api-key': 'placeholder', 'anthropic-version': '2023-06-01' });
  if (route.kind === 'direct' || route.kind === 'connect') return { agent, host: upstreamHost, port: upstreamPort, method, path, headers };
  if (route.kind === 'absolute') return { agent, ...route.via, method, path: 'http://' + authority + path, headers };
  return { agent, ...route.via, method, path: '/anthropic' + path, headers: { ...headers, host: '127.0.0.1:3128' } };
}

function exchange(opts, body) {
  return new Promise((resolve, reject) => {
    const req = request(opts, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => (bytes += chunk.length));
      res.on('end', () => (res.statusCode === 200 && bytes > 0 ? resolve(bytes) : reject(new Error(opts.method + ' ' + opts.path + ': status ' + res.statusCode + ', ' + bytes + ' bytes'))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function run(command) {
  const agent = await agentFor(command.route);
  if (command.op === 'latency') {
    const ms = [];
    for (let index = 0; index < command.count; index++) {
      const started = process.hrtime.bigint();
      if (command.request === 'small') await exchange(options(command.route, agent, 'GET', '/small'));
      else await exchange(options(command.route, agent, 'POST', '/v1/messages', PROMPT), PROMPT);
      ms.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    return { ms };
  }
  const started = process.hrtime.bigint();
  const bytes = command.stream === 'bulk'
    ? await exchange(options(command.route, agent, 'GET', '/bulk?mib=' + command.mib))
    : await exchange(options(command.route, agent, 'POST', '/v1/messages?mib=' + command.mib, STREAM_PROMPT), STREAM_PROMPT);
  return { bytes, elapsed: Number(process.hrtime.bigint() - started) / 1e6 };
}

let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(() => run(JSON.parse(line))).then(
    (answer) => process.stdout.write(JSON.stringify(answer) + '\n'),
    (error) => process.stdout.write(JSON.stringify({ error: String(error && error.stack || error) }) + '\n'),
  );
}).on('close', () => queue.then(() => process.exit(0)));
`;
