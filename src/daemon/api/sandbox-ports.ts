import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { BrigError, forwardedHeaders, isBrigError, sameSecret, trafficAccessToken } from '../../protocol/index.ts';
import { EnvdClient, type SandboxManager } from '../sandboxes/index.ts';
import { presentedKey } from './auth.ts';
import { answerError, answerErrorRaw } from './errors.ts';
import type { SandboxRoute } from './sandbox-routes.ts';

/**
 * Sandbox ports: a server listening on a port inside a sandbox, reached
 * through the daemon (HTTP, streams and WebSockets alike) on a stream envd
 * opens to it (envd's CONNECT), so every tier is reached the same way.
 *
 * Who may: whoever holds the daemon's API key, the sandbox's access token,
 * or its traffic access token (which opens its ports and nothing else: E2B's
 * `E2B-Traffic-Access-Token`, which the companion SDKs send). Browsers, which
 * cannot set headers, bring the traffic token once in the query
 * (`?brig_traffic_token=`) and get it back as an HttpOnly cookie for that
 * host, on a redirect that drops it from the URL. A cookie opens a
 * port only to the page's own origin and to top-level navigation: every
 * sandbox port is on the same site (`*.localhost`), and one sandbox's page,
 * which is hostile, must not drive another's server with the user's cookie.
 *
 * None of those credentials reaches the sandbox: they are taken out of the
 * request before it is forwarded, and a sandbox cannot set brig's cookie.
 *
 * The path form shares the daemon's own origin among every sandbox, so it
 * is for programs, not browsers: it takes no cookie (the token comes with
 * each request), and its answers carry `Content-Security-Policy: sandbox`,
 * so a page served there runs in an origin of its own, never the daemon's,
 * and cannot read what another sandbox's path serves.
 */

export const TRAFFIC_TOKEN_HEADER = 'e2b-traffic-access-token';
export const TRAFFIC_TOKEN_PARAM = 'brig_traffic_token';
const COOKIE = 'brig_traffic_token';

const NOT_RUNNING_HINT = 'List the running sandboxes with GET /v2/sandboxes; a sandbox ends when its timeout passes.';
const ACCESS_HINT = `Send the sandbox's trafficAccessToken (creating it returned it) as E2B-Traffic-Access-Token, or the daemon's API key; in a browser open the URL once with ?${TRAFFIC_TOKEN_PARAM}=TOKEN.`;

interface Refusal {
  status: number;
  code: string;
  message: string;
  hint: string;
}

type PortRoute = Extract<SandboxRoute, { kind: 'port' }>;

type Admission =
  | { refused: Refusal }
  | { redirect: string; cookie?: string }
  | { client: EnvdClient; port: number; path: string; headers: OutgoingHttpHeaders; form: PortRoute['form'] };

/** Whether the request may reach the port, and what then goes to the sandbox. */
function admit(manager: SandboxManager, route: PortRoute, raw: IncomingMessage, apiKey: string): Admission {
  const refused = (status: number, code: string, message: string, hint: string): Admission => ({ refused: { status, code, message, hint } });
  if (!(route.port >= 1 && route.port <= 65_535)) return refused(400, 'BRIG_BAD_REQUEST', `port ${JSON.stringify(String(route.port))} of sandbox ${route.sandbox} is not a port number`, 'A port is a number from 1 to 65535.');
  let endpoint: { socketPath: string; accessToken: string };
  let id: string;
  let hostNetwork: boolean;
  try {
    const record = manager.get(route.sandbox);
    id = record.id;
    hostNetwork = record.policy.network.mode === 'host';
    endpoint = manager.endpoint(id);
  } catch (error) {
    // 502, as E2B's edge answers for a sandbox that is not running.
    if (isBrigError(error) && error.httpStatus === 404) return refused(502, error.code, error.message, NOT_RUNNING_HINT);
    throw error;
  }
  const url = new URL(route.path || '/', 'http://sandbox');
  const traffic = trafficAccessToken(endpoint.accessToken);
  const credential = presented(raw, url, route.form, traffic, endpoint.accessToken, apiKey);
  if (credential === null) return refused(401, 'BRIG_UNAUTHORIZED', `sandbox ${id}: no credential for its port ${route.port}, or a wrong one`, ACCESS_HINT);
  // envd in the host's network would reach the host's own loopback services, not the sandbox's.
  if (hostNetwork) return refused(403, 'BRIG_PORT_NOT_ALLOWED', `sandbox ${id} shares the host's network: its ports are the host's own, and brig does not forward to them`, 'Reach the server on the host directly, or create the sandbox with a network of its own (the default).');
  // The path form's bare port: to its directory, so the page's relative links stay under it.
  if (!route.path.startsWith('/')) return { redirect: `${route.base}/${url.search}` };
  if (credential === 'query') {
    url.searchParams.delete(TRAFFIC_TOKEN_PARAM);
    // A browser's navigation to a host name: the token becomes a cookie, and leaves the address bar and history.
    if (route.form === 'host' && (raw.method === 'GET' || raw.method === 'HEAD')) {
      return { redirect: `${url.pathname}${url.search}`, cookie: `${COOKIE}=${traffic}; Path=/; HttpOnly; SameSite=Lax` };
    }
  }
  return {
    client: new EnvdClient(endpoint, { errorCode: 'BRIG_SANDBOX_NOT_FOUND' }),
    port: route.port,
    path: credential === 'query' ? `${url.pathname}${url.search}` : route.path,
    headers: withoutCredentials(raw.headers, apiKey),
    form: route.form,
  };
}

