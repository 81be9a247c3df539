import { DEFAULT_POLICY } from './defaults.ts';
import { applyPolicyInput } from './merge.ts';
import type { LlmBudget, LlmProvider, NetworkMode, OutOfMemoryAction, Policy, PolicyInput } from './types.ts';
import { validatePolicyInput } from './validate.ts';

/**
 * Policies from small functions, in the spirit of jail.nix's combinators:
 *
 *   buildPolicy(named('node', 'npm with its cache and the registry'), readWrite('~/.npm'), hostNetwork(), memory(4096))
 *
 * Each combinator returns a PolicyChange, a function from a policy to a new,
 * frozen policy. Arguments are checked by the validator when the combinator is
 * called, so memory(-1) throws the same BRIG_POLICY_INVALID as a file saying
 * `memoryMiB: -1`, at the line that wrote it. List combinators (readOnly, tools,
 * forwardEnv, …) add to the list; the others replace the value. Relative paths
 * are relative to the working directory (resolvePolicy).
 */
export type PolicyChange = (policy: Policy) => Policy;

/** Changes applied left to right. */
export function compose(...changes: PolicyChange[]): PolicyChange {
  return (policy) => changes.reduce((current, change) => change(current), policy);
}

/** DEFAULT_POLICY with the changes applied, left to right. */
export function buildPolicy(...changes: PolicyChange[]): Policy {
  return compose(...changes)(DEFAULT_POLICY);
}

export function named(name: string, description: string): PolicyChange {
  return replace(call('named', [name, description]), { name, description });
}

/** The project directory (read-write, the working directory); null for none. */
export function workspace(path: string | null): PolicyChange {
  return replace(call('workspace', [path]), { filesystem: { workspace: path } });
}

/** A host directory kept as the jail's home between runs (an agent's config and state); null: a fresh tmpfs. */
export function keptHome(dir: string | null): PolicyChange {
  return replace(call('keptHome', [dir]), { filesystem: { home: dir } });
}

export function readOnly(...paths: string[]): PolicyChange {
  return add(call('readOnly', paths), paths, (policy) => policy.filesystem.readOnly, (list) => ({ filesystem: { readOnly: list } }));
}

export function readWrite(...paths: string[]): PolicyChange {
  return add(call('readWrite', paths), paths, (policy) => policy.filesystem.readWrite, (list) => ({ filesystem: { readWrite: list } }));
}

export function tmpfs(...paths: string[]): PolicyChange {
  return add(call('tmpfs', paths), paths, (policy) => policy.filesystem.tmpfs, (list) => ({ filesystem: { tmpfs: list } }));
}

export function hide(...paths: string[]): PolicyChange {
  return add(call('hide', paths), paths, (policy) => policy.filesystem.hidden, (list) => ({ filesystem: { hidden: list } }));
}

export function tmpfsSize(mebibytes: number): PolicyChange {
  return replace(call('tmpfsSize', [mebibytes]), { filesystem: { tmpfsSizeMiB: mebibytes } });
}

/** Host commands by name or absolute path. */
export function tools(...names: string[]): PolicyChange {
  return add(call('tools', names), names, (policy) => policy.tools, (list) => ({ tools: list }));
}

export function forwardEnv(...names: string[]): PolicyChange {
  return add(call('forwardEnv', names), names, (policy) => policy.environment.forward, (list) => ({ environment: { forward: list } }));
}

export function setEnv(name: string, value: string): PolicyChange {
  return replace(call('setEnv', [name, value]), { environment: { set: { [name]: value } } });
}

/**
 * An image's ENV (KEY=value entries, as its config holds them) under the
 * variables the policy sets already, which win (as `docker run -e` does).
 */
export function imageEnvironment(entries: string[]): PolicyChange {
  const fromImage: Record<string, string> = {};
  for (const entry of entries) {
    const at = entry.indexOf('=');
    if (at > 0) fromImage[entry.slice(0, at)] = entry.slice(at + 1);
  }
  validatePolicyInput({ environment: { set: fromImage } }, call('imageEnvironment', [entries.length]));
  return (policy) => ({ ...policy, environment: { ...policy.environment, set: { ...fromImage, ...policy.environment.set } } });
}

export function network(mode: NetworkMode): PolicyChange {
  return replace(call('network', [mode]), { network: { mode } });
}

/**
 * Destinations the proxy reaches. Asking for one is asking for the proxy, so
 * mode none becomes allowlist; host mode stays (and the policy check refuses
 * rules there, since host traffic is unfiltered).
 */
export function allowHosts(...destinations: string[]): PolicyChange {
  return withAllowlist(add(call('allowHosts', destinations), destinations, (policy) => policy.network.allow, (list) => ({ network: { allow: list } })));
}

