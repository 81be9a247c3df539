import type { FastifyInstance } from 'fastify';
import { BrigError, isBrigError } from '../../protocol/index.ts';
import type { SandboxManager } from '../sandboxes/index.ts';
import type { Transcripts } from '../timeline/index.ts';
import { followStreams, replayThenFollow, resumeAfter } from './sse.ts';

/**
 * GET /v1/sandboxes/{id}/timeline: a sandbox's transcript (timeline/) —
 * commands with their output and input, model exchanges, violations, what
 * happened to it — oldest first. As JSON a page (after a seq, since a time,
 * or the last `tail`); with follow=true server-sent events (each entry's
 * type its name, its seq its id), kept then live. A sandbox whose record is
 * gone is still found by its id while its transcript is kept.
 */

interface TimelineQuery {
  after?: number;
  since?: string;
  tail?: number;
  limit?: number;
  follow?: boolean;
}

const PAGE = 10_000;

export function registerTimelineRoutes(app: FastifyInstance, manager: SandboxManager, transcripts: Transcripts): void {
  const entryStream = followStreams(app);
  app.get<{ Params: { sandboxID: string }; Querystring: TimelineQuery }>('/v1/sandboxes/:sandboxID/timeline', {
    schema: {
      tags: ['sandboxes'],
      summary: "The sandbox's timeline: its commands and terminals with their output, its model exchanges, violations and events. JSON, or with follow=true server-sent events",
      params: { type: 'object', properties: { sandboxID: { type: 'string', minLength: 1, maxLength: 100 } }, required: ['sandboxID'] },
      querystring: {
        type: 'object',
        properties: {
          after: { type: 'integer', minimum: 0, default: 0, description: 'Only entries after this seq' },
          since: { type: 'string', format: 'date-time', description: 'Only entries at or after this time (RFC 3339)' },
          tail: { type: 'integer', minimum: 1, maximum: PAGE, description: 'The last this many (of those after `after` and `since`)' },
          limit: { type: 'integer', minimum: 1, maximum: PAGE, default: 1000 },
          follow: { type: 'boolean', default: false },
        },
        additionalProperties: false,
      },
    },
    handler: async (request, reply) => {
      const sandbox = sandboxOf(manager, transcripts, request.params.sandboxID);
      const { tail, follow } = request.query;
      const since = request.query.since === undefined ? undefined : new Date(request.query.since).toISOString();
      const after = resumeAfter(request.headers['last-event-id'], request.query.after ?? 0);
      const base = { ...(since !== undefined ? { since } : {}) };
      if (!follow) return transcripts.read(sandbox, { ...base, after, limit: request.query.limit ?? 1000, ...(tail !== undefined ? { tail } : {}) });
      // --tail with follow: the last `tail` first, then everything after them.
      const first = tail === undefined ? undefined : transcripts.read(sandbox, { ...base, after, tail, limit: tail })[0]?.seq;
      const start = first === undefined ? after : first - 1;
      replayThenFollow(entryStream(reply), start, {
        read: (last) => transcripts.read(sandbox, { ...base, after: last, limit: PAGE }),
        follow: (listener) => transcripts.follow(sandbox, listener),
        name: (entry) => entry.type,
      });
    },
  });
}

function sandboxOf(manager: SandboxManager, transcripts: Transcripts, idOrName: string): string {
  try {
    return manager.lookup(idOrName).id;
  } catch (error) {
    if (isBrigError(error) && error.code === 'BRIG_SANDBOX_NOT_FOUND' && transcripts.has(idOrName)) return idOrName;
    if (isBrigError(error)) throw new BrigError(error.code, error.message, 'a sandbox\'s timeline is kept for a while after it ended (brig serve --transcript-retention): ask for it by id');
    throw error;
  }
}