/** Which credential opened the port: null for none, or a wrong token (a wrong token sent is never excused by another credential; an Authorization the app itself uses is not the API key and passes on). */
function presented(raw: IncomingMessage, url: URL, form: PortRoute['form'], traffic: string, accessToken: string, apiKey: string): 'header' | 'query' | 'cookie' | null {
  const header = raw.headers[TRAFFIC_TOKEN_HEADER] ?? raw.headers['x-access-token'];
  if (header !== undefined) return typeof header === 'string' && (sameSecret(header, traffic) || sameSecret(header, accessToken)) ? 'header' : null;
  const key = presentedKey(raw.headers);
  if (key !== null && sameSecret(key, apiKey)) return 'header';
  const query = url.searchParams.get(TRAFFIC_TOKEN_PARAM);
  if (query !== null) return sameSecret(query, traffic) ? 'query' : null;
  if (form === 'path') return null;
  const cookie = cookieValue(raw.headers.cookie, COOKIE);
  if (cookie === null || !sameSecret(cookie, traffic)) return null;
  return browserMaySend(raw.headers) ? 'cookie' : null;
}

/**
 * A cookie works for requests from the port's own pages and for a browser
 * going there (a link, the address bar); not for a fetch, form or WebSocket
 * from another sandbox's page. Sec-Fetch-* come from the browser itself; a
 * client that sends none is no browser, and cookies are then its own doing.
 */
function browserMaySend(headers: IncomingHttpHeaders): boolean {
  const site = headers['sec-fetch-site'];
  if (site === undefined || site === 'same-origin' || site === 'none') return true;
  return headers['sec-fetch-mode'] === 'navigate' && (headers['sec-fetch-dest'] === 'document' || headers['sec-fetch-dest'] === undefined);
}

function cookieValue(header: string | undefined, name: string): string | null {
  for (const part of (header ?? '').split(';')) {
    const equals = part.indexOf('=');
    if (equals > 0 && part.slice(0, equals).trim() === name) return part.slice(equals + 1).trim();
  }
  return null;
}

/** The request's headers as the sandbox gets them: none of brig's credentials, nor E2B's routing headers. */
function withoutCredentials(incoming: IncomingHttpHeaders, apiKey: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ...incoming };
  for (const name of ['x-api-key', 'x-access-token', TRAFFIC_TOKEN_HEADER, 'e2b-sandbox-id', 'e2b-sandbox-port']) delete headers[name];
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(incoming.authorization ?? '');
  if (bearer?.[1] !== undefined && sameSecret(bearer[1], apiKey)) delete headers.authorization;
  if (incoming.cookie !== undefined) {
    const kept = incoming.cookie.split(';').filter((part) => part.split('=')[0]?.trim() !== COOKIE).join(';').trim();
    if (kept === '') delete headers.cookie;
    else headers.cookie = kept;
  }
  return headers;
}

/** The server's answer headers as the client gets them: never brig's cookie set by a sandbox; on the path form, a page confined to an origin of its own. */
function answerHeaders(incoming: IncomingHttpHeaders, form: PortRoute['form']): OutgoingHttpHeaders {
  const headers = forwardedHeaders(incoming, false);
  const cookies = incoming['set-cookie']?.filter((line) => line.split('=')[0]?.trim() !== COOKIE);
  if (cookies === undefined || cookies.length === 0) delete headers['set-cookie'];
  else headers['set-cookie'] = cookies;
  if (form === 'path') headers['content-security-policy'] = PATH_FORM_POLICY;
  return headers;
}

/** A page served on the daemon's origin runs as an opaque origin: scripts and forms work, the daemon's origin and other sandboxes' paths are out of reach. */
const PATH_FORM_POLICY = 'sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads';

