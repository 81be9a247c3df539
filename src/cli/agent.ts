import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { homedir } from 'node:os';
import { BrigError, defaultStateDir, llmKeyFile, traversable } from '../protocol/index.ts';
import { loadGatewayConfig, PROVIDER_SPECS } from '../egress/index.ts';
import {
  agentArgv,
  agentBinDir,
  agentBasePolicy,
  agentPolicyChanges,
  findAgent,
  listAgents,
  locateAgent,
  missingToolsMessage,
  prepareAgentHome,
  type AgentSpec,
  type LocatedAgent,
} from '../agents/index.ts';
import { applyPolicyInput, compose, keptHome, loadPolicyFile, resolvePolicy, type LlmProvider, type Policy } from '../policy/index.ts';
import { parseArgs, type FlagSpec } from './args.ts';
import { flagChanges, POLICY_FLAGS, runPolicy, type RunContext } from './run.ts';

export const AGENT_HELP = `Usage: brig agent NAME [flags] [-p PROMPT] [-- agent args…]
       brig agent ls [--json]
       brig agent show NAME [--json]

Run an agent CLI jailed for the current directory: the project read-write,
system directories read-only, a private home of its own kept under brig's
state directory (never your real home), the network allowlisted to its model
provider through brig's LLM gateway, which holds the key: the jail only ever
sees a placeholder. Without -p, the agent's own full-screen interface.

Built in: claude-code (claude), opencode, gemini-cli (gemini), codex, crush.
Your own: ~/.config/brig/agents.yaml (docs/agents.md).

  -p, --prompt TEXT   run once, non-interactively, with this prompt
  ls                  the agents brig knows, and where each CLI was found
  show NAME           the policy NAME runs under, as a policy file to copy and edit

The flags of brig run apply on top of the profile (--allow, --rw, --memory,
--max-tokens, …; see brig run --help), as do --dry-run and --json.
Keys: ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY in your environment, or
NAME=value lines in ${'${state}'}/llm-keys (mode 0600).`;

const FLAGS: Record<string, FlagSpec> = {
  ...POLICY_FLAGS,
  prompt: { value: true, short: 'p' },
  'dry-run': { value: false },
  json: { value: false },
  help: { value: false, short: 'h' },
};

export async function agentCommand(argv: string[], context: RunContext): Promise<number> {
  const [first = '', ...after] = nameFirst(argv);
  if (first === '' || first === '--help' || first === '-h') {
    process.stdout.write(AGENT_HELP.replace('${state}', defaultStateDir()) + '\n');
    return first === '' ? 2 : 0;
  }
  const home = process.env.HOME || homedir();
  const cwd = process.cwd();
  const agents = await listAgents(process.env, home);
  if (first === 'ls') return listCommand(agents, after, cwd, home);
  if (first === 'show') return await showCommand(agents, after, cwd, home);

  const { flags, rest } = parseArgs(after, FLAGS, `brig agent ${first}`);
  if (flags.has('help')) {
    process.stdout.write(AGENT_HELP.replace('${state}', defaultStateDir()) + '\n');
    return 0;
  }
  const spec = findAgent(agents, first);
  const located = mustLocate(spec, cwd, home);
  let policy = profilePolicy(spec, located);
  const file = flags.get('policy')?.[0];
  if (file) policy = applyPolicyInput(policy, await loadPolicyFile(file), file);
  policy = resolvePolicy(compose(...flagChanges(flags))(policy), { cwd, home });
  const agentHome = agentHomeDir(spec, policy.filesystem.workspace);
  // agentHome is absolute: the policy stays resolved.
  policy = keptHome(agentHome)(policy);
  const dryRun = flags.has('dry-run');
  if (!dryRun) {
    const missing = missingToolsMessage(process.env.PATH);
    if (missing) process.stderr.write(missing + '\n');
    const keyless = keylessMessage(policy.network.llm);
    if (keyless) process.stderr.write(keyless + '\n');
  }
  const prompt = flags.get('prompt')?.[0] ?? null;
  return runPolicy(policy, agentArgv(spec, located.command, prompt, rest), {
    ...context,
    cwd,
    home,
    dryRun,
    json: flags.has('json'),
    // A test run that blows the memory limit loses the test run, not the agent's conversation.
    protectMain: true,
    // The private home has the profile's config directories and seed files before the jail binds it, owned by whoever the jail runs as.
    beforeStart: (plan) => {
      const owner = plan.identity.dropPrivileges ? { uid: plan.identity.hostUid, gid: plan.identity.hostGid } : null;
      // As root running the jail as the workspace's owner: bubblewrap, as that user, must pass through to the kept home.
      if (owner) for (let dir = dirname(agentHome); dir.length >= defaultStateDir().length; dir = dirname(dir)) traversable(dir);
      prepareAgentHome(spec, agentHome, { cwd, owner });
    },
  });
}

/**
 * `brig agent -p "fix it" claude` as well as `brig agent claude -p "fix it"`:
 * flags before the agent's name are moved after it (their order kept), so
 * both spellings parse the same. Help and an empty line are left as they are.
 */
function nameFirst(argv: string[]): string[] {
  const [first = ''] = argv;
  if (!first.startsWith('-') || first === '--help' || first === '-h') return argv;
  const { rest } = parseArgs(argv, FLAGS, 'brig agent');
  const consumed = argv.length - rest.length;
  const [name] = rest;
  if (name === undefined || argv[consumed - 1] === '--') {
    throw new BrigError('BRIG_USAGE', 'brig agent needs the agent\'s name', 'for example `brig agent claude -p "explain this repo"` (brig agent ls lists them)');
  }
  return [name, ...argv.slice(0, consumed), ...rest.slice(1)];
}

