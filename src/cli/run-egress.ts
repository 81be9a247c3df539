import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { defaultStateDir, llmKeyFile, traversable } from '../protocol/index.ts';
import { checkNetworkRules, createGateway, loadGatewayConfig, relayBinary, startSandboxEgress, withEgressEnvironment, type Spent, type TranscriptEntry, type Violation } from '../egress/index.ts';
import type { SandboxPlan } from '../drivers/index.ts';
import type { Policy } from '../policy/index.ts';

/**
 * `brig run` in allowlist mode: the jail's proxy and LLM gateway live in this
 * process for as long as the command runs. What they observe is kept here:
 * violations for the summary printed at the end, spend in memory (the budget
 * is the command's), the transcript in brig's state directory.
 */
export interface RunEgress {
  close(): Promise<void>;
  /** Lines for stderr once the command ended: what was refused, what the gateway served. Empty when neither happened. */
  summary(): string;
}

const SHOWN_VIOLATIONS = 10;

/** Socket directories of earlier runs whose brig was killed (SIGKILL leaves them): named `<pid>-<random>`, gone once that pid is. */
function sweepStaleSockets(runDir: string): void {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = /^(\d+)-[0-9a-f]+$/.exec(name)?.[1];
    if (pid !== undefined && pid !== String(process.pid) && !existsSync(`/proc/${pid}`)) rmSync(`${runDir}/${name}`, { recursive: true, force: true });
  }
}

/** Before planning: the rules checked, the proxy and gateway variables set, and where the bridge's socket will be. */
export function prepareRunEgress(policy: Policy, id: string, insideDir: string) {
  checkNetworkRules(policy.network);
  return {
    policy: withEgressEnvironment(policy),
    bridge: { socketDir: `${defaultStateDir()}/run/${id}`, nodeDir: insideDir, relay: relayBinary() },
  };
}

export async function startRunEgress(plan: SandboxPlan, dir: string): Promise<RunEgress> {
  const stateDir = defaultStateDir();
  const network = plan.policy.network;
  const gateway = network.llm.length > 0 ? createGateway(loadGatewayConfig(process.env, llmKeyFile(stateDir))) : null;
  const violations: Violation[] = [];
  const spent: Spent = { requests: 0, inputTokens: 0, outputTokens: 0 };
  const transcriptFile = `${stateDir}/transcripts/run-${plan.id}.jsonl`;
  let transcribed = false;
  const exchanges = { total: 0, failed: new Map<number, number>(), firstFailure: '' };
  sweepStaleSockets(dirname(dir));
  // An image jail runs as its range's ids too (brig-exec drops to them), not as root.
  const owner = plan.identity.hostUid !== process.getuid?.() ? { uid: plan.identity.hostUid, gid: plan.identity.hostGid } : null;
  // As root running the jail as the workspace's owner: bubblewrap, as that user, must pass through brig's state directory.
  if (owner) traversable(stateDir);
  const egress = await startSandboxEgress({
    sandbox: `run-${plan.id}`,
    dir,
    owner,
    network: () => network,
    gateway,
    ledger: {
      violation: (violation) => violations.push(violation),
      spent: () => spent,
      charge: (_sandbox, delta) => {
        spent.requests += delta.requests;
        spent.inputTokens += delta.inputTokens;
        spent.outputTokens += delta.outputTokens;
      },
      transcript: (entry: TranscriptEntry) => {
        countExchange(exchanges, entry);
        if (!transcribed) mkdirSync(`${stateDir}/transcripts`, { recursive: true, mode: 0o700 });
        transcribed = true;
        appendFileSync(transcriptFile, JSON.stringify(entry) + '\n', { mode: 0o600 });
      },
    },
  });
  return {
    async close() {
      await egress.close();
      gateway?.close();
      rmSync(dir, { recursive: true, force: true });
    },
    summary() {
      const lines: string[] = [];
      if (violations.length > 0) {
        lines.push(`brig: ${violations.length} access${violations.length === 1 ? '' : 'es'} refused:`);
        for (const violation of violations.slice(0, SHOWN_VIOLATIONS)) lines.push(`  ${violation.kind} ${violation.target} — ${violation.rule}`);
        if (violations.length > SHOWN_VIOLATIONS) lines.push(`  … and ${violations.length - SHOWN_VIOLATIONS} more`);
        lines.push('  allow a destination with --allow HOST (see brig run --help)');
      }
      if (spent.requests > 0 || transcribed) {
        lines.push(`brig: LLM gateway: ${spent.requests} request${spent.requests === 1 ? '' : 's'}, ${spent.inputTokens} input and ${spent.outputTokens} output tokens; transcript ${transcriptFile}`);
        const failures = failureLine(exchanges);
        if (failures) lines.push(failures);
      }
      return lines.length ? lines.join('\n') + '\n' : '';
    },
  };
}

interface Exchanges {
  total: number;
  /** Failed exchanges by status (0: cut before any status). */
  failed: Map<number, number>;
  firstFailure: string;
}

/** A 5xx, or no answer at all, is a failure: the provider or the way to it is broken, not the request. */
function countExchange(exchanges: Exchanges, entry: TranscriptEntry): void {
  exchanges.total += 1;
  if (entry.status !== 0 && entry.status < 500 && entry.error === undefined) return;
  exchanges.failed.set(entry.status, (exchanges.failed.get(entry.status) ?? 0) + 1);
  exchanges.firstFailure ||= entry.error ?? `${entry.provider} answered HTTP ${entry.status}`;
}

/**
 * Said outright when requests failed: an agent that got 502 for every call
 * may still exit 0, and a summary of "3 requests, 0 tokens" hides why.
 */
function failureLine(exchanges: Exchanges): string | null {
  const count = [...exchanges.failed.values()].reduce((sum, n) => sum + n, 0);
  if (count === 0) return null;
  const statuses = [...exchanges.failed].map(([status, n]) => `${n}× ${status === 0 ? 'no answer' : `HTTP ${status}`}`).join(', ');
  const which = count === exchanges.total ? `every request failed (${statuses})` : `${count} of ${exchanges.total} requests failed (${statuses})`;
  return `brig: LLM gateway: ${which}; the first: ${exchanges.firstFailure}`;
}
