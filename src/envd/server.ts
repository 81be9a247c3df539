import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import brigSpawn from 'brig-spawn';
import { BrigError, ConnectError, Mux, fdTransport, sameSecret } from '../protocol/index.ts';
import {
  sendUnaryError,
  serveClientStream,
  serveServerStream,
  serveUnary,
  toConnectError,
  type ClientStreamHandler,
  type RpcContext,
  type ServerStreamHandler,
  type UnaryHandler,
} from './rpc.ts';
import { serveTunnel } from './port-tunnel.ts';
import { envdIdentity, resolveUser, userFromAuthorization, type User } from './users.ts';

/** A plain-HTTP route (/files, /health); `authorized` says whether X-Access-Token was valid. */
export type HttpHandler = (request: IncomingMessage, response: ServerResponse, context: HttpContext) => Promise<void>;

export interface HttpContext {
  url: URL;
  authorized: boolean;
  identity: User;
  accessToken: string | null;
}

/** What each half of envd (process/, filesystem/) registers its routes with. */
export interface Router {
  unary(procedure: string, handler: UnaryHandler): void;
  serverStream(procedure: string, handler: ServerStreamHandler, keepalive: unknown): void;
  clientStream(procedure: string, handler: ClientStreamHandler): void;
  http(method: 'GET' | 'POST', path: string, handler: HttpHandler): void;
}

type Route =
  | { kind: 'unary'; handler: UnaryHandler }
  | { kind: 'serverStream'; handler: ServerStreamHandler; keepalive: unknown }
  | { kind: 'clientStream'; handler: ClientStreamHandler };

export interface EnvdServerOptions {
  /** When set, every call must carry it as X-Access-Token (or, for /files, a valid signature). */
  accessToken: string | null;
  identity?: User;
  /** The default cwd of processes (RpcContext.workdir). */
  workdir?: string | null;
}

export class EnvdServer implements Router {
  readonly identity: User;
  readonly accessToken: string | null;
  private readonly workdir: string | null;
  private readonly rpcs = new Map<string, Route>();
  private readonly pages = new Map<string, HttpHandler>();
  private readonly server: Server;
  private readonly cleanups: Array<() => void> = [];

  constructor(options: EnvdServerOptions) {
    this.identity = options.identity ?? envdIdentity();
    this.accessToken = options.accessToken;
    this.workdir = options.workdir ?? null;
    this.server = createServer({ requestTimeout: 0, keepAliveTimeout: 65_000 }, (request, response) => {
      this.handle(request, response).catch((error: unknown) => sendUnaryError(response, toConnectError(error)));
    });
    this.server.on('clientError', (_error, socket) => socket.destroy());
    this.server.on('connect', (request: IncomingMessage, socket: Duplex, head: Buffer) =>
      serveTunnel(request, socket, head, this.accessToken === null || tokenMatches(request.headers['x-access-token'], this.accessToken)),
    );
    this.http('GET', '/health', async (_request, response) => {
      response.writeHead(204).end();
    });
  }

  unary(procedure: string, handler: UnaryHandler): void {
    this.rpcs.set(`/${procedure}`, { kind: 'unary', handler });
  }

  serverStream(procedure: string, handler: ServerStreamHandler, keepalive: unknown): void {
    this.rpcs.set(`/${procedure}`, { kind: 'serverStream', handler, keepalive });
  }

  clientStream(procedure: string, handler: ClientStreamHandler): void {
    this.rpcs.set(`/${procedure}`, { kind: 'clientStream', handler });
  }

  http(method: 'GET' | 'POST', path: string, handler: HttpHandler): void {
    this.pages.set(`${method} ${path}`, handler);
  }

