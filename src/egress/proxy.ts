import { forwardedHeaders } from '../protocol/index.ts';
import { lstat, rm } from 'node:fs/promises';
import { Agent, createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, isIPv6, type LookupFunction, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { decide, formatTarget, parseRules, systemLookup, type Decision, type Lookup, type ParsedRules } from './rules.ts';
import { serveSocks, type DialFailed, type DialFailure, type Dialed, type Upstreams } from './socks.ts';
import type { NetworkRules, Violation } from './types.ts';

/**
 * The host side of a sandbox's network in allowlist mode. A relay in the jail
 * forwards every TCP connection made to its proxy port to one unix socket,
 * this one, so whatever arrives here comes from that sandbox. One socket
 * speaks three things, told apart by the first byte and the request line:
 *   - SOCKS5 (first byte 5): CONNECT, by name or address (socks.ts);
 *   - an HTTP proxy: CONNECT host:port tunnels, and absolute-form requests
 *     (GET http://host/path), forwarded with their bodies streamed;
 *   - origin-form requests (GET /anthropic/v1/messages): not for the proxy but
 *     for the LLM gateway, when the sandbox has one.
 * Every destination is checked against the rules as they are at that moment,
 * and reached at the addresses the check resolved, never resolved again.
 * Everything the sandbox sends is taken as hostile: no input, and no socket
 * failing, may take the host process down or hold a connection forever.
 */

export interface ProxySession {
  sandbox: string;
  /** Read for every connection and request: rules change while the sandbox runs. */
  rules(): NetworkRules;
  /** Every refused connection or request. */
  violation(violation: Violation): void;
  /** Origin-form requests: the LLM gateway. Without it they get a 404. */
  gateway?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Resolves a name to all its addresses; the system resolver by default. */
  lookup?: Lookup;
  /** From the request to a connected upstream, resolving included. */
  connectTimeoutMs?: number;
}

export interface EgressProxy {
  listen(socketPath: string): Promise<void>;
  /** Stops listening and cuts every open connection, tunnels included. */
  close(): Promise<void>;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Time to send a first byte, and to finish a SOCKS handshake. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 30_000;
const MAX_HEADER_BYTES = 32 * 1024;
/** Once one side of a tunnel has ended, how long the other may stay silent before both are cut. */
const HALF_OPEN_IDLE_MS = 120_000;
/** How long a kept-alive upstream connection may sit unused in the pool. */
const IDLE_UPSTREAM_MS = 4_000;
/**
 * Connections one sandbox may hold open at once. Each costs the host two
 * descriptors (the sandbox's side and the upstream's), so the cap bounds what
 * one sandbox can take from the daemon's descriptor table; more than a busy
 * build or browser keeps open. One past it is answered 503 and closed.
 */
export const MAX_SANDBOX_CONNECTIONS = 256;
/** Beyond the cap, connections are closed unanswered: a flood costs no more than this many 503s in flight. */
const OVERFLOW_ANSWERED = 64;
/** Kept-alive upstream connections left idle in the pool, per sandbox. */
const MAX_IDLE_UPSTREAM = 16;
const SOCKS_VERSION = 0x05;


const STATUS_FOR: Record<DialFailure, number> = {
  refused: 403,
  unresolved: 502,
  'connection-refused': 502,
  'network-unreachable': 502,
  'host-unreachable': 502,
  timeout: 504,
  failed: 502,
};

const FAILURE_FOR_CODE: Record<string, DialFailure> = {
  ECONNREFUSED: 'connection-refused',
  ENETUNREACH: 'network-unreachable',
  EHOSTUNREACH: 'host-unreachable',
  EHOSTDOWN: 'host-unreachable',
  ETIMEDOUT: 'timeout',
};

interface Target {
  host: string;
  port: number;
}

export function createEgressProxy(session: ProxySession): EgressProxy {
  const lookup = session.lookup ?? systemLookup;
  const connectTimeoutMs = session.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const sockets = new Set<Socket>();
  let closed = false;
  let parsed: { key: string; rules: ParsedRules | Error } | null = null;

  // Our own pool, so closing the proxy closes every upstream connection it
  // keeps. An idle one is let go before a typical server's keep-alive timeout
  // (Node's is 5 s), so a request seldom meets a connection the server is closing.
  const agent = new Agent({ keepAlive: true, timeout: IDLE_UPSTREAM_MS, maxFreeSockets: MAX_IDLE_UPSTREAM, maxTotalSockets: MAX_SANDBOX_CONNECTIONS });
  /** The sandbox's connections being served (those answered 503 are not counted). */
  const clients = new Set<Socket>();
  let saturated = false;
  const http = createHttpServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: 0, maxHeaderSize: MAX_HEADER_BYTES });
  // Connections reach it by hand, never through listen(): 'listening' is what
  // starts its connection tracking, which enforces headersTimeout.
  http.emit('listening');
  const server = createNetServer({ allowHalfOpen: true }, accept);
  server.maxConnections = MAX_SANDBOX_CONNECTIONS + OVERFLOW_ANSWERED;
  // accept(2) failing (EMFILE) is reported here; without a listener it would end the host process.
  server.on('error', () => {});

  /** Every socket we hold, client or upstream, is tracked for close() and can never throw an unhandled 'error'. */
  function track(socket: Socket): void {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
  }

  function accept(socket: Socket): void {
    track(socket);
    if (closed) return void socket.destroy();
    if (clients.size >= MAX_SANDBOX_CONNECTIONS) return refuseOverLimit(socket);
    clients.add(socket);
    socket.once('close', () => {
      clients.delete(socket);
      if (clients.size < MAX_SANDBOX_CONNECTIONS) saturated = false;
    });
    const quit = () => socket.destroy();
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, quit);
    socket.once('end', quit);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.off('end', quit);
      // SOCKS keeps the handshake timer until its tunnel is spliced.
      if (first[0] === SOCKS_VERSION) return serveSocks(socket, first, upstreams);
      // The HTTP server times its own waits from here on (and a gateway may set its own).
      socket.setTimeout(0, quit);
      socket.unshift(first);
      http.emit('connection', socket);
      socket.resume();
    });
  }

  /** One violation per episode of saturation, not one per refused connection: a flood must not flood the record. */
  function refuseOverLimit(socket: Socket): void {
    if (!saturated) {
      saturated = true;
      session.violation({ time: new Date().toISOString(), sandbox: session.sandbox, kind: 'network', target: '(any)', rule: `more than ${MAX_SANDBOX_CONNECTIONS} connections open at once` });
    }
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy());
    endWith(socket, rawResponse(503, `brig: sandbox ${session.sandbox} already has ${MAX_SANDBOX_CONNECTIONS} connections open through its proxy; close some and retry\n`));
  }

  function currentRules(): ParsedRules | Error {
    let rules: NetworkRules;
    try {
      rules = session.rules();
    } catch (error) {
      return error as Error;
    }
    // Parsed again only when they changed, compared by their text: cheap next to parsing.
    const key = `${rules.allow.join('\n')}\0${rules.deny.join('\n')}`;
    if (parsed?.key !== key) {
      try {
        parsed = { key, rules: parseRules(rules) };
      } catch (error) {
        parsed = { key, rules: error as Error };
      }
    }
    return parsed.rules;
  }

  /** The decision for one destination, with any refusal recorded. Rules that do not parse refuse everything. */
  async function vet(target: Target): Promise<Decision> {
    const rules = currentRules();
    const decision: Decision = rules instanceof Error ? { verdict: 'refuse', rule: `the network rules are invalid (${rules.message})` } : await decide(rules, target.host, target.port, lookup);
    if (decision.verdict === 'refuse') {
      const violation: Violation = { time: new Date().toISOString(), sandbox: session.sandbox, kind: 'network', target: printable(formatTarget(target.host, target.port)), rule: decision.rule };
      try {
        session.violation(violation);
      } catch {
        // Recording is the host's business; a recorder that throws must not keep the refusal from being answered.
      }
    }
    return decision;
  }

  /** A connected upstream socket for a checked destination, or why there is none; never rejects. */
  function dial(target: Target): Promise<Dialed> {
    return new Promise((resolve) => {
      let upstream: Socket | null = null;
      let settled = false;
      const settle = (dialed: Dialed) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(dialed);
      };
      const timer = setTimeout(() => {
        upstream?.destroy();
        settle({ failure: 'timeout', detail: `no connection within ${connectTimeoutMs} ms` });
      }, connectTimeoutMs);
      vet(target).then(
        (decision) => {
          if (settled) return;
          if (decision.verdict === 'refuse') return settle({ failure: 'refused', detail: decision.rule });
          if (decision.verdict === 'unresolved') return settle({ failure: 'unresolved', detail: `${target.host} does not resolve (${decision.reason})` });
          if (closed) return settle({ failure: 'failed', detail: 'the proxy is closing' });
          const socket = connect({ host: connectHost(target, decision.addresses), port: target.port, lookup: pinnedLookup(decision.addresses), noDelay: true, allowHalfOpen: true, autoSelectFamily: true });
          upstream = socket;
          track(socket);
          socket.once('connect', () => settle({ upstream: socket }));
          socket.once('error', (error) => settle(failureOf(error)));
        },
        (error: unknown) => settle({ failure: 'failed', detail: String(error) }),
      );
    });
  }

  const upstreams: Upstreams = { dial: (host, port) => dial({ host, port }), splice };

  http.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const target = authorityTarget(req.url ?? '');
    if (target === null) return void endWith(socket, rawResponse(400, 'brig: CONNECT needs host:port, as in CONNECT example.com:443\n'));
    void dial(target)
      .then((dialed) => {
        if ('failure' in dialed) return endWith(socket, rawResponse(STATUS_FOR[dialed.failure], failureText(session.sandbox, target, dialed)));
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        splice(socket, dialed.upstream, head);
      })
      .catch(() => socket.destroy());
  });

  http.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '';
    if (url.startsWith('/')) return toGateway(req, res);
    const target = absoluteTarget(url);
    if (target === null) return answer(req, res, 400, 'brig: a proxy request names an http:// URL (GET http://example.com/ HTTP/1.1); https goes through CONNECT\n');
    forward(req, res, target);
  });

  function toGateway(req: IncomingMessage, res: ServerResponse): void {
    if (!session.gateway) return answer(req, res, 404, `brig: the LLM gateway is not enabled for sandbox ${session.sandbox} (network.llm is empty), and the proxy serves no paths of its own\n`);
    const failed = () => (res.headersSent ? res.destroy() : answer(req, res, 500, 'brig: the LLM gateway failed on this request\n'));
    try {
      // Typed void, but an async gateway's rejection must not go unhandled either.
      const result: unknown = session.gateway(req, res);
      if (result instanceof Promise) result.catch(failed);
    } catch {
      failed();
    }
  }

  /**
   * An absolute-form request, sent upstream in origin form with the URL's
   * authority as its Host (RFC 9112 §3.2.2: the Host a client sends with an
   * absolute URL is not the one that counts, so it cannot front for another
   * name on the same address). Bodies stream both ways under backpressure.
   */
  function forward(req: IncomingMessage, res: ServerResponse, target: AbsoluteTarget): void {
    let timedOut = false;
    let upstream: ReturnType<typeof httpRequest> | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      if (upstream) return void upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
      if (!res.headersSent) answer(req, res, 504, `brig: no connection to ${formatTarget(target.host, target.port)} within ${connectTimeoutMs} ms\n`);
    }, connectTimeoutMs);
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) upstream?.destroy();
    });

    void vet(target)
      .then((decision) => {
        if (timedOut || res.destroyed) return;
        if (decision.verdict !== 'allow') {
          clearTimeout(timer);
          const dialed: DialFailed = decision.verdict === 'refuse' ? { failure: 'refused', detail: decision.rule } : { failure: 'unresolved', detail: `${target.host} does not resolve (${decision.reason})` };
          return answer(req, res, STATUS_FOR[dialed.failure], failureText(session.sandbox, target, dialed));
        }
        const request = httpRequest({
          agent,
          host: connectHost(target, decision.addresses),
          port: target.port,
          method: req.method,
          path: target.path,
          headers: requestHeaders(req.headers, target.authority),
          // Node 20 tries every address (autoSelectFamily) by default, as for tunnels.
          lookup: pinnedLookup(decision.addresses),
        });
        upstream = request;
        request.once('socket', (socket) => {
          socket.setNoDelay(true);
          if (socket.connecting) socket.once('connect', () => clearTimeout(timer));
          else clearTimeout(timer);
        });
        request.once('response', (answered) => {
          clearTimeout(timer);
          try {
            res.writeHead(answered.statusCode ?? 502, answered.statusMessage, forwardedHeaders(answered.headers, false));
          } catch {
            // Should Node refuse to write a header it parsed, the throw, in an event handler, would end the host process.
            answered.destroy();
            return void res.destroy();
          }
          // Headers go now: a streamed answer (server-sent events) may be slow to send its first bytes.
          res.flushHeaders();
          pipeline(answered, res, () => {});
        });
        // `on`, not `once`: a second 'error' with no listener would end the host process.
        request.on('error', (error: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          req.unpipe(request);
          if (res.headersSent || res.destroyed) return void res.destroy();
          const dialed: DialFailed = timedOut ? { failure: 'timeout', detail: `no connection within ${connectTimeoutMs} ms` } : failureOf(error);
          answer(req, res, STATUS_FOR[dialed.failure], failureText(session.sandbox, target, dialed));
        });
        req.once('error', () => request.destroy());
        req.pipe(request);
      })
      .catch(() => res.destroy());
  }

  /**
   * Joins a client to its upstream, both ways. When one side ends, the end
   * is passed on (half-close) and the other may still answer; when one fails
   * or closes, the other is cut with it.
   */
  function splice(client: Socket, upstream: Socket, head: Buffer): void {
    if (client.destroyed || upstream.destroyed || closed) {
      client.destroy();
      upstream.destroy();
      return;
    }
    // The handshake's timer, if still set, would cut a quiet tunnel.
    client.setTimeout(0);
    client.removeAllListeners('timeout');
    if (head.length > 0) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    // A tunnel whose one side has left is kept only while the other still talks.
    const idleAfterEnd = () => {
      for (const socket of [client, upstream]) socket.setTimeout(HALF_OPEN_IDLE_MS, () => socket.destroy());
    };
    client.once('end', idleAfterEnd);
    upstream.once('end', idleAfterEnd);
  }

  return {
    async listen(socketPath) {
      await removeStaleSocket(socketPath);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    async close() {
      closed = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      http.close();
      agent.destroy();
      await stopped;
    },
  };
}

