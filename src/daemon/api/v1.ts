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

  app.get<{ Querystring: { all?: boolean } }>('/v1/sandboxes', {
    schema: {
      tags,
      summary: 'Every sandbox with brig\'s fields (name, workspace); stopped ones with all=true',
      querystring: { type: 'object', properties: { all: { type: 'boolean', default: false } }, additionalProperties: false },
      response: {
        200: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              name: { type: ['string', 'null'] },
              state: { type: 'string', enum: ['creating', 'running', 'stopped'] },
              templateId: { type: 'string' },
              metadata: { type: 'object', additionalProperties: { type: 'string' } },
              startedAt: { type: 'string' },
              endAt: { type: 'string' },
              workspace: { type: 'string', description: 'The host directory mounted at /home/user' },
            },
            required: ['id', 'name', 'state', 'templateId', 'metadata', 'startedAt', 'endAt', 'workspace'],
          },
        },
      },
    },
    handler: async (request) =>
      manager
        .listAll()
        .filter((record) => request.query.all === true || record.state !== 'stopped')
        .map(({ id, name, state, templateId, metadata, startedAt, endAt, workspace }) => ({ id, name, state, templateId, metadata, startedAt, endAt, workspace })),
  });

  app.get('/v1/pool', {
    schema: {
      tags,
      summary: 'The warm pool: sandboxes booted and waiting, booting, and wanted',
      response: { 200: { type: 'object', properties: { ready: { type: 'integer' }, booting: { type: 'integer' }, size: { type: 'integer' } }, required: ['ready', 'booting', 'size'] } },
    },
    handler: async () => manager.pool(),
  });

  app.post<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/stop', {
    schema: { tags, summary: 'Kill the sandbox and keep its workspace', params: ID_PARAMS, response: { 204: { type: 'null', description: 'Stopped' }, ...errors(404) } },
    handler: async (request, reply) => {
      await manager.kill(request.params.sandboxID, { removeWorkspace: false });
      return reply.code(204).send();
    },
  });

  app.delete<{ Params: IdParams; Querystring: { data?: boolean } }>('/v1/sandboxes/:sandboxID', {
    schema: {
      tags,
      summary: 'Remove a sandbox, running or stopped; data=true also deletes its workspace',
      params: ID_PARAMS,
      querystring: { type: 'object', properties: { data: { type: 'boolean', default: false } }, additionalProperties: false },
      response: { 204: { type: 'null', description: 'Removed' }, ...errors(404) },
    },
    handler: async (request, reply) => {
      await manager.remove(request.params.sandboxID, { data: request.query.data === true });
      return reply.code(204).send();
    },
  });

  app.post<{ Body: { olderThanMs?: number } }>('/v1/prune', {
    schema: {
      tags,
      summary: 'Remove stopped sandboxes (and their workspaces) started longer ago than olderThanMs',
      body: { type: 'object', properties: { olderThanMs: { type: 'integer', minimum: 0, default: 0 } }, additionalProperties: false },
      response: { 200: { type: 'object', properties: { removed: { type: 'array', items: { type: 'string' } } }, required: ['removed'] } },
    },
    handler: async (request) => ({ removed: await manager.prune(request.body?.olderThanMs ?? 0) }),
  });

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
            cpuUsec: { type: 'integer', description: 'CPU time used by everything that ever ran in it, in microseconds (sample twice for a rate)' },
            diskBytes: { type: 'integer', description: 'Bytes used by its workspace' },
          },
          required: ['memoryBytes', 'pids', 'cpuUsec', 'diskBytes'],
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
