import { Agent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { pipeline, type Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { forwardedHeaders, isBrigError, outOfDescriptors, sameSecret, signatureExpired, signedWith, type SignedFileRequest } from '../../protocol/index.ts';
import type { SandboxManager } from '../sandboxes/index.ts';
import { answerError, answerErrorRaw } from './errors.ts';
import { signedFileRequest } from './signature.ts';
import { sandboxRoute, type SandboxRoute } from './sandbox-routes.ts';
import { servePort, upgradePort } from './sandbox-ports.ts';
import { tap, tappedMethod, type TapTargets } from './exec-tap.ts';

/**
 * The sandbox gateway: one origin for every sandbox's envd, as E2B's SDK
 * expects with `sandboxUrl` set, and for the servers on their own ports
 * (sandbox-ports.ts). Which requests are for a sandbox, and for what in it,
 * is sandbox-routes.ts's to say.
 *
 * It runs as the first onRequest hook and hijacks the reply, so a forwarded
 * request never meets the API key check, fastify's body parser or its body
 * limit: bodies stream through in both directions with backpressure.
 *
 * A request is forwarded only to the sandbox it names, and only when it holds
 * that sandbox's access token (or a valid signed URL for it): one sandbox's
 * token never drives another, and envd checks the token again behind us.
 */

const NOT_RUNNING_HINT = 'List the running sandboxes with GET /v2/sandboxes; a sandbox ends when its timeout passes.';
const TOKEN_HINT = 'Send the envdAccessToken that creating (or connecting to) this sandbox returned as X-Access-Token, or use a signed URL (sandbox.downloadUrl / uploadUrl).';

/** What the gateway tells of the commands it carries: their events, their activity for hung detection, their transcripts. */
export type GatewayWatch = TapTargets;

export interface GatewayOptions {
  /** The daemon's API key: it opens every sandbox's ports too. */
  apiKey: string;
  /** The host[:port] sandboxes' host names end in (`<port>-<id>.<domain>`), read per request: the daemon's port is known once it listens. */
  domain: () => string;
  watch?: GatewayWatch;
}

export function registerGateway(app: FastifyInstance, manager: SandboxManager, options: GatewayOptions): void {
  const watch = options.watch;
  // Our own pool, so closing the API closes every connection to envd it opened.
  const agent = new Agent({ keepAlive: true });
  const open = new Set<ServerResponse>();

  app.addHook('onRequest', async (request, reply) => {
    const route = sandboxRoute(request.raw, options.domain());
    if (route === null) return;
    reply.hijack();
    open.add(reply.raw);
    reply.raw.once('close', () => open.delete(reply.raw));
    if (route.kind === 'port') servePort(manager, route, request.raw, reply.raw, options.apiKey);
    else serve(manager, agent, request.raw, reply.raw, route, request.log, watch);
  });

  // WebSockets (and any Upgrade): only a sandbox's own ports take them; the control plane and envd speak plain HTTP.
  const upgraded = new Set<Duplex>();
  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Refused by the connection cap (connections.ts), and answered there.
    if (socket.writableEnded || socket.destroyed) return;
    const route = sandboxRoute(request, options.domain());
    if (route?.kind !== 'port') {
      return answerErrorRaw(socket, 400, 'BRIG_BAD_REQUEST', `${request.method} ${(request.url ?? '').split('?')[0]} cannot be upgraded (${String(request.headers.upgrade)})`, 'Only a sandbox\'s own ports take WebSockets: <port>-<id>.<domain> (sandbox.getHost(port)), or /sandboxes/{id}/ports/{port}/.');
    }
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    upgradePort(manager, route, request, socket, head, options.apiKey);
  });

  // Streams can last as long as a command runs: closing the daemon cuts them
  // rather than waiting (sandboxes keep running; clients reconnect).
  app.addHook('preClose', async () => {
    for (const response of open) response.destroy();
    for (const socket of upgraded) socket.destroy();
    agent.destroy();
  });
}

