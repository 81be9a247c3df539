import type { IncomingHttpHeaders } from 'node:http';
import type { onRequestAsyncHookHandler } from 'fastify';
import { BrigError, sameSecret } from '../../protocol/index.ts';

/**
 * The control plane's one credential: the daemon's API key, as E2B's SDK
 * sends it (X-API-KEY) or as a bearer token (curl, the brig CLI). envd
 * traffic never gets here: the gateway takes it first, and envd checks the
 * sandbox's own access token.
 */

const HINT = 'Send the daemon\'s API key as X-API-KEY or Authorization: Bearer; the CLI reads BRIG_API_KEY or the api-key file in the daemon\'s state directory.';

export function apiKeyCheck(apiKey: string): onRequestAsyncHookHandler {
  if (apiKey.length === 0) throw new Error('buildApi: an empty API key would let anyone in');
  return async (request) => {
    const given = presentedKey(request.headers);
    if (given === null) throw new BrigError('BRIG_UNAUTHORIZED', 'no API key in the request', HINT);
    if (!sameSecret(given, apiKey)) throw new BrigError('BRIG_UNAUTHORIZED', 'the API key is wrong', HINT);
  };
}

/** The API key a request carries, as X-API-KEY or a bearer token; null for none. */
export function presentedKey(headers: IncomingHttpHeaders): string | null {
  const header = headers['x-api-key'];
  if (typeof header === 'string' && header.length > 0) return header;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '');
  return match?.[1] ?? null;
}
