/**
 * The egress room's shared vocabulary: what a sandbox may reach (rules), what
 * was refused (violations), what the LLM gateway counts (usage) and records
 * (transcripts). The proxy and the gateway speak only these types to their host
 * (`brig run` or the daemon), which decides where they are kept.
 */
import type { LlmProvider } from '../policy/index.ts';

/** Allow and deny lists: `example.com`, `*.example.com`, `host:443`, `10.0.0.0/8`, `[::1]:8080`. Deny is checked first. */
export interface NetworkRules {
  allow: string[];
  deny: string[];
}

export type ViolationKind = 'network' | 'llm' | 'filesystem';

/** One refused access: who tried what, and which rule said no. */
export interface Violation {
  /** ISO 8601. */
  time: string;
  sandbox: string;
  kind: ViolationKind;
  /** What was tried: `host:port`, a URL path, a file path. */
  target: string;
  /** The rule that refused it: `deny *.evil.com`, `not in allowlist`, `resolves to private address 10.0.0.1`, `budget: tokens`. */
  rule: string;
}

/** The model APIs the gateway serves (the policy's name for them). */
export type Provider = LlmProvider;

/** Tokens as the provider reported them; 0 when it did not say. */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

/** What one sandbox may spend through the gateway; 0 means no limit. */
export interface Budget {
  maxRequests: number;
  maxTokens: number;
}

/** What one sandbox has spent so far. */
export interface Spent {
  requests: number;
  inputTokens: number;
  outputTokens: number;
}

/** One exchange through the gateway, as appended to the sandbox's transcript. Never holds a key. */
export interface TranscriptEntry {
  time: string;
  sandbox: string;
  provider: Provider;
  method: string;
  /** The upstream path and query, with any key parameter removed. */
  path: string;
  status: number;
  /** Request and response bodies as text, each cut at a cap (then `truncated` is true). */
  request: string;
  response: string;
  truncated: boolean;
  usage: TokenUsage;
  /** Time to the upstream's response headers, and to the end of its body. */
  headersMs: number;
  totalMs: number;
  /** Set when the upstream could not be reached or failed mid-stream. */
  error?: string;
}
