import { ERROR_SCHEMA } from './errors.ts';

/**
 * JSON schemas of E2B's control plane as brig serves it: fastify validates
 * requests with them, serializes answers with them, and @fastify/swagger turns
 * them into the OpenAPI document. Field names and shapes are E2B's (its
 * openapi.yml, as the e2b SDK 2.x reads it); brig's extensions say so.
 * Unknown body fields are ignored, not refused: newer SDKs add fields.
 */

const STRINGS = { type: 'object', additionalProperties: { type: 'string' } } as const;
/** E2B's timeouts are int32 seconds. */
const SECONDS = { type: 'integer', minimum: 1, maximum: 2_147_483_647 } as const;

export const ID_PARAMS = {
  type: 'object',
  properties: { sandboxID: { type: 'string', minLength: 1, maxLength: 100, description: 'The sandbox\'s id (brig also takes its name)' } },
  required: ['sandboxID'],
} as const;

export const NEW_SANDBOX = {
  type: 'object',
  description: 'E2B\'s NewSandbox. Fields brig cannot honour (autoPause, autoResume, mcp, iam, volumeMounts, network rules) are refused, not ignored; unknown fields are ignored.',
  properties: {
    templateID: { type: 'string', minLength: 1, maxLength: 128, description: '"base" (the image base once built, else the default policy), an image of the store or a snapshot (NAME or NAME:TAG, as GET /templates lists them), or an agent profile: claude-code, opencode, gemini-cli, codex, crush, or one of the daemon user\'s own (brig agent ls)' },
    timeout: { ...SECONDS, description: 'Seconds until the sandbox is killed (default 300)' },
    metadata: { ...STRINGS, description: 'Your labels, for filtering lists' },
    envVars: { ...STRINGS, description: 'Variables set in every command\'s environment' },
    allow_internet_access: { type: 'boolean', description: 'true gives the sandbox the host\'s network; brig\'s default is none' },
    secure: { type: 'boolean', description: 'Ignored: brig sandboxes are always secured by an access token' },
    autoPause: { type: 'boolean' },
    autoPauseMemory: { type: 'boolean' },
    autoResume: { type: 'object' },
    mcp: {},
    network: {
      type: 'object',
      description: 'allowOut becomes brig\'s allowlist (names, *.wildcards, IPs, CIDRs); denyOut of all traffic alone means no network; rules and egressProxy are refused',
      properties: {
        allowOut: { type: 'array', items: { type: 'string' } },
        denyOut: { type: 'array', items: { type: 'string' } },
        rules: { type: 'object' },
        egressProxy: {},
        allowPublicTraffic: { type: 'boolean', description: 'false, or absent: a sandbox\'s ports need its trafficAccessToken or the API key (true is refused)' },
      },
    },
    iam: { type: 'object' },
    volumeMounts: { type: 'array' },
    name: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', description: 'brig: a name usable instead of the id, unique among running sandboxes' },
    profile: { type: 'string', minLength: 1, maxLength: 64, description: 'brig: an agent profile to start from (the same as templateID)' },
    image: { type: 'string', minLength: 1, maxLength: 384, description: 'brig: an image of the daemon\'s store to boot from (NAME or NAME:TAG); unknown names are a 404 that lists the images' },
    tier: { type: 'string', minLength: 1, maxLength: 32, pattern: '^[a-z][a-z0-9-]*$', description: 'brig: the isolation tier (jail, gvisor; GET /v1/tiers lists what runs here); default: the policy\'s, else the daemon\'s --tier' },
    policy: { type: 'object', description: 'brig: a policy applied on top of the template\'s (docs/policy.md; refused with BRIG_POLICY_INVALID naming every bad field)' },
    keepWorkspace: { type: 'boolean', description: 'brig: keep the workspace directory when the sandbox ends' },
    agentPort: {
      anyOf: [{ type: 'string', maxLength: 64 }, { type: 'integer' }],
      description: 'brig: publish an agent port on the host, [HOST:]PORT (HOST 127.0.0.1 by default; another needs the policy\'s network.publish): each TCP connection gets a fresh login shell in the sandbox, its output streamed back',
    },
    monitorPort: {
      anyOf: [{ type: 'string', maxLength: 64 }, { type: 'integer' }],
      description: 'brig: publish a monitor port on the host, [HOST:]PORT: lines sent to it are typed into one persistent shell (tag brig-monitor), which brig attach shows; nothing is sent back',
    },
  },
} as const;

export const NETWORK_UPDATE = {
  type: 'object',
  properties: {
    allowOut: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 300 } },
    denyOut: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 300 } },
    allow_internet_access: { type: 'boolean' },
    rules: { type: 'object' },
    egressProxy: {},
  },
} as const;

