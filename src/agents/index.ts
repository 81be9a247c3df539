/**
 * agents/: agent profiles (seed 002's jailed agents). A profile is a policy
 * plus what it takes to find and start an agent CLI: built-in ones for Claude
 * Code, opencode, Gemini CLI, Codex and Crush; your own from
 * ~/.config/brig/agents.yaml or defineAgent(). `brig agent` runs them; the
 * daemon creates sandboxes from them.
 */
import { BrigError } from '../protocol/index.ts';
import { BUILTIN_AGENTS } from './builtin.ts';
import { loadAgentsFile } from './config.ts';
import type { AgentSpec } from './types.ts';

export { BUILTIN_AGENTS } from './builtin.ts';
export { agentsFiles, checkAgent, defineAgent, loadAgentsFile } from './config.ts';
export { locateAgent } from './locate.ts';
export { agentBinDir, prepareAgentHome } from './home.ts';
export type { LocateContext, LocatedAgent } from './locate.ts';
export { DEFAULT_AGENT_TOOLS, agentArgv, agentBasePolicy, agentPolicy, agentPolicyChanges, missingToolsMessage } from './policy.ts';
export type { AgentSpec } from './types.ts';

/** Built-in profiles, then the user's (a user's agent of the same name replaces the built-in one). */
export async function listAgents(env: NodeJS.ProcessEnv, home: string): Promise<AgentSpec[]> {
  const custom = await loadAgentsFile(env, home);
  const names = new Set(custom.map((agent) => agent.name));
  return [...BUILTIN_AGENTS.filter((agent) => !names.has(agent.name)), ...custom];
}

export function findAgent(agents: readonly AgentSpec[], name: string): AgentSpec {
  const agent = agents.find((candidate) => candidate.name === name) ?? agents.find((candidate) => candidate.aliases?.includes(name));
  if (!agent) {
    const known = agents.map((candidate) => (candidate.aliases?.length ? `${candidate.name} (${candidate.aliases.join(', ')})` : candidate.name)).join(', ');
    throw new BrigError('BRIG_AGENT_UNKNOWN', `no agent named '${name}'`, `known: ${known}; define your own in ~/.config/brig/agents.yaml (docs/agents.md)`);
  }
  return agent;
}
