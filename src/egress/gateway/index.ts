/**
 * The LLM gateway room: agents in a sandbox reach their model provider through
 * it with a placeholder key; the host's key, budget and transcript stay here.
 */
export { createGateway, type Gateway, type GatewaySession } from './gateway.ts';
export { DEFAULT_HEADER_TIMEOUT_MS, loadGatewayConfig, parseKeyFile, readKeyFile, type GatewayConfig } from './keys.ts';
export { gatewayEnvironment, PLACEHOLDER_KEY } from './environment.ts';
export { PROVIDER_SPECS, PROVIDERS, providerRoute, upstreamUrl, type ProviderRoute, type ProviderSpec } from './providers.ts';
export { refusalReply, type ErrorReply, type Refusal } from './errors.ts';
export { usageFrom, usageMeter, type UsageMeter } from './usage.ts';
export { TRANSCRIPT_BODY_CAP } from './transcript.ts';
