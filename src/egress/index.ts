/**
 * egress/: a sandbox's way out in allowlist mode, host side. Its proxy (HTTP
 * CONNECT, absolute-form HTTP and SOCKS5, with allow/deny rules and a DNS
 * rebinding guard) and the LLM gateway (keys injected upstream, usage metered,
 * budgets, transcripts) share one unix socket per sandbox. Used by `brig run`
 * and by the daemon; each keeps what egress observes in its own ledger.
 */
import brigSpawn from 'brig-spawn';
import { BrigError } from '../protocol/index.ts';
import { applyPolicyInput, type Policy } from '../policy/index.ts';
import { egressEnvironment } from './environment.ts';
import { checkRules } from './rules.ts';
import type { NetworkRules } from './types.ts';

export { egressEnvironment, EGRESS_URL } from './environment.ts';
export { startSandboxEgress } from './sandbox.ts';
export type { EgressLedger, SandboxEgress, SandboxEgressOptions } from './sandbox.ts';
export { createGateway, loadGatewayConfig, PLACEHOLDER_KEY, PROVIDER_SPECS, PROVIDERS } from './gateway/index.ts';
export type { Gateway, GatewayConfig } from './gateway/index.ts';
export type { Budget, NetworkRules, Provider, Spent, TokenUsage, TranscriptEntry, Violation, ViolationKind } from './types.ts';

/** brig-relay, the program that carries a jail's loopback port to its egress socket (built beside the spawn addon). */
export function relayBinary(): string {
  return brigSpawn.relayPath;
}

/** The policy with the egress variables set (proxy, gateway base URLs, placeholder keys); a value the policy sets itself wins. */
export function withEgressEnvironment(policy: Policy): Policy {
  const env = egressEnvironment(policy.network);
  if (Object.keys(env).length === 0) return policy;
  return applyPolicyInput(policy, { environment: { set: { ...env, ...policy.environment.set } } }, 'egress');
}

/** Every allow and deny entry parsed, before a sandbox starts or its rules change: a bad entry is BRIG_POLICY_INVALID naming it. */
export function checkNetworkRules(rules: NetworkRules): void {
  try {
    checkRules(rules);
  } catch (error) {
    throw new BrigError('BRIG_POLICY_INVALID', `network rules: ${error instanceof Error ? error.message : String(error)}`, 'entries look like example.com, *.example.com, example.com:443, 10.0.0.0/8 or [2001:db8::1]:443 (docs/egress.md)');
  }
}
