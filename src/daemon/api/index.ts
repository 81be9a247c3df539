import Fastify, { type FastifyInstance } from 'fastify';
import type { SandboxManager } from '../sandboxes/index.ts';
import { apiKeyCheck } from './auth.ts';
import { defaultConnectionLimits, limitConnections, type ConnectionLimits } from './connections.ts';

export type { ConnectionLimits } from './connections.ts';
import { registerE2bRoutes } from './e2b.ts';
import { registerE2bTemplateRoutes } from './e2b-templates.ts';
import { frameworkErrors, installErrorHandling } from './errors.ts';
import { registerGateway } from './gateway.ts';
import { registerOpenApi } from './openapi.ts';
import { registerV1Routes } from './v1.ts';
import { registerJobRoutes } from './jobs.ts';
import type { JobQueue } from '../jobs/index.ts';
import type { ActivityBoard, EventLog } from '../timeline/index.ts';
import { registerEventRoutes } from './events.ts';
import { registerTimelineRoutes } from './timeline.ts';
import type { Transcripts } from '../timeline/index.ts';
import type { DaemonMetrics } from '../metrics/index.ts';
import type { PortStatus } from '../sandboxes/index.ts';

/**
 * api/: the daemon's HTTP front door. E2B's control plane and brig's /v1
 * routes (API key), the envd gateway (each sandbox's access token), and the
 * OpenAPI document (public), seed 003's job routes (API key). Routes parse
 * requests into calls on the SandboxManager and the JobQueue, which never
 * see HTTP.
 */

export interface ApiOptions {
  /** Every control-plane call must carry it (X-API-KEY or Authorization: Bearer). */
  apiKey: string;
  /** Largest control-plane body accepted (default 1 MiB); envd traffic streams through unlimited. */
  bodyLimitBytes?: number;
  /** Shown in the OpenAPI document. */
  version?: string;
  /** Caps on client connections; each absent one from the daemon's descriptor limit (defaultConnectionLimits). */
  connections?: Partial<ConnectionLimits>;
  /** The job queue behind /schedule and /v1/jobs (the daemon always has one). */
  jobs?: JobQueue;
  /** The event log behind /v1/events, where the gateway records commands started and ended. */
  events?: EventLog;
  /** Where the gateway marks the commands it carries running and writing (hung detection). */
  activity?: ActivityBoard;
  /** GET /metrics. */
  metrics?: DaemonMetrics;
  /** Each sandbox's transcript: recorded by the gateway, served by GET /v1/sandboxes/{id}/timeline. */
  transcripts?: Transcripts;
  /** The host[:port] of sandboxes' host names, `<port>-<id>.<domain>` (E2B's domain, which creates answer with); default localhost. */
  sandboxDomain?: () => string;
  /** What listens for each sandbox's published ports, for GET /v1/sandboxes. */
  ports?: { status(id: string): PortStatus[] };
}

export function buildApi(manager: SandboxManager, options: ApiOptions): FastifyInstance {
  const checkApiKey = apiKeyCheck(options.apiKey);
  const app = Fastify({
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    // Streams through the gateway last as long as a command runs: no server-side deadline.
    requestTimeout: 0,
    // A field we do not know is refused where a schema says so (additionalProperties: false), never silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
    frameworkErrors,
  });
  // Before anything reads a request: no client, and no flood of them, can take every descriptor.
  limitConnections(app.server, { ...defaultConnectionLimits(), ...options.connections });
  // First: envd traffic is taken before any other hook, route or body parser sees it.
  const domain = options.sandboxDomain ?? (() => 'localhost');
  registerGateway(app, manager, {
    apiKey: options.apiKey,
    domain,
    ...(options.events && options.activity && options.transcripts ? { watch: { events: options.events, activity: options.activity, transcripts: options.transcripts } } : {}),
  });
  installErrorHandling(app);
  // An empty body with a JSON Content-Type reads as no body: the schema then says what was required.
  const parseJson = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString();
    if (text === '') return done(null, undefined);
    parseJson(request, text, done);
  });
  registerOpenApi(app, options.version ?? '0.1.0');
  void app.register(async (controlPlane) => {
    controlPlane.addHook('onRequest', checkApiKey);
    registerE2bRoutes(controlPlane, manager, domain);
    registerE2bTemplateRoutes(controlPlane, manager);
    registerV1Routes(controlPlane, manager, options.ports);
    if (options.jobs) registerJobRoutes(controlPlane, options.jobs);
    if (options.events) registerEventRoutes(controlPlane, options.events);
    if (options.transcripts) registerTimelineRoutes(controlPlane, manager, options.transcripts);
    const metrics = options.metrics;
    if (metrics) {
      controlPlane.get('/metrics', { schema: { tags: ['metrics'], summary: "The daemon in Prometheus's text format (docs/observability.md); the API key as a bearer token" } }, async (_request, reply) =>
        reply.type('text/plain; version=0.0.4; charset=utf-8').send(metrics.render()),
      );
    }
  });
  return app;
}