/** Providers the agent may use but brig has no key for: the gateway would refuse its every request, so say so now. */
function keylessMessage(providers: readonly LlmProvider[]): string | null {
  if (providers.length === 0) return null;
  const { keys } = loadGatewayConfig(process.env, llmKeyFile(defaultStateDir()));
  if (providers.some((provider) => keys[provider] !== undefined)) return null;
  const names = providers.map((provider) => PROVIDER_SPECS[provider].keyVariables[0]).join(' or ');
  return `brig: no key for ${providers.join(', ')}: set ${names} in your environment, or put it in ${llmKeyFile(defaultStateDir())} (NAME=value, mode 0600); the agent only ever sees a placeholder`;
}

/**
 * Where an agent's private home lives: one per agent, kept between runs. As
 * root, the jail runs as the workspace's owner (docs/jail.md), and each user
 * gets a home of their own: one user's agent state never becomes another's.
 */
function agentHomeDir(spec: AgentSpec, workspace: string | null): string {
  const self = process.getuid?.() ?? 0;
  const jailUser = self === 0 && workspace !== null ? statSync(workspace).uid : self;
  const agentHome = `${defaultStateDir()}/agents/${spec.name}/${jailUser === self ? 'home' : `home-${jailUser}`}`;
  // The plan checks the kept home exists; a dry run must not fail for a home the first real run creates.
  mkdirSync(dirname(agentHome), { recursive: true, mode: 0o711 });
  mkdirSync(agentHome, { recursive: true, mode: 0o700 });
  return agentHome;
}

function profilePolicy(spec: AgentSpec, located: LocatedAgent | null): Policy {
  const base = agentBasePolicy(spec);
  const binDir = located ? agentBinDir(`${defaultStateDir()}/agents/${spec.name}/bin`, spec.command, located.command) : null;
  return compose(...agentPolicyChanges(spec, located, process.env.PATH, base.filesystem.system, binDir))(base);
}

function mustLocate(spec: AgentSpec, cwd: string, home: string): LocatedAgent {
  const located = locateAgent(spec, { cwd, home, env: process.env, visible: agentBasePolicy(spec).filesystem.system });
  if (located) return located;
  const install = spec.npmPackage ? `install it: npm install -g ${spec.npmPackage} (or into the project: npm install ${spec.npmPackage})` : 'install it, or give its absolute path as command in your agent definition';
  throw new BrigError('BRIG_AGENT_NOT_INSTALLED', `${spec.name}: its CLI '${spec.command}' is not on PATH, in ./node_modules/.bin or in a global npm install`, install);
}

function listCommand(agents: AgentSpec[], argv: string[], cwd: string, home: string): number {
  const { flags, rest } = parseArgs(argv, { json: { value: false }, help: { value: false, short: 'h' } }, 'brig agent ls');
  if (rest.length) throw new BrigError('BRIG_USAGE', `brig agent ls takes no arguments, got ${rest[0]}`, 'run brig agent ls');
  const rows = agents.map((spec) => {
    const located = locateAgent(spec, { cwd, home, env: process.env, visible: agentBasePolicy(spec).filesystem.system });
    return { name: spec.name, aliases: spec.aliases ?? [], command: spec.command, providers: spec.providers, found: located?.command ?? null, foundIn: located?.foundIn ?? null, npmPackage: spec.npmPackage ?? null, description: spec.description };
  });
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  const header = ['NAME', 'PROVIDERS', 'CLI'];
  const cells = rows.map((row) => [row.name + (row.aliases.length ? ` (${row.aliases.join(', ')})` : ''), row.providers.join(',') || '-', row.found ? `${row.found} (${row.foundIn})` : `not installed${row.npmPackage ? `: npm install -g ${row.npmPackage}` : ''}`]);
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((row) => (row[column] ?? '').length)));
  for (const line of [header, ...cells]) process.stdout.write(line.map((cell, column) => (column === line.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('   ') + '\n');
  return 0;
}

async function showCommand(agents: AgentSpec[], argv: string[], cwd: string, home: string): Promise<number> {
  // The name may come before or after --json.
  const json = argv.includes('--json');
  const { rest } = parseArgs(argv.filter((word) => word !== '--json'), { help: { value: false, short: 'h' } }, 'brig agent show');
  const [name, ...extra] = rest;
  const { stringify } = await import('yaml');
  if (!name || extra.length) throw new BrigError('BRIG_USAGE', 'brig agent show takes one agent name', 'e.g. brig agent show claude-code');
  const spec = findAgent(agents, name);
  const located = locateAgent(spec, { cwd, home, env: process.env, visible: agentBasePolicy(spec).filesystem.system });
  const policy = resolvePolicy(keptHome(agentHomeDir(spec, cwd))(profilePolicy(spec, located)), { cwd, home });
  if (json) {
    process.stdout.write(JSON.stringify({ agent: spec, cli: located, policy }, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(
    `# brig agent ${spec.name}: ${spec.description}\n` +
      `# CLI: ${located ? located.command : `not installed${spec.npmPackage ? ` (npm install -g ${spec.npmPackage})` : ''}`}\n` +
      `# Non-interactive: brig agent ${spec.name} -p "…" runs ${[spec.command, ...(spec.args ?? []), ...(spec.promptArgs ?? ['{prompt}'])].join(' ')}\n` +
      `# What follows is a policy file: save it as agent.yaml, edit it, and run with brig run --policy agent.yaml -- CMD.\n` +
      stringify(policy),
  );
  return 0;
}
