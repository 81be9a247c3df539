import type { FastifyInstance } from 'fastify';
import { BrigError, ENVD_VERSION, trafficAccessToken } from '../../protocol/index.ts';
import { validatePolicyInput, type PolicyInput } from '../../policy/index.ts';
import type { CreateSandboxRequest, PublishedPorts, SandboxManager, SandboxRecord, SandboxState } from '../sandboxes/index.ts';
import { parsePortAddress } from '../ports/index.ts';
import { BAD_REQUEST_HINT } from './errors.ts';
import { CONNECT_BODY, errors, ID_PARAMS, LIST_QUERY, LISTED_SANDBOX, NETWORK_UPDATE, NEW_SANDBOX, SANDBOX, SANDBOX_DETAIL, SANDBOX_METRIC, TIMEOUT_BODY, V1_LIST_QUERY } from './e2b-schemas.ts';

/**
 * E2B's control plane, so the e2b SDK (apiUrl at the daemon) works unchanged:
 * create, list, get, kill, set timeout, connect. Each route turns its request
 * into a typed call on the SandboxManager and its record into E2B's JSON.
 */

/** E2B deprecated clientID but the SDK's types still require it. */
const CLIENT_ID = 'brig';
const DEFAULT_CONNECT_SECONDS = 300;
const PAGE_LIMIT = 100;

interface IdParams {
  sandboxID: string;
}

interface NewSandboxBody {
  templateID?: string;
  timeout?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  allow_internet_access?: boolean;
  autoPause?: boolean;
  autoResume?: { enabled?: boolean };
  mcp?: unknown;
  network?: E2bNetwork;
  iam?: { tokens?: Record<string, unknown> };
  volumeMounts?: unknown[];
  name?: string;
  profile?: string;
  image?: string;
  tier?: string;
  policy?: Record<string, unknown>;
  keepWorkspace?: boolean;
  agentPort?: string | number;
  monitorPort?: string | number;
}

interface ListQueryString {
  metadata?: string;
  state?: string[];
  limit?: number;
  nextToken?: string;
  order?: 'asc' | 'desc';
  startedAfter?: string;
  template?: string;
}

