import {
  DEFAULT_POLICY,
  allowHosts,
  applyPolicyInput,
  denyHosts,
  compose,
  forwardEnv,
  llm,
  named,
  readOnly,
  readWrite,
  setEnv,
  tools,
  type Policy,
  type PolicyChange,
} from '../policy/index.ts';
import { findExecutable } from '../drivers/index.ts';
import type { LocatedAgent } from './locate.ts';
import type { AgentSpec } from './types.ts';

/**
 * A profile as a policy: brig's default (or the profile's base), the CLI and
 * what it needs read-only, the default agent tools, the network allowlisted
 * to its providers through the gateway, its switches set. Where its home
 * comes from is the caller's choice: `brig agent` keeps one per agent under
 * brig's state directory; a daemon sandbox's home is its workspace.
 */

/** Seed 002's common set: what an agent expects to find in any shell it opens. */
export const DEFAULT_AGENT_TOOLS = ['bash', 'curl', 'wget', 'jq', 'git', 'rg', 'grep', 'gawk', 'ps', 'find', 'gzip', 'unzip', 'tar', 'diff'] as const;

/** The Debian/Ubuntu packages that carry DEFAULT_AGENT_TOOLS, for the hint when some are missing. */
const TOOL_PACKAGES: Record<string, string> = { rg: 'ripgrep', ps: 'procps', find: 'findutils', diff: 'diffutils' };

/**
 * The profile's changes to a base policy. `binDir` (agentBinDir) puts the CLI
 * on the jail's PATH under its own name.
 */
export function agentPolicyChanges(spec: AgentSpec, located: LocatedAgent | null, hostPath: string | undefined, visible: string[], binDir: string | null = null): PolicyChange[] {
  const seen = (path: string) => visible.some((dir) => path === dir || path.startsWith(`${dir}/`));
  // Default tools the jail would not see already (a jq under /opt…) are brought in as tools.
  const outside = DEFAULT_AGENT_TOOLS.map((name) => findExecutable(name, hostPath)).filter((path): path is string => path !== null && !seen(path));
  const changes: PolicyChange[] = [named(`agent-${spec.name}`, spec.description)];
  const toolList = [...outside, ...(spec.extraTools ?? []), ...(located?.tools ?? [])];
  if (toolList.length) changes.push(tools(...toolList));
  const readOnlyList = [...(located?.readOnly ?? []), ...(binDir ? [binDir] : []), ...(spec.extraReadOnlyDirs ?? [])];
  if (readOnlyList.length) changes.push(readOnly(...readOnlyList));
  if (spec.extraReadWriteDirs?.length) changes.push(readWrite(...spec.extraReadWriteDirs));
  if (spec.providers.length) changes.push(llm(...spec.providers));
  if (spec.allow?.length) changes.push(allowHosts(...spec.allow));
  if (spec.deny?.length) changes.push(denyHosts(...spec.deny));
  if (spec.forwardEnv?.length) changes.push(forwardEnv(...spec.forwardEnv));
  for (const [name, value] of Object.entries(spec.env ?? {})) changes.push(setEnv(name, value));
  if (binDir) changes.push(setEnv('PATH', `${binDir}:${hostPath || '/usr/local/bin:/usr/bin:/bin'}`));
  return changes;
}

/** The profile's starting point: its base policy over brig's default, or the default. */
export function agentBasePolicy(spec: AgentSpec): Policy {
  return spec.base ? applyPolicyInput(DEFAULT_POLICY, spec.base, `agent ${spec.name}: base`) : DEFAULT_POLICY;
}

export function agentPolicy(spec: AgentSpec, located: LocatedAgent | null, hostPath: string | undefined): Policy {
  const base = agentBasePolicy(spec);
  return compose(...agentPolicyChanges(spec, located, hostPath, base.filesystem.system))(base);
}

/** Default tools the host lacks, and how to install them; null when none is missing. */
export function missingToolsMessage(hostPath: string | undefined): string | null {
  const missing = DEFAULT_AGENT_TOOLS.filter((name) => findExecutable(name, hostPath) === null);
  if (missing.length === 0) return null;
  const packages = [...new Set(missing.map((name) => TOOL_PACKAGES[name] ?? name))];
  return `brig: the agent's usual tools missing on this host (not in the jail either): ${missing.join(', ')}; install them with: sudo apt-get install ${packages.join(' ')}`;
}

/** The CLI's argv: the profile's fixed args, the prompt's (when given), then the user's. */
export function agentArgv(spec: AgentSpec, command: string, prompt: string | null, userArgs: string[]): string[] {
  const promptArgs = prompt === null ? [] : (spec.promptArgs ?? ['{prompt}']).map((arg) => arg.split('{prompt}').join(prompt));
  return [command, ...(spec.args ?? []), ...promptArgs, ...userArgs];
}
