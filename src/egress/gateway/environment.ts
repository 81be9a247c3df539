import type { Provider } from '../types.ts';
import { PROVIDER_SPECS } from './providers.ts';

/**
 * The variables that point the common agents at the gateway, with a
 * placeholder where they expect a key. Each agent reads its own names:
 *
 * - Claude Code: ANTHROPIC_BASE_URL (no /v1) and ANTHROPIC_API_KEY, sent as x-api-key.
 * - Codex: OPENAI_BASE_URL (with /v1) and OPENAI_API_KEY; Responses API.
 * - Gemini CLI (@google/genai): GOOGLE_GEMINI_BASE_URL (no version) and GEMINI_API_KEY.
 *   GOOGLE_API_KEY is left out: set beside GEMINI_API_KEY it wins, with a warning at every start.
 * - opencode (AI SDK): ANTHROPIC_BASE_URL and OPENAI_BASE_URL from the environment (the
 *   anthropic provider wants /v1, which the gateway restores when missing); Google's provider
 *   reads no base URL variable, so all three go in OPENCODE_CONFIG_CONTENT as well; its Google
 *   key is GOOGLE_GENERATIVE_AI_API_KEY.
 * - Crush (catwalk): ANTHROPIC_API_ENDPOINT, OPENAI_API_ENDPOINT, GEMINI_API_ENDPOINT.
 * - aider and LiteLLM-based tools: OPENAI_API_BASE.
 */

/** Not a secret: what a sandbox holds where its key would be. The gateway drops it. */
export const PLACEHOLDER_KEY = 'brig-placeholder-key-the-gateway-sends-the-real-one';

/** `baseUrl` is where the sandbox reaches the gateway, e.g. http://127.0.0.1:3128. */
export function gatewayEnvironment(baseUrl: string, providers: readonly Provider[]): Record<string, string> {
  const base = baseUrl.replace(/\/+$/, '');
  const at = (provider: Provider) => base + PROVIDER_SPECS[provider].prefix;
  const env: Record<string, string> = {};
  const opencode: Record<string, { options: { baseURL: string } }> = {};
  if (providers.includes('anthropic')) {
    env.ANTHROPIC_BASE_URL = at('anthropic');
    env.ANTHROPIC_API_KEY = PLACEHOLDER_KEY;
    env.ANTHROPIC_API_ENDPOINT = at('anthropic');
    opencode.anthropic = { options: { baseURL: `${at('anthropic')}/v1` } };
  }
  if (providers.includes('openai')) {
    env.OPENAI_BASE_URL = `${at('openai')}/v1`;
    env.OPENAI_API_BASE = `${at('openai')}/v1`;
    env.OPENAI_API_ENDPOINT = `${at('openai')}/v1`;
    env.OPENAI_API_KEY = PLACEHOLDER_KEY;
    opencode.openai = { options: { baseURL: `${at('openai')}/v1` } };
  }
  if (providers.includes('gemini')) {
    env.GOOGLE_GEMINI_BASE_URL = at('gemini');
    env.GEMINI_API_ENDPOINT = at('gemini');
    env.GEMINI_API_KEY = PLACEHOLDER_KEY;
    env.GOOGLE_GENERATIVE_AI_API_KEY = PLACEHOLDER_KEY;
    opencode.google = { options: { baseURL: `${at('gemini')}/v1beta` } };
  }
  if (Object.keys(opencode).length > 0) env.OPENCODE_CONFIG_CONTENT = JSON.stringify({ provider: opencode });
  return env;
}