export function registerE2bRoutes(app: FastifyInstance, manager: SandboxManager, domain: () => string): void {
  const e2b = { e2b: true };
  const tags = ['E2B control plane'];

  for (const url of ['/sandboxes', '/v2/sandboxes']) {
    app.post<{ Body: NewSandboxBody }>(url, {
      config: e2b,
      schema: { tags, summary: 'Create a sandbox', body: NEW_SANDBOX, response: { 201: SANDBOX, ...errors(400, 409) } },
      handler: async (request, reply) => {
        const record = await manager.create(createCommand(request.body));
        return reply.code(201).send(created(record, domain()));
      },
    });
  }

  app.get<{ Querystring: ListQueryString }>('/v2/sandboxes', {
    config: e2b,
    schema: { tags, summary: 'List sandboxes, a page at a time (next page: the X-Next-Token header)', querystring: LIST_QUERY, response: { 200: { type: 'array', items: LISTED_SANDBOX }, ...errors(400) } },
    handler: async (request, reply) => {
      const query = request.query;
      if (query.order === 'desc') throw new BrigError('BRIG_BAD_REQUEST', 'order=desc: brig lists sandboxes oldest first only', 'Leave order out, or pass order=asc.');
      const states = brigStates(query.state);
      if (states.length === 0) return [];
      const page = manager.list({ metadata: metadataFilter(query.metadata), states, limit: query.limit ?? PAGE_LIMIT, after: query.nextToken });
      if (page.next !== null) reply.header('X-Next-Token', page.next);
      const startedAfter = query.startedAfter === undefined ? null : Date.parse(query.startedAfter);
      return page.items
        .filter((record) => (query.template === undefined || record.templateId === query.template) && (startedAfter === null || Date.parse(record.startedAt) >= startedAfter))
        .map(listed);
    },
  });

  app.get<{ Querystring: { metadata?: string } }>('/sandboxes', {
    config: e2b,
    schema: { tags, summary: 'List every running sandbox (E2B\'s deprecated v1 list)', querystring: V1_LIST_QUERY, response: { 200: { type: 'array', items: LISTED_SANDBOX }, ...errors(400) } },
    handler: async (request) => {
      const metadata = metadataFilter(request.query.metadata);
      const records: SandboxRecord[] = [];
      let after: string | undefined;
      do {
        const page = manager.list({ metadata, states: LIVE, limit: PAGE_LIMIT, after });
        records.push(...page.items);
        after = page.next ?? undefined;
      } while (after !== undefined);
      return records.map(listed);
    },
  });

  app.get<{ Params: IdParams }>('/sandboxes/:sandboxID', {
    config: e2b,
    schema: { tags, summary: 'A sandbox\'s detail', params: ID_PARAMS, response: { 200: SANDBOX_DETAIL, ...errors(404) } },
    handler: async (request) => detail(manager.get(request.params.sandboxID), domain()),
  });

  app.get<{ Params: IdParams; Querystring: { start?: number; end?: number } }>('/sandboxes/:sandboxID/metrics', {
    config: e2b,
    schema: {
      tags,
      summary: "A sandbox's CPU, memory and disk over time: a sample every 5 s, the last hour (the SDK's getMetrics)",
      params: ID_PARAMS,
      querystring: { type: 'object', properties: { start: { type: 'integer', minimum: 0, description: 'Seconds since the epoch' }, end: { type: 'integer', minimum: 0 } }, additionalProperties: false },
      response: { 200: { type: 'array', items: SANDBOX_METRIC }, ...errors(404) },
    },
    handler: async (request) =>
      manager.metrics(request.params.sandboxID, request.query.start, request.query.end).map((sample) => ({ ...sample, timestamp: new Date(sample.timestampUnix * 1000).toISOString() })),
  });

  app.delete<{ Params: IdParams }>('/sandboxes/:sandboxID', {
    config: e2b,
    schema: { tags, summary: 'Kill a sandbox', params: ID_PARAMS, response: { 204: { type: 'null', description: 'Killed' }, ...errors(404) } },
    handler: async (request, reply) => {
      await manager.kill(request.params.sandboxID);
      return reply.code(204).send();
    },
  });

  app.put<{ Params: IdParams; Body: E2bNetwork }>('/sandboxes/:sandboxID/network', {
    config: e2b,
    schema: {
      tags,
      summary: 'Replace a running sandbox\'s egress rules (allowOut; an allowlist sandbox only: its network is fixed at creation)',
      params: ID_PARAMS,
      body: NETWORK_UPDATE,
      response: { 204: { type: 'null', description: 'Updated' }, ...errors(400, 404) },
    },
    handler: async (request, reply) => {
      const body = request.body ?? {};
      if (body.allow_internet_access === true) refuse('allow_internet_access', 'a sandbox\'s network mode is fixed at creation; list destinations in allowOut');
      const wanted = e2bNetwork(body);
      manager.setNetworkRules(request.params.sandboxID, { allow: wanted?.allow ?? [], deny: [] });
      return reply.code(204).send();
    },
  });

  app.post<{ Params: IdParams; Body: { timeout: number } }>('/sandboxes/:sandboxID/timeout', {
    config: e2b,
    schema: { tags, summary: 'Set when the sandbox is killed, in seconds from now', params: ID_PARAMS, body: TIMEOUT_BODY, response: { 204: { type: 'null', description: 'Set' }, ...errors(400, 404) } },
    handler: async (request, reply) => {
      manager.setTimeout(request.params.sandboxID, request.body.timeout * 1000);
      return reply.code(204).send();
    },
  });

  for (const url of ['/sandboxes/:sandboxID/connect', '/v2/sandboxes/:sandboxID/connect']) {
    app.post<{ Params: IdParams; Body: { timeout?: number } | undefined }>(url, {
      config: e2b,
      schema: { tags, summary: 'Connect to a running sandbox: its access token, and its timeout extended', params: ID_PARAMS, body: CONNECT_BODY, response: { 200: SANDBOX, ...errors(400, 404) } },
      // Every field is optional, so is the body itself.
      preValidation: async (request) => {
        request.body ??= {};
      },
      handler: async (request) => {
        const timeoutMs = (request.body?.timeout ?? DEFAULT_CONNECT_SECONDS) * 1000;
        let record = manager.get(request.params.sandboxID);
        // As E2B: connecting never shortens a sandbox's life.
        if (Date.now() + timeoutMs > Date.parse(record.endAt)) record = manager.setTimeout(record.id, timeoutMs);
        return created(record, domain());
      },
    });
  }
}

