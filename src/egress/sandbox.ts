import { chmodSync, chownSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { EGRESS_SOCKET_NAME, traversable } from '../protocol/index.ts';
import type { NetworkPolicy } from '../policy/index.ts';
import { createEgressProxy } from './proxy.ts';
import type { Gateway } from './gateway/index.ts';
import type { Spent, TranscriptEntry, Violation } from './types.ts';

/**
 * One sandbox's way out, host side: its proxy (and gateway) listening on a
 * unix socket of its own, so every connection is known to come from it.
 * Hosts (`brig run`, the daemon) decide where what it observes is kept.
 */

/** Where a host keeps what a sandbox's egress observes. */
export interface EgressLedger {
  violation(violation: Violation): void;
  spent(sandbox: string): Spent;
  charge(sandbox: string, delta: Spent): void;
  transcript(entry: TranscriptEntry): void;
}

export interface SandboxEgressOptions {
  sandbox: string;
  /** A host directory for the socket, created here (private to the jail's host user) and bound into the jail. */
  dir: string;
  /** The jail's host user when brig runs as root and drops to another uid: it must reach the socket, nobody else may. */
  owner: { uid: number; gid: number } | null;
  /** Read on every connection and request: rules and budgets change live. */
  network(): NetworkPolicy;
  /** Null when the host has no gateway (then only the proxy answers). */
  gateway: Gateway | null;
  ledger: EgressLedger;
}

export interface SandboxEgress {
  socketPath: string;
  close(): Promise<void>;
}

export async function startSandboxEgress(options: SandboxEgressOptions): Promise<SandboxEgress> {
  const { sandbox, ledger, gateway } = options;
  // The parent traversable (not listable): the jail's user, when brig drops to it, must reach the socket.
  if (options.owner) traversable(dirname(options.dir));
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  chmodSync(options.dir, 0o700);
  if (options.owner) chownSync(options.dir, options.owner.uid, options.owner.gid);
  const socketPath = `${options.dir}/${EGRESS_SOCKET_NAME}`;
  // A socket left by a daemon that died: the jail still sees the directory, so a new socket here reaches it.
  rmSync(socketPath, { force: true });
  const proxy = createEgressProxy({
    sandbox,
    rules: () => options.network(),
    violation: (violation) => ledger.violation(violation),
    gateway: gateway
      ? (req, res) => {
          const network = options.network();
          gateway.handle(req, res, {
            sandbox,
            providers: network.llm,
            budget: { maxRequests: network.budget.requests, maxTokens: network.budget.tokens },
            spent: () => ledger.spent(sandbox),
            charge: (delta) => ledger.charge(sandbox, delta),
            transcript: (entry) => ledger.transcript(entry),
            violation: (violation) => ledger.violation(violation),
          });
        }
      : undefined,
  });
  await proxy.listen(socketPath);
  // The directory keeps others out; the socket itself must accept the jail's uid.
  chmodSync(socketPath, 0o666);
  return {
    socketPath,
    close: () => proxy.close(),
  };
}