interface AbsoluteTarget extends Target {
  /** host[:port] as the URL has it, for the Host header. */
  authority: string;
  /** Path and query as sent, not normalised: the origin sees what the client wrote. */
  path: string;
}

/** `http://host[:port]/path?query`; null for any other scheme or a malformed URL. */
function absoluteTarget(url: string): AbsoluteTarget | null {
  if (!/^http:\/\//i.test(url)) return null;
  const rest = url.slice('http://'.length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  let path = authorityEnd < 0 ? '/' : rest.slice(authorityEnd).replace(/#.*$/s, '');
  if (!path.startsWith('/')) path = `/${path}`;
  if (authority.includes('@') || !URL.canParse(`http://${authority}`)) return null;
  const parsed = new URL(`http://${authority}`);
  if (parsed.hostname === '') return null;
  return { host: unbracketed(parsed.hostname), port: parsed.port === '' ? 80 : Number(parsed.port), authority: parsed.host, path };
}

/** CONNECT's `host:port` or `[v6]:port`; the port is required. */
function authorityTarget(authority: string): Target | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]/@]+)):([1-9]\d{0,4})$/.exec(authority);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  return host !== undefined && port <= 65535 ? { host, port } : null;
}

/** A single checked address is connected to as it is; several go through the pinned lookup, so every one can be tried. */
function connectHost(target: Target, addresses: string[]): string {
  return addresses.length === 1 ? (addresses[0] ?? target.host) : target.host;
}