export function denyHosts(...destinations: string[]): PolicyChange {
  return withAllowlist(add(call('denyHosts', destinations), destinations, (policy) => policy.network.deny, (list) => ({ network: { deny: list } })));
}

/** LLM providers reachable through the gateway (their keys stay with brig); implies allowlist mode as allowHosts does. */
export function llm(...providers: LlmProvider[]): PolicyChange {
  return withAllowlist(add(call('llm', providers), providers, (policy) => policy.network.llm, (list) => ({ network: { llm: list as LlmProvider[] } })));
}

/** Requests and tokens the sandbox may spend through the gateway; 0 for no limit. */
export function llmBudget(budget: Partial<LlmBudget>): PolicyChange {
  return replace(call('llmBudget', [JSON.stringify(budget)]), { network: { budget } });
}

function withAllowlist(change: PolicyChange): PolicyChange {
  return (policy) => change(policy.network.mode === 'none' ? applyPolicyInput(policy, { network: { mode: 'allowlist' } }, 'allowlist') : policy);
}

export function noNetwork(): PolicyChange {
  return network('none');
}

export function hostNetwork(): PolicyChange {
  return network('host');
}

/** uid and gid inside the jail; null keeps the caller's. */
export function runAs(uid: number | null, gid: number | null): PolicyChange {
  return replace(call('runAs', [uid, gid]), { identity: { uid, gid } });
}

/** Where the workspace appears inside the jail; null for its own host path. */
export function workspaceAt(target: string | null): PolicyChange {
  return replace(call('workspaceAt', [target]), { filesystem: { workspaceTarget: target } });
}

/** The user's name and home inside the jail; null keeps the host's name, the caller's home path. */
export function user(name: string | null, home: string | null): PolicyChange {
  return replace(call('user', [name, home]), { identity: { user: name, home } });
}

export function hostname(name: string): PolicyChange {
  return replace(call('hostname', [name]), { identity: { hostname: name } });
}

export function memory(mebibytes: number): PolicyChange {
  return replace(call('memory', [mebibytes]), { resources: { memoryMiB: mebibytes } });
}

/** At the memory limit: kill the largest process (kill-process, the default) or the whole jail (kill-sandbox). */
export function onOutOfMemory(action: OutOfMemoryAction): PolicyChange {
  return replace(call('onOutOfMemory', [action]), { resources: { onOutOfMemory: action } });
}

export function cpus(count: number): PolicyChange {
  return replace(call('cpus', [count]), { resources: { cpus: count } });
}

export function pids(count: number): PolicyChange {
  return replace(call('pids', [count]), { resources: { pids: count } });
}

export function openFiles(soft: number, hard: number): PolicyChange {
  return replace(call('openFiles', [soft, hard]), { resources: { openFiles: { soft, hard } } });
}

export function processes(soft: number, hard: number): PolicyChange {
  return replace(call('processes', [soft, hard]), { resources: { processes: { soft, hard } } });
}

export function maxFileSize(mebibytes: number): PolicyChange {
  return replace(call('maxFileSize', [mebibytes]), { resources: { maxFileSizeMiB: mebibytes } });
}

export function denySyscalls(...names: string[]): PolicyChange {
  return add(call('denySyscalls', names), names, (policy) => policy.syscalls.extraDeny, (list) => ({ syscalls: { extraDeny: list } }));
}

/** Log instead of deny: for tuning a policy, never for running untrusted code. */
export function logSyscallsOnly(): PolicyChange {
  return replace(call('logSyscallsOnly', []), { syscalls: { logOnly: true } });
}

/** Wall-clock limit in milliseconds; 0 for none. */
/** The isolation tier that runs the sandbox (brig tiers lists them); checked against the registry when it runs. */
export function onTier(name: string): PolicyChange {
  return replace(call('onTier', [name]), { tier: name });
}

export function timeout(ms: number): PolicyChange {
  return replace(call('timeout', [ms]), { timeouts: { runMs: ms } });
}

/** A change that merges a fixed input, checked now. */
function replace(source: string, input: PolicyInput): PolicyChange {
  const checked = validatePolicyInput(input, source);
  return (policy) => applyPolicyInput(policy, checked, source);
}

/** A change that appends to a list (skipping values already there); the values are checked now. */
function add(source: string, values: string[], current: (policy: Policy) => string[], asInput: (list: string[]) => PolicyInput): PolicyChange {
  validatePolicyInput(asInput(values), source);
  return (policy) => applyPolicyInput(policy, asInput([...new Set([...current(policy), ...values])]), source);
}

/** How the call reads in an error message: memory(-1), readOnly("/a", "src"). */
function call(name: string, args: unknown[]): string {
  return `${name}(${args.map((arg) => (typeof arg === 'string' ? JSON.stringify(arg) : String(arg))).join(', ')})`;
}