  /** Run when envd closes (kill processes, stop watchers). */
  onClose(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  /**
   * Listen on `host:port`, `:port`, a unix socket path (`unix:/path` or
   * `/path`), or `fd:N`: a socket already listening, inherited on fd N (the
   * daemon binds envd's socket where the sandbox cannot reach it and hands
   * it over), or `mux:N` (below). Returns the address.
   */
  listen(address: string): Promise<string> {
    // The address is the caller's choice: a busy, refused or malformed one is a usage error, not a bug.
    const refused = (message: string): BrigError =>
      new BrigError('BRIG_USAGE', message, 'pick another --listen address (HOST:PORT, unix:/path or fd:N), or stop what already listens there');
    return new Promise((resolve, reject) => {
      this.server.once('error', (error: Error) => reject(refused(error.message.replace(/^listen \w+: /, 'brig envd cannot listen: '))));
      const inherited = /^fd:(\d+)$/.exec(address);
      if (inherited) {
        const fd = Number(inherited[1]);
        // The commands envd starts must not inherit it: one could accept the daemon's requests in envd's place.
        try {
          brigSpawn.closeOnExec(fd);
        } catch (error) {
          return reject(refused(`cannot listen on '${address}': ${(error as Error).message}`));
        }
        this.server.listen({ fd }, () => resolve(address));
        return;
      }
      const multiplexed = /^mux:(\d+)$/.exec(address);
      if (multiplexed) {
        try {
          this.serveMultiplexed(Number(multiplexed[1]));
        } catch (error) {
          return reject(refused(`cannot listen on '${address}': ${(error as Error).message}`));
        }
        return resolve(address);
      }
      const socketPath = address.startsWith('unix:') ? address.slice(5) : address.startsWith('/') ? address : null;
      if (socketPath) {
        rmSync(socketPath, { force: true });
        this.server.listen(socketPath, () => {
          chmodSync(socketPath, 0o600);
          resolve(`unix:${socketPath}`);
        });
        return;
      }
      const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
      if (!match) return reject(refused(`cannot listen on '${address}': give host:port or a unix socket path`));
      const host = match[1] ?? (match[2] || '127.0.0.1');
      this.server.listen(Number(match[3]), host, () => {
        const bound = this.server.address();
        resolve(typeof bound === 'object' && bound ? `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}` : address);
      });
    });
  }

  /**
   * `mux:N`: fd N is one byte stream (in a VM, the virtio-serial port
   * brig.service) carrying many connections, multiplexed (protocol/mux.ts);
   * each stream the host opens is served as a connection of its own. fs
   * streams, not a socket: in the guest the fd is a character device. Should
   * the stream break, envd closes (and its process ends): nothing could reach
   * it any more.
   */
  private serveMultiplexed(fd: number): void {
    // The commands envd starts must not inherit it: one could answer the daemon's requests in envd's place.
    brigSpawn.closeOnExec(fd);
    // A large window: what the host may send ahead is held in the guest's memory, the sandbox's own (bulk uploads are window / round trip).
    const mux = new Mux(fdTransport(fd), { role: 'server', initialWindowBytes: 4 << 20 });
    mux.on('stream', (stream: Duplex) => this.server.emit('connection', stream));
    mux.on('error', (error: Error) => process.stderr.write(`envd: the multiplexed channel broke: ${error.message}\n`));
    mux.once('close', () => void this.close());
    this.cleanups.push(() => mux.close());
  }

  close(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://envd');
    const authorized = this.accessToken === null || tokenMatches(request.headers['x-access-token'], this.accessToken);
    const page = this.pages.get(`${request.method} ${url.pathname}`);
    if (page) return page(request, response, { url, authorized, identity: this.identity, accessToken: this.accessToken });

    const route = this.rpcs.get(url.pathname);
    if (!route) {
      const known = [...this.pages.keys()].some((key) => key.endsWith(` ${url.pathname}`));
      throw known
        ? new ConnectError('unimplemented', `${request.method} is not supported on ${url.pathname}`)
        : new ConnectError('unimplemented', `no such procedure or path: ${url.pathname}`);
    }
    if (request.method !== 'POST') throw new ConnectError('unimplemented', `${url.pathname} takes POST`);
    if (!authorized) throw new ConnectError('unauthenticated', 'missing or wrong X-Access-Token');

    const abort = new AbortController();
    response.once('close', () => abort.abort());
    const context: RpcContext = {
      request,
      user: resolveUser(this.identity, userFromAuthorization(request)),
      signal: abort.signal,
      timeoutMs: timeoutHeader(request),
      workdir: this.workdir,
    };
    switch (route.kind) {
      case 'unary':
        return serveUnary(route.handler, context, response);
      case 'serverStream':
        return serveServerStream(route.handler, context, response, route.keepalive);
      case 'clientStream':
        return serveClientStream(route.handler, context, response);
    }
  }
}

function tokenMatches(given: string | string[] | undefined, expected: string): boolean {
  return typeof given === 'string' && sameSecret(given, expected);
}

function timeoutHeader(request: IncomingMessage): number | null {
  const value = Number(request.headers['connect-timeout-ms']);
  return Number.isFinite(value) && value > 0 ? value : null;
}