/** A target as the sandbox sent it may hold control characters (a SOCKS name is any bytes): quoted then, and kept short. */
function printable(target: string): string {
  return (/[^\x21-\x7e]/.test(target) ? JSON.stringify(target) : target).slice(0, 300);
}

function unbracketed(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** A lookup that answers with the addresses already checked, so connecting cannot resolve the name to anything new. */
function pinnedLookup(addresses: string[]): LookupFunction {
  const entries = addresses.map((address) => ({ address, family: isIPv6(address) ? 6 : 4 }));
  return (_hostname, options, callback) => {
    const first = entries[0];
    if (options.all) callback(null, entries);
    else if (first) callback(null, first.address, first.family);
    else callback(Object.assign(new Error('no checked address'), { code: 'ENOTFOUND' }), '');
  };
}

function failureOf(error: NodeJS.ErrnoException): DialFailed {
  const code = error.code ?? '';
  return { failure: FAILURE_FOR_CODE[code] ?? 'failed', detail: code || error.message };
}

function failureText(sandbox: string, target: Target, dialed: DialFailed): string {
  const destination = formatTarget(target.host, target.port);
  if (dialed.failure !== 'refused') return `brig: could not reach ${destination}: ${dialed.detail}\n`;
  return `brig: sandbox ${sandbox} may not reach ${destination}: ${dialed.detail}\n${refusalHint(target.host, dialed.detail)}\n`;
}

function refusalHint(host: string, rule: string): string {
  if (rule.startsWith('deny ')) return `It is in network.deny: remove ${JSON.stringify(rule.slice('deny '.length))} from it to allow it.`;
  const address = /^resolves to .* address (\S+)$/.exec(rule)?.[1];
  if (address) return `If that address is meant, allow it explicitly: brig … --allow ${address}`;
  if (rule.startsWith('the network rules are invalid')) return 'Fix network.allow and network.deny in the policy.';
  return `Allow it with: brig … --allow ${host}`;
}

function requestHeaders(incoming: IncomingHttpHeaders, authority: string): OutgoingHttpHeaders {
  const headers = forwardedHeaders(incoming);
  for (const name of Object.keys(headers)) if (name.startsWith('proxy-')) delete headers[name];
  headers.host = authority;
  return headers;
}

/** A short text answer; a request whose body was not read closes the connection rather than have it read in vain. */
function answer(req: IncomingMessage, res: ServerResponse, status: number, text: string): void {
  const headers: OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) };
  if (!req.complete) headers.connection = 'close';
  res.writeHead(status, headers).end(text);
}

/** An answer written straight to a socket the HTTP server has let go of (after CONNECT). */
function rawResponse(status: number, text: string): string {
  const reason = { 400: 'Bad Request', 403: 'Forbidden', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' }[status] ?? 'Error';
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
}

function endWith(socket: Socket, text: string): void {
  if (socket.destroyed) return;
  socket.end(text, () => socket.destroy());
}

/** A socket file left by a proxy that did not close (a crash) would make listen() fail. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    if ((await lstat(socketPath)).isSocket()) await rm(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