function serve(manager: SandboxManager, agent: Agent, client: IncomingMessage, response: ServerResponse, route: Extract<SandboxRoute, { kind: 'envd' }>, log: FastifyBaseLogger, watch?: GatewayWatch): void {
  const url = URL.canParse(route.path, 'http://envd') ? new URL(route.path, 'http://envd') : null;
  const signed = url && signedFileRequest(client.method, url);
  let sandbox = route.sandbox;
  let endpoint: { socketPath: string; accessToken: string };
  try {
    sandbox ??= signed ? sandboxBySignature(manager, signed) : null;
    if (sandbox === null) return answerError(client, response, 401, 'BRIG_UNAUTHORIZED', 'this signed URL belongs to no running sandbox', 'Ask the sandbox for a new one (sandbox.downloadUrl / uploadUrl); it may have ended.');
    endpoint = manager.endpoint(sandbox);
  } catch (error) {
    // 502, as E2B's edge answers for a sandbox that is not running: the SDK's
    // isRunning() is false on it and its RPCs throw SandboxNotFoundError.
    if (isBrigError(error) && error.httpStatus === 404) return answerError(client, response, 502, error.code, error.message, NOT_RUNNING_HINT);
    // Out of descriptors (a flood) is the daemon being full, not a bug.
    if (outOfDescriptors(error)) return answerError(client, response, 503, 'BRIG_CAPACITY', `brig is out of file descriptors (${(error as NodeJS.ErrnoException).code}) looking up sandbox ${JSON.stringify(sandbox)}`, 'Retry when the load has passed.');
    log.error({ err: error }, 'gateway: looking up the sandbox failed');
    return answerError(client, response, 500, 'BRIG_INTERNAL', `brig failed to look up sandbox ${JSON.stringify(sandbox)}`, 'This is a bug in brig: the daemon log has the stack.');
  }
  const refusal = accessRefusal(client, endpoint.accessToken, signed);
  if (refusal !== null) return answerError(client, response, 401, 'BRIG_UNAUTHORIZED', `sandbox ${sandbox}: ${refusal}`, TOKEN_HINT);
  const id = manager.get(sandbox).id;
  const method = watch ? tappedMethod(route.path) : null;
  const tapped = watch && method ? tap(method, watch, id, client) : undefined;
  forward(agent, client, response, endpoint.socketPath, route.path, (target, rule) =>
    manager.recordViolation({ time: new Date().toISOString(), sandbox: id, kind: 'filesystem', target, rule }),
  tapped);
}

/** Filesystem RPCs and /files: what a 403 from envd (EACCES, EPERM, EROFS inside the jail) was about. */
const FILESYSTEM_CALL = /^\/(?:files(?:\?|$)|filesystem\.Filesystem\/(\w+))/;
/** Enough of a filesystem RPC's JSON body to name its path; the rest streams on unread. */
const BODY_PEEK_BYTES = 4096;

/** Null when the request may reach this sandbox's envd; otherwise why not. */
function accessRefusal(client: IncomingMessage, accessToken: string, signed: SignedFileRequest | null): string | null {
  // Deny by default: a sandbox without a token would be open to anyone who can reach the daemon.
  if (accessToken.length === 0) return 'it has no access token, and the gateway forwards only to secured sandboxes';
  const token = client.headers['x-access-token'];
  // As envd: a token that is sent must be the right one; a signature does not excuse a wrong token.
  if (token !== undefined) return typeof token === 'string' && sameSecret(token, accessToken) ? null : 'X-Access-Token is not this sandbox\'s access token';
  if (signed === null) return 'no X-Access-Token and no signed URL';
  if (!signedWith(signed, accessToken)) return `invalid signature for ${signed.operation}: it was made for another sandbox, path, user, operation or expiration`;
  return signatureExpired(signed) ? 'the signed URL has expired' : null;
}

