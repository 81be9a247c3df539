import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { PortStatus, SandboxManager } from '../sandboxes/index.ts';
import { errors, ID_PARAMS } from './e2b-schemas.ts';

/**
 * brig's own routes, beside E2B's: what only brig knows about a sandbox.
 * Errors carry brig's codes (BRIG_SANDBOX_NOT_FOUND for an unknown id or name).
 */

interface IdParams {
  sandboxID: string;
}

export function registerV1Routes(app: FastifyInstance, manager: SandboxManager, ports?: { status(id: string): PortStatus[] }): void {
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
              tier: { type: 'string', description: 'the isolation tier it runs in (jail, gvisor)' },
              metadata: { type: 'object', additionalProperties: { type: 'string' } },
              startedAt: { type: 'string' },
              endAt: { type: 'string' },
              workspace: { type: 'string', description: 'The host directory mounted at /home/user' },
              endReason: { type: ['string', 'null'], description: 'Why it stopped when nobody stopped it (it died: its VM hung or panicked, its processes were killed; its memory limit ended it); null otherwise' },
              ports: {
                type: 'array',
                description: 'Its ports published on the host (agentPort, monitorPort at create); empty once it stopped',
                items: {
                  type: 'object',
                  properties: {
                    kind: { type: 'string', enum: ['agent', 'monitor'] },
                    host: { type: 'string' },
                    port: { type: 'integer' },
                    listening: { type: 'boolean' },
                    error: { type: 'string', description: 'Why it does not listen (taken by another program when a restarted daemon tried again)' },
                  },
                  required: ['kind', 'host', 'port', 'listening'],
                },
              },
            },
            required: ['id', 'name', 'state', 'templateId', 'tier', 'metadata', 'startedAt', 'endAt', 'workspace', 'endReason', 'ports'],
          },
        },
      },
    },
    handler: async (request) =>
      manager
        .listAll()
        .filter((record) => request.query.all === true || record.state !== 'stopped')
        .map(({ id, name, state, templateId, metadata, startedAt, endAt, workspace, policy, handle, endReason }) => ({
          id,
          name,
          state,
          templateId,
          tier: handle?.driver ?? policy.tier ?? 'jail' /* records from before tiers ran in the jail */,
          metadata,
          startedAt,
          endAt,
          workspace,
          endReason: endReason ?? null,
          ports: state === 'stopped' ? [] : (ports?.status(id) ?? []),
        })),
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

  app.post<{ Params: IdParams; Body: { image: string } }>('/v1/sandboxes/:sandboxID/commit', {
    schema: {
      tags,
      summary: 'A running image sandbox\'s root as a new image: the layers it booted from plus its writes, its image\'s config. It keeps running',
      params: ID_PARAMS,
      body: { type: 'object', properties: { image: { type: 'string', minLength: 1, maxLength: 300, description: 'NAME[:TAG]; an image of that name and tag is replaced' } }, required: ['image'], additionalProperties: false },
      response: {
        201: {
          type: 'object',
          properties: {
            image: { type: 'string', description: 'NAME:TAG' },
            layers: { type: 'array', items: { type: 'string' }, description: 'Layer digests, lowest first; the last holds the sandbox\'s writes' },
            dropped: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, why: { type: 'string' } }, required: ['path', 'why'] }, description: 'Writes the store changed: set-id bits cleared, owners outside the sandbox\'s range made nobody (devices, fifos and sockets are left out of the layer)' },
          },
          required: ['image', 'layers', 'dropped'],
        },
        ...errors(400, 404),
      },
    },
    handler: async (request, reply) => {
      const committed = await manager.commit(request.params.sandboxID, request.body.image);
      return reply.code(201).send({ image: committed.ref, layers: committed.layers, dropped: committed.dropped });
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

  const destinations = { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 300 } } as const;
  const networkSchema = {
    type: 'object',
    properties: {
      mode: { type: 'string', enum: ['none', 'allowlist', 'host'] },
      allow: destinations,
      deny: destinations,
      llm: { type: 'array', items: { type: 'string' } },
      budget: { type: 'object', properties: { requests: { type: 'integer' }, tokens: { type: 'integer' } }, required: ['requests', 'tokens'] },
    },
    required: ['mode', 'allow', 'deny', 'llm', 'budget'],
  } as const;

  app.get<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/network', {
    schema: { tags, summary: 'The network policy in force: mode, allow and deny lists, LLM providers, budget', params: ID_PARAMS, response: { 200: networkSchema, ...errors(404) } },
    handler: async (request) => manager.network(request.params.sandboxID),
  });

  app.put<{ Params: IdParams; Body: { allow: string[]; deny: string[] } }>('/v1/sandboxes/:sandboxID/network', {
    schema: {
      tags,
      summary: 'Replace an allowlist sandbox\'s allow and deny lists; the next connection sees them',
      params: ID_PARAMS,
      body: { type: 'object', properties: { allow: destinations, deny: destinations }, required: ['allow', 'deny'], additionalProperties: false },
      response: { 200: networkSchema, ...errors(400, 404) },
    },
    handler: async (request) => manager.setNetworkRules(request.params.sandboxID, request.body),
  });

  const violationsSchema = {
    type: 'array',
    items: {
      type: 'object',
      properties: { time: { type: 'string' }, sandbox: { type: 'string' }, kind: { type: 'string', enum: ['network', 'llm', 'filesystem'] }, target: { type: 'string' }, rule: { type: 'string' } },
      required: ['time', 'sandbox', 'kind', 'target', 'rule'],
    },
  } as const;
  const limitQuery = { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 } }, additionalProperties: false } as const;

  app.get<{ Querystring: { limit?: number } }>('/v1/violations', {
    schema: { tags, summary: 'The newest refused accesses of every sandbox, oldest first', querystring: limitQuery, response: { 200: violationsSchema } },
    handler: async (request) => manager.violations(null, request.query.limit ?? 100),
  });

  app.get<{ Params: IdParams; Querystring: { limit?: number } }>('/v1/sandboxes/:sandboxID/violations', {
    schema: { tags, summary: 'The newest refused accesses of one sandbox (stopped ones too), oldest first', params: ID_PARAMS, querystring: limitQuery, response: { 200: violationsSchema, ...errors(404) } },
    handler: async (request) => manager.violations(request.params.sandboxID, request.query.limit ?? 100),
  });

  const memoryEventsSchema = {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        time: { type: 'string' },
        action: { type: 'string', enum: ['kill-process', 'kill-sandbox'], description: 'kill-process: one process was killed and the sandbox went on; kill-sandbox: the whole sandbox was killed' },
        pid: { type: ['integer', 'null'], description: 'The killed process inside the sandbox; null for kill-sandbox, or when the kernel chose (cgroup v2)' },
        hostPid: { type: ['integer', 'null'] },
        command: { type: ['string', 'null'], description: 'Its name (comm), as the sandbox set it: untrusted' },
        rssBytes: { type: ['integer', 'null'], description: 'Its resident memory when it was chosen' },
        main: { type: 'boolean', description: 'It was the sandbox\'s main process (never, for envd)' },
        reason: { type: 'string' },
      },
      required: ['time', 'action', 'pid', 'hostPid', 'command', 'rssBytes', 'main', 'reason'],
    },
  } as const;

  app.get<{ Params: IdParams; Querystring: { limit?: number } }>('/v1/sandboxes/:sandboxID/memory-events', {
    schema: {
      tags,
      summary: 'What was killed when the sandbox reached its memory limit (resources.onOutOfMemory), newest last; stopped sandboxes too',
      params: ID_PARAMS,
      querystring: limitQuery,
      response: { 200: memoryEventsSchema, ...errors(404) },
    },
    handler: async (request) => manager.memoryEvents(request.params.sandboxID, request.query.limit ?? 100),
  });

  app.get<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/llm', {
    schema: {
      tags,
      summary: 'What the sandbox spent through the LLM gateway, and its budget',
      params: ID_PARAMS,
      response: {
        200: {
          type: 'object',
          properties: {
            requests: { type: 'integer' },
            inputTokens: { type: 'integer' },
            outputTokens: { type: 'integer' },
            budget: { type: 'object', properties: { requests: { type: 'integer' }, tokens: { type: 'integer' } }, required: ['requests', 'tokens'] },
          },
          required: ['requests', 'inputTokens', 'outputTokens', 'budget'],
        },
        ...errors(404),
      },
    },
    handler: async (request) => ({ ...manager.llmUsage(request.params.sandboxID), budget: manager.network(request.params.sandboxID).budget }),
  });

  app.get<{ Params: IdParams }>('/v1/sandboxes/:sandboxID/transcript', {
    schema: {
      tags,
      summary: 'The sandbox\'s LLM gateway transcript: one JSON object per exchange, one per line (bodies, usage, timing; never a key)',
      params: ID_PARAMS,
      response: { 200: { description: 'JSON lines', content: { 'application/x-ndjson': { schema: { type: 'string' } } } }, ...errors(404) },
    },
    handler: async (request, reply) => {
      const file = manager.transcript(request.params.sandboxID);
      reply.type('application/x-ndjson');
      return file ? reply.send(createReadStream(file)) : reply.send('');
    },
  });
}
