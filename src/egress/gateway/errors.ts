import type { Provider } from '../types.ts';

/**
 * The gateway's own refusals, in each provider's error shape: an agent's SDK
 * parses them like any answer from the provider and shows the message, where
 * a bare text or a foreign JSON shape would surface as "unexpected response".
 */

export type Refusal = 'no-key' | 'not-allowed' | 'endpoint' | 'budget' | 'unreachable' | 'timeout';

export const REFUSAL_STATUS: Record<Refusal, number> = {
  'no-key': 401,
  'not-allowed': 403,
  endpoint: 403,
  budget: 429,
  unreachable: 502,
  timeout: 504,
};

const ANTHROPIC_TYPE: Record<Refusal, string> = {
  'no-key': 'authentication_error',
  'not-allowed': 'permission_error',
  endpoint: 'permission_error',
  budget: 'rate_limit_error',
  unreachable: 'api_error',
  timeout: 'api_error',
};

/**
 * `insufficient_quota` rather than `rate_limit_exceeded` for a spent budget:
 * agents (Codex) treat the first as final and the second as a cue to retry.
 */
const OPENAI_TYPE: Record<Refusal, { type: string; code: string }> = {
  'no-key': { type: 'invalid_request_error', code: 'invalid_api_key' },
  'not-allowed': { type: 'invalid_request_error', code: 'provider_not_allowed' },
  endpoint: { type: 'invalid_request_error', code: 'endpoint_not_allowed' },
  budget: { type: 'insufficient_quota', code: 'insufficient_quota' },
  unreachable: { type: 'server_error', code: 'upstream_unreachable' },
  timeout: { type: 'server_error', code: 'upstream_timeout' },
};

const GEMINI_STATUS: Record<Refusal, string> = {
  'no-key': 'UNAUTHENTICATED',
  'not-allowed': 'PERMISSION_DENIED',
  endpoint: 'PERMISSION_DENIED',
  budget: 'RESOURCE_EXHAUSTED',
  unreachable: 'UNAVAILABLE',
  timeout: 'DEADLINE_EXCEEDED',
};

export interface ErrorReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function refusalReply(provider: Provider, refusal: Refusal, message: string): ErrorReply {
  const status = REFUSAL_STATUS[refusal];
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // Retrying cannot help until the host changes something; Anthropic's and OpenAI's SDKs
  // (Claude Code, Codex, opencode) otherwise retry a 429 for minutes. 502 and 504 may pass.
  if (refusal !== 'unreachable' && refusal !== 'timeout') headers['x-should-retry'] = 'false';
  return { status, headers, body: JSON.stringify(errorShape(provider, refusal, status, message)) };
}

function errorShape(provider: Provider, refusal: Refusal, status: number, message: string): unknown {
  switch (provider) {
    case 'anthropic':
      return { type: 'error', error: { type: ANTHROPIC_TYPE[refusal], message } };
    case 'openai':
      return { error: { message, type: OPENAI_TYPE[refusal].type, param: null, code: OPENAI_TYPE[refusal].code } };
    case 'gemini':
      return { error: { code: status, message, status: GEMINI_STATUS[refusal] } };
  }
}