/** A body field brig cannot honour: refused, naming it. */
function refuse(field: string, why: string): never {
  throw new BrigError('BRIG_BAD_REQUEST', `body.${field}: ${why}`, BAD_REQUEST_HINT);
}

/** The request as the manager takes it. Fields brig cannot honour are refused: ignoring them would surprise later (a sandbox killed instead of paused, a mount missing). */
function createCommand(body: NewSandboxBody): CreateSandboxRequest {
  if (body.autoPause === true) refuse('autoPause', 'brig cannot pause a sandbox (its timeout kills it)');
  if (body.autoResume?.enabled === true) refuse('autoResume', 'brig cannot pause, so nothing resumes');
  if (body.mcp !== undefined && body.mcp !== null) refuse('mcp', 'brig has no MCP gateway template');
  if (body.iam?.tokens !== undefined && Object.keys(body.iam.tokens).length > 0) refuse('iam', 'brig issues no workload identity tokens');
  if (body.volumeMounts !== undefined && body.volumeMounts.length > 0) refuse('volumeMounts', 'brig has no volumes: use a brig policy\'s filesystem');
  const network = e2bNetwork(body.network ?? {});
  const policy = body.policy === undefined ? undefined : validatePolicyInput(body.policy, 'policy');
  const ports: PublishedPorts = {
    ...(body.agentPort === undefined ? {} : { agent: parsePortAddress(body.agentPort, 'body.agentPort') }),
    ...(body.monitorPort === undefined ? {} : { monitor: parsePortAddress(body.monitorPort, 'body.monitorPort') }),
  };
  return {
    templateId: body.profile ?? body.templateID ?? body.image,
    ...(body.image === undefined ? {} : { image: body.image }),
    ...(body.tier === undefined ? {} : { tier: body.tier }),
    timeoutMs: body.timeout === undefined ? undefined : body.timeout * 1000,
    metadata: body.metadata,
    envVars: body.envVars,
    name: body.name,
    // A brig policy's own network wins over E2B's fields.
    policy: network ? { ...policy, network: { ...network, ...policy?.network } } : policy,
    keepWorkspace: body.keepWorkspace,
    allowInternetAccess: body.allow_internet_access,
    ...(ports.agent || ports.monitor ? { ports } : {}),
  };
}

/**
 * E2B's egress fields as brig's allowlist. In E2B an allowOut entry beats a
 * denyOut one and traffic is open unless listed; brig's allowlist refuses all
 * but what is allowed. So allowOut becomes the allow list (denyOut then adds
 * nothing: what is not allowed is refused), and denyOut of all traffic alone
 * means no network. What brig cannot mean the same way is refused.
 */