/** An HTTP request for a sandbox's port: answered here when refused, else carried to the server and its answer back, streaming both ways. */
export function servePort(manager: SandboxManager, route: PortRoute, client: IncomingMessage, response: ServerResponse, apiKey: string): void {
  const admission = admitted(manager, route, client, apiKey);
  if ('refused' in admission) return answerError(client, response, ...refusalArgs(admission.refused));
  if ('redirect' in admission) {
    response.writeHead(307, { location: admission.redirect, ...(admission.cookie ? { 'set-cookie': admission.cookie } : {}), 'content-length': '0' });
    return void response.end();
  }
  const cut = new AbortController();
  response.once('close', () => cut.abort());
  admission.client.tunnel(admission.port, cut.signal).then(
    (stream) => {
      if (response.destroyed) return void stream.destroy();
      // One stream per request: the server closes it with the answer, and no request waits behind another.
      const headers = { ...forwardedHeaders(admission.headers as IncomingHttpHeaders), connection: 'close', ...forwardedFor(client) };
      const upstream = httpRequest({ createConnection: () => stream as never, method: client.method, path: admission.path, headers });
      upstream.once('response', (reply) => {
        response.writeHead(reply.statusCode ?? 502, answerHeaders(reply.headers, admission.form));
        response.flushHeaders();
        pipeline(reply, response, () => stream.destroy());
      });
      upstream.on('error', (error: NodeJS.ErrnoException) => {
        stream.destroy();
        if (response.headersSent || response.destroyed) return void response.destroy();
        answerError(client, response, ...refusalArgs({ status: 502, code: 'BRIG_PORT_CLOSED', message: `port ${admission.port} of sandbox ${route.sandbox} closed the connection without an answer (${error.code ?? error.message})`, hint: 'The server in the sandbox failed on this request: its own log says why.' }));
      });
      response.once('close', () => {
        if (!response.writableFinished) upstream.destroy();
      });
      client.on('error', () => upstream.destroy());
      client.pipe(upstream);
    },
    (error: unknown) => answerError(client, response, ...refusalArgs(tunnelRefusal(error, route))),
  );
}

/** An Upgrade request (a WebSocket) for a sandbox's port: the handshake goes to the server as it came, then bytes flow both ways. */
export function upgradePort(manager: SandboxManager, route: PortRoute, client: IncomingMessage, socket: Duplex, head: Buffer, apiKey: string): void {
  socket.on('error', () => socket.destroy());
  const admission = admitted(manager, route, client, apiKey);
  if ('refused' in admission) return answerErrorRaw(socket, ...refusalArgs(admission.refused));
  if ('redirect' in admission) return void socket.end(`HTTP/1.1 307 Temporary Redirect\r\nLocation: ${admission.redirect}\r\n${admission.cookie ? `Set-Cookie: ${admission.cookie}\r\n` : ''}Content-Length: 0\r\nConnection: close\r\n\r\n`);
  admission.client.tunnel(admission.port).then(
    (stream) => {
      if (socket.destroyed) return void stream.destroy();
      const headers = { ...admission.headers, ...forwardedFor(client) };
      const lines = Object.entries(headers).flatMap(([name, value]) => (value === undefined ? [] : (Array.isArray(value) ? value : [value]).map((one) => `${name}: ${String(one).replace(/[\r\n]/g, ' ')}`)));
      stream.write(`${client.method} ${admission.path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) stream.write(head);
      // A failure ends the other side at once; a clean end only ends it, after what is still buffered for it.
      stream.on('error', () => socket.destroy());
      stream.on('close', () => (stream.readableEnded ? socket.end() : socket.destroy()));
      socket.on('close', () => stream.destroy());
      stream.pipe(socket);
      socket.pipe(stream);
    },
    (error: unknown) => answerErrorRaw(socket, ...refusalArgs(tunnelRefusal(error, route))),
  );
}

/** admit(), with a failure of brig's own as a 500 rather than a thrown error in a socket handler. */
function admitted(manager: SandboxManager, route: PortRoute, raw: IncomingMessage, apiKey: string): Admission {
  try {
    return admit(manager, route, raw, apiKey);
  } catch (error) {
    return { refused: { status: 500, code: 'BRIG_INTERNAL', message: `brig failed to look up sandbox ${JSON.stringify(route.sandbox)}: ${(error as Error).message}`, hint: 'This is a bug in brig: the daemon log has more.' } };
  }
}

function tunnelRefusal(error: unknown, route: PortRoute): Refusal {
  if (isBrigError(error) && error.code === 'BRIG_PORT_CLOSED') return { status: 502, code: error.code, message: `sandbox ${route.sandbox}, port ${route.port}: ${error.message}`, hint: error.hint };
  const message = error instanceof BrigError || isBrigError(error) ? (error as Error).message : String(error);
  return { status: 502, code: 'BRIG_SANDBOX_NOT_FOUND', message: `sandbox ${route.sandbox}: ${message}`, hint: NOT_RUNNING_HINT };
}

/** What the server in the sandbox may want to know of the client, as a reverse proxy says it. */
function forwardedFor(client: IncomingMessage): OutgoingHttpHeaders {
  return { 'x-forwarded-for': client.socket.remoteAddress ?? '', 'x-forwarded-proto': 'http', ...(client.headers.host ? { 'x-forwarded-host': client.headers.host } : {}) };
}

function refusalArgs(refusal: Refusal): [number, string, string, string] {
  return [refusal.status, refusal.code, refusal.message, refusal.hint];
}