export const TIMEOUT_BODY = {
  type: 'object',
  properties: { timeout: { ...SECONDS, description: 'Seconds from now until the sandbox is killed' } },
  required: ['timeout'],
} as const;

export const CONNECT_BODY = {
  type: 'object',
  properties: {
    timeout: { ...SECONDS, description: 'Seconds from now the sandbox lives at least (default 300); never shortens it' },
    memory: { type: 'boolean', description: 'Ignored: brig sandboxes are never paused' },
  },
} as const;

export const LIST_QUERY = {
  type: 'object',
  properties: {
    metadata: { type: 'string', maxLength: 8192, description: 'As the SDK encodes it: "k=v&k2=v2" with each key and value URL-encoded' },
    state: { type: 'array', items: { type: 'string' }, description: 'running and/or paused, comma-separated (brig never pauses, so paused lists nothing)' },
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 100 },
    nextToken: { type: 'string', maxLength: 512, description: 'The X-Next-Token of the previous page' },
    order: { type: 'string', enum: ['asc', 'desc'], description: 'brig lists oldest first: only asc is served' },
    startedAfter: { type: 'string', format: 'date-time' },
    template: { type: 'string', maxLength: 128 },
  },
} as const;

export const V1_LIST_QUERY = { type: 'object', properties: { metadata: LIST_QUERY.properties.metadata } } as const;

/** E2B's Sandbox: what create and connect return. */
export const SANDBOX = {
  type: 'object',
  properties: {
    sandboxID: { type: 'string' },
    templateID: { type: 'string' },
    alias: { type: 'string' },
    clientID: { type: 'string', description: 'Deprecated by E2B; always "brig"' },
    envdVersion: { type: 'string' },
    envdAccessToken: { type: 'string', description: 'Send as X-Access-Token to the envd gateway' },
    trafficAccessToken: { type: ['string', 'null'] },
    domain: { type: ['string', 'null'] },
    name: { type: ['string', 'null'], description: 'brig: the sandbox\'s name' },
  },
  required: ['sandboxID', 'templateID', 'clientID', 'envdVersion'],
} as const;

/** E2B's ListedSandbox. */
export const LISTED_SANDBOX = {
  type: 'object',
  properties: {
    sandboxID: { type: 'string' },
    templateID: { type: 'string' },
    alias: { type: 'string' },
    clientID: { type: 'string' },
    startedAt: { type: 'string', format: 'date-time' },
    endAt: { type: 'string', format: 'date-time' },
    state: { type: 'string', enum: ['running', 'paused'] },
    cpuCount: { type: 'integer' },
    memoryMB: { type: 'integer' },
    diskSizeMB: { type: 'integer', description: 'brig sets no disk quota: 0' },
    envdVersion: { type: 'string' },
    metadata: STRINGS,
    name: { type: ['string', 'null'], description: 'brig: the sandbox\'s name' },
  },
  required: ['sandboxID', 'templateID', 'clientID', 'startedAt', 'endAt', 'state', 'cpuCount', 'memoryMB', 'diskSizeMB', 'envdVersion'],
} as const;

/** E2B's SandboxDetail. */
/** E2B's SandboxMetric: one sample of a sandbox's CPU, memory and disk. */
export const SANDBOX_METRIC = {
  type: 'object',
  properties: {
    timestamp: { type: 'string', format: 'date-time' },
    timestampUnix: { type: 'integer', description: 'Seconds since the epoch' },
    cpuCount: { type: 'integer' },
    cpuUsedPct: { type: 'number', description: 'Of its CPUs, since the sample before' },
    memUsed: { type: 'integer', description: 'Bytes charged to it, page cache included' },
    memTotal: { type: 'integer', description: 'Its memory limit in bytes' },
    memCache: { type: 'integer', description: 'Of memUsed, the page cache' },
    diskUsed: { type: 'integer', description: 'Bytes its workspace takes (measured once a minute)' },
    diskTotal: { type: 'integer', description: 'Its disk limit, else the size of the filesystem its workspace is on' },
  },
  required: ['timestamp', 'timestampUnix', 'cpuCount', 'cpuUsedPct', 'memUsed', 'memTotal', 'memCache', 'diskUsed', 'diskTotal'],
} as const;

export const SANDBOX_DETAIL = {
  type: 'object',
  properties: {
    ...LISTED_SANDBOX.properties,
    envdAccessToken: { type: 'string' },
    domain: { type: ['string', 'null'] },
    allowInternetAccess: { type: ['boolean', 'null'] },
  },
  required: LISTED_SANDBOX.required,
} as const;

/** The error answers a route can give, for the document. */
export function errors(...statuses: number[]): Record<number, typeof ERROR_SCHEMA> {
  return Object.fromEntries([401, ...statuses].map((status) => [status, ERROR_SCHEMA]));
}
