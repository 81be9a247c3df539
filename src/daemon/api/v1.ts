import type { FastifyInstance } from 'fastify';
import type { SandboxManager } from '../sandboxes/index.ts';
import { errors, ID_PARAMS } from './e2b-schemas.ts';

/**
 * brig's own routes, beside E2B's: what only brig knows about a sandbox.
 * Errors carry brig's codes (BRIG_SANDBOX_NOT_FOUND for an unknown id or name).
 */

interface IdParams {
  sandboxID: string;
}

export function registerV1Routes(app: FastifyInstance, manager: SandboxManager): void {
  const tags = ['brig'];

  app.get<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/policy', {
    schema: {
      tags,
      summary: 'The resolved policy the sandbox runs under',
      params: ID_PARAMS,
      response: { 200: { type: 'object', additionalProperties: true, description: 'A complete Policy (docs/policy.md)' }, ...errors(404) },
    },
    handler: async (request) => manager.get(request.params.sandboxID).policy,
  });

  app.get<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/stats', {
    schema: {
      tags,
      summary: 'What the sandbox uses now',
      params: ID_PARAMS,
      response: {
        200: {
          type: 'object',
          properties: {
            memoryBytes: { type: 'integer', description: 'Memory charged to the sandbox, page cache and tmpfs included' },
            pids: { type: 'integer', description: 'Tasks (processes and threads) alive in it' },
            diskBytes: { type: 'integer', description: 'Bytes used by its workspace' },
          },
          required: ['memoryBytes', 'pids', 'diskBytes'],
        },
        ...errors(404),
      },
    },
    handler: async (request) => manager.stats(request.params.sandboxID),
  });

  app.get<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/logs', {
    schema: {
      tags,
      summary: 'envd\'s log from inside the sandbox (text)',
      params: ID_PARAMS,
      response: { 200: { description: 'The log, as text', content: { 'text/plain': { schema: { type: 'string' } } } }, ...errors(404) },
    },
    handler: async (request, reply) => reply.type('text/plain; charset=utf-8').send(manager.logs(request.params.sandboxID)),
  });
}
