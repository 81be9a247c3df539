import type { FastifyInstance } from 'fastify';
import { EVENT_TYPES, type DaemonEvent, type EventLog, type EventQuery, type EventType } from '../timeline/index.ts';
import { BrigError } from '../../protocol/index.ts';
import { followStreams, replayThenFollow, resumeAfter } from './sse.ts';

/**
 * GET /v1/events: the daemon's events (timeline/), filtered by type, sandbox
 * or job. As JSON, a page after a seq; with follow=true, server-sent events
 * (each event's type as its name, its seq as its id): what was kept after
 * `after` (or the Last-Event-ID a reconnecting EventSource sends), then live.
 */

interface EventsQuery {
  after?: number;
  type?: string;
  sandbox?: string;
  job?: string;
  limit?: number;
  follow?: boolean;
}

const PAGE = 1000;

export function registerEventRoutes(app: FastifyInstance, events: EventLog): void {
  const eventStream = followStreams(app);
  app.get<{ Querystring: EventsQuery }>('/v1/events', {
    schema: {
      tags: ['events'],
      summary: 'What happened: sandboxes created, killed, timed out, died, out of memory; commands started and ended; violations; jobs. JSON, or with follow=true server-sent events',
      querystring: {
        type: 'object',
        properties: {
          after: { type: 'integer', minimum: 0, default: 0, description: 'Only events after this seq' },
          type: { type: 'string', maxLength: 500, description: `Comma-separated types: ${EVENT_TYPES.join(', ')}` },
          sandbox: { type: 'string', minLength: 1, maxLength: 100 },
          job: { type: 'string', minLength: 1, maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: PAGE, default: 100 },
          follow: { type: 'boolean', default: false },
        },
        additionalProperties: false,
      },
    },
    handler: async (request, reply) => {
      const types = request.query.type ? parseTypes(request.query.type) : undefined;
      const after = resumeAfter(request.headers['last-event-id'], request.query.after ?? 0);
      const query: EventQuery = { after, limit: request.query.limit ?? 100, ...(types ? { types } : {}), ...(request.query.sandbox ? { sandbox: request.query.sandbox } : {}), ...(request.query.job ? { job: request.query.job } : {}) };
      if (!request.query.follow) return events.read(query);
      const matches = (event: DaemonEvent): boolean => (!query.types || query.types.includes(event.type)) && (!query.sandbox || event.sandbox === query.sandbox) && (!query.job || event.job === query.job);
      replayThenFollow(eventStream(reply), after, {
        read: (last) => events.read({ ...query, after: last, limit: PAGE }),
        follow: (listener) => events.follow((event) => matches(event) && listener(event)),
        name: (event) => event.type,
      });
    },
  });
}

function parseTypes(text: string): EventType[] {
  const types = text.split(',').map((type) => type.trim()).filter(Boolean);
  const unknown = types.filter((type) => !(EVENT_TYPES as readonly string[]).includes(type));
  if (unknown.length > 0) throw new BrigError('BRIG_BAD_REQUEST', `unknown event type ${unknown.map((type) => JSON.stringify(type.slice(0, 40))).join(', ')}`, `the types: ${EVENT_TYPES.join(', ')}`);
  return types as EventType[];
}
