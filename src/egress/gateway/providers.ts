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
}

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