function e2bNetwork(network: E2bNetwork): PolicyInput['network'] | null {
  if (network.rules !== undefined && Object.keys(network.rules).length > 0) refuse('network.rules', 'brig injects credentials through its LLM gateway, not header transforms: use a brig policy\'s network.llm');
  if (network.egressProxy !== undefined) refuse('network.egressProxy', 'brig sandboxes leave only through brig\'s own proxy');
  // A sandbox's ports always need its traffic token (or the API key): false is what brig does anyway.
  if (network.allowPublicTraffic === true) refuse('network.allowPublicTraffic', 'brig opens a sandbox\'s ports only to its traffic access token and the daemon\'s API key; send the trafficAccessToken creating it returns');
  const allowOut = network.allowOut ?? [];
  const denyOut = network.denyOut ?? [];
  if (allowOut.length > 0) return { mode: 'allowlist', allow: allowOut };
  if (denyOut.length === 0) return null;
  if (denyOut.some((entry) => ALL_TRAFFIC.includes(entry))) return { mode: 'none' };
  return refuse('network.denyOut', 'brig cannot open all traffic but a few destinations; list what the sandbox may reach in allowOut');
}

const ALL_TRAFFIC = ['0.0.0.0/0', '::/0'];

interface E2bNetwork {
  allowOut?: string[];
  denyOut?: string[];
  rules?: Record<string, unknown>;
  egressProxy?: unknown;
  allowPublicTraffic?: boolean;
  allow_internet_access?: boolean;
}

/** E2B's states: brig's creating and running are E2B's running; brig never pauses; stopped sandboxes are gone. */
const LIVE: SandboxState[] = ['creating', 'running'];

function brigStates(requested: string[] | undefined): SandboxState[] {
  if (requested === undefined) return LIVE;
  const names = requested.flatMap((item) => item.split(',')).map((name) => name.trim()).filter(Boolean);
  for (const name of names) {
    if (name !== 'running' && name !== 'paused') throw new BrigError('BRIG_BAD_REQUEST', `querystring.state: ${JSON.stringify(name)} is not running or paused`, BAD_REQUEST_HINT);
  }
  return names.includes('running') || names.length === 0 ? LIVE : [];
}

/** The SDK's metadata filter: "k=v&k2=v2" with each key and value URL-encoded once more. */
function metadataFilter(text: string | undefined): Record<string, string> | undefined {
  if (text === undefined || text === '') return undefined;
  const filter: Record<string, string> = {};
  try {
    for (const [key, value] of new URLSearchParams(text)) filter[decodeURIComponent(key)] = decodeURIComponent(value);
  } catch {
    throw new BrigError('BRIG_BAD_REQUEST', 'querystring.metadata: a key or value is not valid URL encoding', 'Encode it as "k=v&k2=v2" with each key and value URL-encoded (encodeURIComponent).');
  }
  return filter;
}

/** What E2B's every answer about a sandbox starts with. */
function named(record: SandboxRecord) {
  return { sandboxID: record.id, templateID: record.templateId, alias: record.templateId, clientID: CLIENT_ID };
}

/** The domain and the traffic token are what the companion SDKs need for a sandbox's ports (getHost, E2B-Traffic-Access-Token). */
function created(record: SandboxRecord, domain: string) {
  return {
    ...named(record),
    envdVersion: ENVD_VERSION,
    envdAccessToken: record.envdAccessToken,
    trafficAccessToken: trafficAccessToken(record.envdAccessToken),
    domain,
    name: record.name,
  };
}

function listed(record: SandboxRecord) {
  return {
    ...named(record),
    startedAt: record.startedAt,
    endAt: record.endAt,
    state: 'running' as const,
    // E2B counts whole CPUs; a policy may give a fraction of one.
    cpuCount: Math.max(1, Math.ceil(record.policy.resources.cpus)),
    memoryMB: record.policy.resources.memoryMiB,
    diskSizeMB: 0,
    envdVersion: ENVD_VERSION,
    metadata: record.metadata,
    name: record.name,
  };
}

function detail(record: SandboxRecord, domain: string) {
  return { ...listed(record), envdAccessToken: record.envdAccessToken, domain, allowInternetAccess: record.policy.network.mode === 'host' };
}
