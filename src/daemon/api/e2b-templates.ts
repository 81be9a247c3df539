import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { BrigError, ENVD_VERSION } from '../../protocol/index.ts';
import { buildPolicy } from '../../policy/index.ts';
import type { SandboxManager, TemplateInfo } from '../sandboxes/index.ts';
import { errors, ID_PARAMS } from './e2b-schemas.ts';

/**
 * E2B's snapshot and template routes, as the SDK's createSnapshot(),
 * listSnapshots(), deleteSnapshot() and a template listing call them. A
 * snapshot is an image of the daemon's store made by a commit of the sandbox
 * (its filesystem only: brig keeps no memory, so a sandbox from it boots
 * fresh); its id is the image's NAME:TAG, which Sandbox.create takes.
 */

/** Label a snapshot's image carries: the sandbox it was taken of (GET /snapshots?sandboxID=). */
export const SNAPSHOT_LABEL = 'brig.snapshot.sandbox';

const SNAPSHOT_INFO = {
  type: 'object',
  properties: {
    snapshotID: { type: 'string', description: 'The image NAME:TAG; Sandbox.create takes it' },
    names: { type: 'array', items: { type: 'string' } },
  },
  required: ['snapshotID', 'names'],
} as const;

const TEMPLATE = {
  type: 'object',
  description: 'E2B\'s Template: an image of the store, \'base\', or an agent profile',
  properties: {
    templateID: { type: 'string' },
    buildID: { type: 'string' },
    aliases: { type: 'array', items: { type: 'string' } },
    names: { type: 'array', items: { type: 'string' } },
    buildStatus: { type: 'string', enum: ['ready'] },
    buildCount: { type: 'integer' },
    cpuCount: { type: 'integer' },
    memoryMB: { type: 'integer' },
    diskSizeMB: { type: 'integer' },
    envdVersion: { type: 'string' },
    public: { type: 'boolean' },
    spawnCount: { type: 'integer' },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    lastSpawnedAt: { type: ['string', 'null'] },
    createdBy: { type: 'null' },
  },
  required: ['templateID', 'buildID', 'aliases', 'names', 'buildStatus', 'buildCount', 'cpuCount', 'memoryMB', 'diskSizeMB', 'envdVersion', 'public', 'spawnCount', 'createdAt', 'updatedAt', 'lastSpawnedAt', 'createdBy'],
} as const;

interface SnapshotQuery {
  sandboxID?: string;
  name?: string;
  limit?: number;
  nextToken?: string;
}

export function registerE2bTemplateRoutes(app: FastifyInstance, manager: SandboxManager): void {
  const e2b = { e2b: true };
  const tags = ['E2B control plane'];

  app.post<{ Params: { sandboxID: string }; Body: { name?: string } | undefined }>('/sandboxes/:sandboxID/snapshots', {
    config: e2b,
    schema: {
      tags,
      summary: 'Snapshot a running image sandbox\'s filesystem as an image (brig commit); it keeps running',
      params: ID_PARAMS,
      body: { type: 'object', properties: { name: { type: 'string', minLength: 1, maxLength: 255, description: 'NAME[:TAG] of the image; default snapshot-<random>. An image of that name and tag is replaced' } } },
      response: { 201: SNAPSHOT_INFO, ...errors(400, 404) },
    },
    preValidation: async (request) => {
      request.body ??= {};
    },
    handler: async (request, reply) => {
      const sandbox = manager.get(request.params.sandboxID);
      const ref = request.body?.name ?? `snapshot-${randomBytes(6).toString('hex')}`;
      const committed = await manager.commit(sandbox.id, ref, { labels: { [SNAPSHOT_LABEL]: sandbox.id } });
      return reply.code(201).send({ snapshotID: committed.ref, names: [committed.ref] });
    },
  });

  app.get<{ Querystring: SnapshotQuery }>('/snapshots', {
    config: e2b,
    schema: {
      tags,
      summary: 'The snapshots (images made by createSnapshot), a page at a time (next page: the X-Next-Token header)',
      querystring: {
        type: 'object',
        properties: {
          sandboxID: { type: 'string' },
          name: { type: 'string', description: 'NAME or NAME:TAG' },
          limit: { type: 'integer', minimum: 1, maximum: 100, default: 100 },
          nextToken: { type: 'string', pattern: '^[0-9]+$' },
        },
      },
      response: { 200: { type: 'array', items: SNAPSHOT_INFO }, ...errors(400) },
    },
    handler: async (request, reply) => {
      const { sandboxID, name, limit = 100, nextToken } = request.query;
      const snapshots = (await manager.templates()).filter(
        (template) =>
          template.labels[SNAPSHOT_LABEL] !== undefined &&
          (sandboxID === undefined || template.labels[SNAPSHOT_LABEL] === sandboxID) &&
          (name === undefined || template.id === name || template.aliases.includes(name)),
      );
      const start = nextToken === undefined ? 0 : Number(nextToken);
      const page = snapshots.slice(start, start + limit);
      if (start + limit < snapshots.length) reply.header('X-Next-Token', String(start + limit));
      return page.map((template) => ({ snapshotID: template.id, names: [template.id] }));
    },
  });

  app.get('/templates', {
    config: e2b,
    schema: { tags, summary: 'What Sandbox.create can name: every image of the store, \'base\', the agent profiles', querystring: { type: 'object', properties: { teamID: { type: 'string' } } }, response: { 200: { type: 'array', items: TEMPLATE } } },
    handler: async () => {
      const resources = buildPolicy().resources;
      return (await manager.templates()).map((template) => e2bTemplate(template, resources));
    },
  });

  app.delete<{ Params: { templateID: string } }>('/templates/:templateID', {
    config: e2b,
    schema: {
      tags,
      summary: 'Remove an image (a snapshot) by NAME[:TAG]; its layers stay until brig image prune',
      params: { type: 'object', properties: { templateID: { type: 'string', minLength: 1, maxLength: 300 } }, required: ['templateID'] },
      response: { 204: { type: 'null', description: 'Removed' }, ...errors(400, 404) },
    },
    handler: async (request, reply) => {
      const { templateID } = request.params;
      const known = (await manager.templates()).find((template) => template.id === templateID || template.aliases.includes(templateID));
      if (known && known.kind !== 'image') throw new BrigError('BRIG_BAD_REQUEST', `template '${templateID}' is not an image: 'base' (the host view) and agent profiles cannot be deleted`, 'delete images only (GET /templates lists them)');
      await manager.removeImage(templateID);
      return reply.code(204).send();
    },
  });
}

function e2bTemplate(template: TemplateInfo, resources: { cpus: number; memoryMiB: number }) {
  const created = template.created ?? new Date(0).toISOString();
  return {
    templateID: template.id,
    buildID: template.id,
    aliases: template.aliases,
    names: [template.id, ...template.aliases],
    buildStatus: 'ready' as const,
    buildCount: 1,
    cpuCount: Math.max(1, Math.ceil(resources.cpus)),
    memoryMB: resources.memoryMiB,
    diskSizeMB: Math.ceil(template.sizeBytes / (1024 * 1024)),
    envdVersion: ENVD_VERSION,
    public: false,
    spawnCount: 0,
    createdAt: created,
    updatedAt: created,
    lastSpawnedAt: null,
    createdBy: null,
  };
}
