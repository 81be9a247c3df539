import { EGRESS_PORT, NODE_PRELOAD_INSIDE } from '../protocol/index.ts';
import type { NetworkPolicy } from '../policy/index.ts';
import { gatewayEnvironment } from './gateway/index.ts';

/** Where a sandbox reaches its proxy and gateway: its own loopback (the driver relays it to the host). */
export const EGRESS_URL = `http://127.0.0.1:${EGRESS_PORT}`;

/**
 * The variables that send an allowlist sandbox's traffic through its proxy:
 * both spellings of each proxy variable (curl reads only lower-case http_proxy,
 * Go and Python both), socks5h so names are resolved by the proxy, never in the
 * sandbox, and loopback exempt so the gateway is reached directly. Node's fetch
 * is taught the same by the preload (NODE_OPTIONS); Node 22+ also honours
 * NODE_USE_ENV_PROXY itself.
 */
export function egressEnvironment(network: NetworkPolicy): Record<string, string> {
  if (network.mode !== 'allowlist') return {};
  const noProxy = 'localhost,127.0.0.1,::1';
  return {
    HTTP_PROXY: EGRESS_URL,
    HTTPS_PROXY: EGRESS_URL,
    http_proxy: EGRESS_URL,
    https_proxy: EGRESS_URL,
    ALL_PROXY: `socks5h://127.0.0.1:${EGRESS_PORT}`,
    all_proxy: `socks5h://127.0.0.1:${EGRESS_PORT}`,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    NODE_OPTIONS: `--require ${NODE_PRELOAD_INSIDE}`,
    NODE_USE_ENV_PROXY: '1',
    ...gatewayEnvironment(EGRESS_URL, network.llm),
  };
}