/** The running sandbox whose access token made this signature, if any. */
function sandboxBySignature(manager: SandboxManager, signed: SignedFileRequest): string | null {
  let after: string | undefined;
  do {
    const page = manager.list({ states: ['running'], limit: 100, after });
    const found = page.items.find((record) => signedWith(signed, record.envdAccessToken));
    if (found) return found.id;
    after = page.next ?? undefined;
  } while (after !== undefined);
  return null;
}

/**
 * Pipes the request to envd and envd's answer back, never holding more than
 * the streams' buffers: pipe() pauses the reading side while the writing side
 * is full. When either end goes away, the other is destroyed, so a client
 * leaving cuts the stream to envd, and envd failing mid-stream reaches the
 * client as a cut connection, never as a clean (truncated) end.
 */
function forward(agent: Agent, client: IncomingMessage, response: ServerResponse, socketPath: string, path: string, refused: (target: string, rule: string) => void, tap?: (answer: IncomingMessage) => void): void {
  const upstream = httpRequest({ agent, socketPath, method: client.method, path, headers: requestHeaders(client.headers) });
  const call = FILESYSTEM_CALL.exec(path);
  let peeked = '';
  if (call?.[1]) {
    const peek = (chunk: Buffer) => {
      peeked += chunk.toString('utf8', 0, Math.min(chunk.length, BODY_PEEK_BYTES - peeked.length));
      if (peeked.length >= BODY_PEEK_BYTES) client.off('data', peek);
    };
    client.on('data', peek);
  }
  upstream.once('response', (answer) => {
    if (answer.statusCode === 200) tap?.(answer);
    // The jail refused envd a file operation: a refused filesystem access brig can see, recorded as a violation.
    if (call && answer.statusCode === 403) refused(filesystemTarget(path, call[1], peeked), `permission denied in the sandbox (${call[1] ?? `${client.method} /files`})`);
    response.writeHead(answer.statusCode ?? 502, forwardedHeaders(answer.headers, false));
    // Stream headers now: a client waits for them before reading a stream's first message.
    response.flushHeaders();
    pipeline(answer, response, () => {});
  });
  // `on`, not `once`: a second 'error' with no listener would take the whole daemon down.
  upstream.on('error', (error: NodeJS.ErrnoException) => {
    client.unpipe(upstream);
    if (response.headersSent || response.destroyed) return void response.destroy();
    answerError(client, response, 502, 'BRIG_SANDBOX_NOT_FOUND', `the sandbox's envd does not answer (${error.code ?? error.message})`, NOT_RUNNING_HINT);
  });
  client.on('error', () => upstream.destroy());
  response.once('close', () => {
    if (!response.writableFinished) upstream.destroy();
  });
  client.pipe(upstream);
}

/** The path a refused filesystem call named: /files?path=…, or the RPC body's path (source and destination for a move). Sandbox-controlled text, so cut short. */
function filesystemTarget(path: string, rpc: string | undefined, body: string): string {
  let target: unknown;
  if (rpc === undefined) target = new URL(path, 'http://envd').searchParams.get('path');
  else {
    try {
      const message = JSON.parse(body) as Record<string, unknown>;
      target = message.path ?? (message.source !== undefined ? `${String(message.source)} -> ${String(message.destination)}` : undefined);
    } catch {
      // A body longer than the peek, or not JSON: the call is named without its path.
    }
  }
  return typeof target === 'string' && target.length > 0 ? JSON.stringify(target.slice(0, 300)).slice(1, -1) : '(unknown path)';
}

function requestHeaders(incoming: IncomingHttpHeaders): OutgoingHttpHeaders {
  const headers = forwardedHeaders(incoming);
  // The daemon's API key never enters a sandbox; envd reads Authorization only as Basic "<user>:".
  delete headers['x-api-key'];
  if (typeof headers.authorization === 'string' && !/^Basic\s/i.test(headers.authorization)) delete headers.authorization;
  return headers;
}

