import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';

/**
 * Server-sent events from a route (text/event-stream): the reply is taken
 * over, each event written as `event:`/`id:`/`data:` lines, a comment every
 * KEEPALIVE_MS so nothing between the follower and the daemon drops a quiet
 * stream. Closing the daemon ends every open stream rather than waiting for
 * them (followStreams' preClose hook): they last as long as what they follow.
 */

const KEEPALIVE_MS = 15_000;

export interface EventStream {
  send(event: string, data: unknown, id?: number): void;
  /** Ends the stream (the follower's reconnect would start after its last id). */
  end(): void;
  /** Told once, when the stream ends for whatever reason (the follower left, end(), the daemon closing). */
  onClose(listener: () => void): void;
}

export function followStreams(app: FastifyInstance): (reply: FastifyReply) => EventStream {
  const open = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const response of open) response.destroy();
  });
  return (reply) => {
    reply.hijack();
    const out = reply.raw;
    open.add(out);
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    out.flushHeaders();
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
    out.once('close', () => {
      clearInterval(keepalive);
      open.delete(out);
    });
    return {
      send: (event, data, id) => void out.write(`event: ${event}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`),
      end: () => void out.end(),
      onClose: (listener) => void out.once('close', listener),
    };
  };
}

/**
 * What was kept after `after`, then what comes live, none twice and none
 * missed: live items wait while the kept ones are sent, then only those
 * after the last sent go out. `read` pages through what was kept (oldest
 * first, at most `page`); `follow` returns what stops it.
 */
export function replayThenFollow<T extends { seq: number }>(stream: EventStream, after: number, source: { read: (after: number) => T[]; follow: (listener: (item: T) => void) => () => void; name: (item: T) => string }): void {
  const waiting: T[] = [];
  let send = (item: T): void => void waiting.push(item);
  const stop = source.follow((item) => send(item));
  stream.onClose(stop);
  let last = after;
  const deliver = (item: T): void => {
    if (item.seq <= last) return;
    last = item.seq;
    stream.send(source.name(item), item, item.seq);
  };
  for (let page = source.read(last); page.length > 0; page = source.read(last)) page.forEach(deliver);
  waiting.forEach(deliver);
  send = deliver;
}

/** The seq a reconnecting EventSource resumes after (Last-Event-ID), or `after`. */
export function resumeAfter(lastEventId: string | string[] | undefined, after: number): number {
  const id = Number(lastEventId);
  return Number.isInteger(id) && id > 0 ? id : after;
}
