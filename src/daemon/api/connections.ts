import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { answerErrorRaw, errorPayload } from './errors.ts';

/**
 * The daemon's connections, capped: every connection costs a descriptor,
 * and a daemon out of descriptors can boot nothing, read nothing and (before
 * this) died on the first spawn that failed. So:
 *   - a connection must send its first request within `firstRequestMs`, or it is closed;
 *   - at most `maxConnections` are held, and at most `maxPerClient` from one address;
 *   - when a cap is reached, an idle connection (no request in flight) is
 *     closed to make room, so an idle flood cannot keep a working client out:
 *     first the longest-waiting one that never sent a request, and only when
 *     there is none a kept-alive one (a client may be sending its next
 *     request on it that moment, and would see the connection reset);
 *   - when every held connection is busy, the newcomer's request is answered
 *     503 BRIG_CAPACITY and its connection closed.
 * A request in flight is never cut: a stream through the gateway lasts as
 * long as its command.
 */

export interface ConnectionLimits {
  /** Connections held at once, every client together. */
  maxConnections: number;
  /** Connections one client address may hold at once. */
  maxPerClient: number;
  /** How long a new connection may take to send its first request's headers. */
  firstRequestMs: number;
}

interface Held {
  client: string;
  /** A request is in flight on it. */
  busy: boolean;
  /** It has sent a request: a client is using it. */
  used: boolean;
}

/** How long a connection may wait to send its first request. */
const FIRST_REQUEST_MS = 10_000;

/**
 * From the daemon's descriptor limit (Node raises its soft RLIMIT_NOFILE to
 * the hard one at start): a quarter for clients, the rest for sandboxes
 * (egress sockets, envd streams), the store and the jails' launch pipes; one
 * client address at most half of that.
 */
export function defaultConnectionLimits(): ConnectionLimits {
  const maxConnections = Math.max(64, Math.min(16_384, Math.floor(openFileLimit() / 4)));
  return { maxConnections, maxPerClient: Math.max(16, Math.floor(maxConnections / 2)), firstRequestMs: FIRST_REQUEST_MS };
}

/** This process's soft RLIMIT_NOFILE, from /proc/self/limits. */
function openFileLimit(): number {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (match) return Number(match[1]);
  } catch {
    // Unreadable: assume the common default.
  }
  return 1024;
}

/** How long a refused connection may take to send the request its 503 answers; then it is cut. */
const REFUSED_GRACE_MS = 2000;
/** Refused connections waiting for their request at once; beyond this they are cut at once. */
const MAX_REFUSED = 64;

export function limitConnections(server: Server, limits: ConnectionLimits): void {
  // Oldest idle first: a connection moves to the end when its request ends.
  const held = new Map<Socket, Held>();
  const perClient = new Map<string, number>();
  const refused = new Set<Socket>();

  const release = (socket: Socket): void => {
    const entry = held.get(socket);
    if (!entry) return;
    held.delete(socket);
    const count = (perClient.get(entry.client) ?? 1) - 1;
    if (count <= 0) perClient.delete(entry.client);
    else perClient.set(entry.client, count);
  };

  /** Close the longest-idle connection (of this client only, when given), one never used first; false when every one is busy. */
  const evictIdle = (client: string | null): boolean => {
    let kept: Socket | null = null;
    for (const [socket, entry] of held) {
      if (entry.busy || (client !== null && entry.client !== client)) continue;
      if (entry.used) {
        kept ??= socket;
        continue;
      }
      kept = socket;
      break;
    }
    if (!kept) return false;
    release(kept);
    kept.destroy();
    return true;
  };

  const refuse = (socket: Socket): void => {
    if (refused.size >= MAX_REFUSED) return void socket.destroy();
    refused.add(socket);
    socket.once('close', () => refused.delete(socket));
    socket.setTimeout(REFUSED_GRACE_MS, () => socket.destroy());
  };

  server.on('connection', (socket: Socket) => {
    const client = socket.remoteAddress ?? 'unknown';
    const roomForClient = (perClient.get(client) ?? 0) < limits.maxPerClient || evictIdle(client);
    const room = roomForClient && (held.size < limits.maxConnections || evictIdle(null));
    if (!room) return refuse(socket);
    held.set(socket, { client, busy: false, used: false });
    perClient.set(client, (perClient.get(client) ?? 0) + 1);
    socket.once('close', () => release(socket));
    // Until its first request: a connection that says nothing is closed (Node times keep-alive waits after that).
    socket.setTimeout(limits.firstRequestMs);
    socket.on('timeout', silent);
  });
  function silent(this: Socket): void {
    if (!held.get(this)?.busy) this.destroy();
  }

  // Before fastify sees a request: a refused connection's request is answered here, and busy marks are kept.
  const handlers = server.listeners('request') as Array<(request: IncomingMessage, response: ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    if (refused.has(socket)) {
      response.writeHead(503, { 'content-type': 'application/json; charset=utf-8', connection: 'close', 'retry-after': '1' });
      response.end(errorPayload('BRIG_CAPACITY', `the daemon holds as many connections as it may (${limits.maxConnections} in all, ${limits.maxPerClient} per client), all busy`, 'Retry in a moment; `brig serve --max-connections` and `--max-connections-per-client` set the caps.'));
      return;
    }
    const entry = held.get(socket);
    if (entry) {
      entry.busy = true;
      entry.used = true;
      if (socket.listeners('timeout').includes(silent)) {
        socket.off('timeout', silent);
        socket.setTimeout(0);
      }
      response.once('close', () => {
        entry.busy = false;
        // To the end of the line: idle since now.
        if (held.delete(socket)) held.set(socket, entry);
      });
    }
    for (const handler of handlers) handler.call(server, request, response);
  });

  // An upgraded connection (a WebSocket to a sandbox's port) is busy for its life: never closed to make room.
  // First among the upgrade listeners: a refused one is answered here, and the gateway leaves an ended socket alone.
  server.prependListener('upgrade', (_request: IncomingMessage, socket: Socket) => {
    if (refused.has(socket)) {
      return answerErrorRaw(socket, 503, 'BRIG_CAPACITY', `the daemon holds as many connections as it may (${limits.maxConnections} in all, ${limits.maxPerClient} per client), all busy`, 'Retry in a moment.');
    }
    const entry = held.get(socket);
    if (!entry) return;
    entry.busy = true;
    entry.used = true;
    socket.off('timeout', silent);
    socket.setTimeout(0);
  });

  // accept(2) failing (EMFILE) is reported here; without a listener it would end the daemon.
  server.on('error', () => {});
}
