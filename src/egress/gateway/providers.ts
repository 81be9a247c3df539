import type { OutgoingHttpHeaders } from 'node:http';
import type { Provider } from '../types.ts';

/**
 * What the gateway knows of each provider: where a sandbox reaches it (a path
 * prefix on the gateway), where it really is, and how it wants its key. The
 * sandbox only ever holds a placeholder; every credential it sends is dropped
 * and the host's key put in its place.
 */

export interface ProviderSpec {
  provider: Provider;
  /** `/anthropic`: the gateway path every request for this provider starts with. */
  prefix: string;
  defaultUpstream: string;
  /** The host variables its key is read from, first found wins. */
  keyVariables: readonly string[];
  /** The host variable that moves its upstream (a mirror, a corporate proxy, a test server). */
  upstreamVariable: string;
  /** Puts the host's key on the upstream request. */
  authorize(headers: OutgoingHttpHeaders, key: string): void;
  /**
   * The only requests forwarded with the host's key: the model calls brig
   * meters, and listing the models (free, and agents ask). Batches, files,
   * fine-tuning, organization and admin endpoints are refused (403), so the
   * key cannot be used past the budget, or for anything but a model call.
   */
  endpoints: readonly ModelEndpoint[];
}

export interface ModelEndpoint {
  method: 'GET' | 'POST';
  /** Matched against the whole path (no query) the gateway sends upstream, after URL normalisation. */
  path: RegExp;
  /** How docs/egress.md writes it. */
  shown: string;
  /** Whether its answer carries token usage the token budget counts (every forwarded request counts toward the request budget). */
  metered: boolean;
}

/** A model id as the providers write them (claude-sonnet-4-5, gpt-4.1-mini, gemini-2.5-pro-preview-05-06). */
const MODEL = '[A-Za-z0-9][A-Za-z0-9._-]*';
/** Gemini's custom method separator; a client may percent-encode it. */
const COLON = '(?::|%3[Aa])';

const endpoint = (method: ModelEndpoint['method'], shown: string, path: string, metered = true): ModelEndpoint => ({ method, path: new RegExp(`^${path}$`), shown, metered });

export const PROVIDERS: readonly Provider[] = ['anthropic', 'openai', 'gemini'];

export const PROVIDER_SPECS: Record<Provider, ProviderSpec> = {
  anthropic: {
    provider: 'anthropic',
    prefix: '/anthropic',
    defaultUpstream: 'https://api.anthropic.com',
    keyVariables: ['ANTHROPIC_API_KEY'],
    upstreamVariable: 'BRIG_ANTHROPIC_URL',
    authorize: (headers, key) => {
      headers['x-api-key'] = key;
    },
    endpoints: [
      endpoint('POST', '/v1/messages', '/v1/messages'),
      endpoint('POST', '/v1/messages/count_tokens', '/v1/messages/count_tokens', false),
      endpoint('GET', '/v1/models', '/v1/models', false),
      endpoint('GET', '/v1/models/{model}', `/v1/models/${MODEL}`, false),
    ],
  },
  openai: {
    provider: 'openai',
    prefix: '/openai',
    defaultUpstream: 'https://api.openai.com',
    keyVariables: ['OPENAI_API_KEY'],
    upstreamVariable: 'BRIG_OPENAI_URL',
    authorize: (headers, key) => {
      headers.authorization = `Bearer ${key}`;
    },
    endpoints: [
      endpoint('POST', '/v1/chat/completions', '/v1/chat/completions'),
      endpoint('POST', '/v1/responses', '/v1/responses'),
      endpoint('POST', '/v1/completions', '/v1/completions'),
      endpoint('POST', '/v1/embeddings', '/v1/embeddings'),
      endpoint('GET', '/v1/models', '/v1/models', false),
      endpoint('GET', '/v1/models/{model}', `/v1/models/${MODEL}`, false),
    ],
  },
  gemini: {
    provider: 'gemini',
    prefix: '/gemini',
    defaultUpstream: 'https://generativelanguage.googleapis.com',
    keyVariables: ['GEMINI_API_KEY', 'GOOGLE_API_KEY'],
    upstreamVariable: 'BRIG_GEMINI_URL',
    authorize: (headers, key) => {
      headers['x-goog-api-key'] = key;
    },
    endpoints: [
      endpoint('POST', '/{v1,v1beta}/models/{model}:generateContent', `/v1(?:beta)?/models/${MODEL}${COLON}generateContent`),
      endpoint('POST', '/{v1,v1beta}/models/{model}:streamGenerateContent', `/v1(?:beta)?/models/${MODEL}${COLON}streamGenerateContent`),
      endpoint('POST', '/{v1,v1beta}/models/{model}:countTokens', `/v1(?:beta)?/models/${MODEL}${COLON}countTokens`, false),
      endpoint('GET', '/{v1,v1beta}/models', '/v1(?:beta)?/models', false),
      endpoint('GET', '/{v1,v1beta}/models/{model}', `/v1(?:beta)?/models/${MODEL}`, false),
    ],
  },
};

/** Every way a client can carry a credential; none of them reaches upstream from the sandbox. */
export const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'x-api-key', 'x-goog-api-key', 'api-key'];

const ANTHROPIC_V1_RESOURCES = /^\/(?:messages|models|complete|files|skills)(?:[/?]|$)/;

/** A request for a provider: which one, and the path and query to append to its upstream. */
export interface ProviderRoute {
  provider: Provider;
  /** `/v1/messages?beta=true`: the rest of the gateway path, already cleaned for upstream. */
  path: string;
}

/**
 * The provider a gateway URL is for, or null when it names none. Accepts the
 * absolute form too (`http://127.0.0.1:3128/openai/v1/...`), which a client
 * sends when it wrongly routes the gateway itself through HTTP_PROXY.
 */
export function providerRoute(rawUrl: string): ProviderRoute | null {
  const url = URL.canParse(rawUrl, 'http://gateway') ? new URL(rawUrl, 'http://gateway') : null;
  if (url === null) return null;
  for (const provider of PROVIDERS) {
    const { prefix } = PROVIDER_SPECS[provider];
    if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) continue;
    let rest = url.pathname.slice(prefix.length) || '/';
    // Claude Code's ANTHROPIC_BASE_URL has no /v1 and the AI SDK's (opencode) has one, and older AI
    // SDKs append /messages to it as given: the API's own resources get their /v1 back.
    if (provider === 'anthropic' && ANTHROPIC_V1_RESOURCES.test(rest)) rest = `/v1${rest}`;
    // A key in the query would reach upstream (and the transcript); the header carries the real one.
    if (provider === 'gemini' && url.searchParams.has('key')) url.searchParams.delete('key');
    return { provider, path: rest + url.search };
  }
  return null;
}

/** The upstream URL for a route: the path is appended to the base, which may have a path of its own. */
export function upstreamUrl(base: string, path: string): URL {
  const upstream = new URL(base);
  const queryAt = path.indexOf('?');
  const pathname = queryAt === -1 ? path : path.slice(0, queryAt);
  upstream.pathname = upstream.pathname.replace(/\/+$/, '') + pathname;
  upstream.search = queryAt === -1 ? '' : path.slice(queryAt);
  return upstream;
}

/** The model endpoint a request is for, or undefined: then it is not forwarded. */
export function modelEndpoint(route: ProviderRoute, method: string | undefined): ModelEndpoint | undefined {
  const queryAt = route.path.indexOf('?');
  const pathname = queryAt === -1 ? route.path : route.path.slice(0, queryAt);
  return PROVIDER_SPECS[route.provider].endpoints.find((candidate) => candidate.method === method && candidate.path.test(pathname));
}
