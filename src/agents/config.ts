import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { BrigError } from '../protocol/index.ts';
import { readConfigFile, validatePolicyInput } from '../policy/index.ts';
import { PROVIDERS } from '../egress/index.ts';
import type { AgentSpec } from './types.ts';

/**
 * Custom agents: a YAML or JSON file mapping names to definitions, or a
 * module whose default export is that mapping (agents.mjs, in TypeScript
 * agents.ts where Node runs it), read from BRIG_AGENTS_FILE, else
 * ~/.config/brig/agents.{yaml,yml,json,mjs,js,ts}. Only the
 * user's own file: a project cannot define agents for you, since a checked-in
 * definition could widen what the jail may touch.
 *
 *   my-agent:
 *     command: my-agent
 *     configPaths: [~/.config/my-agent]
 *     providers: [anthropic]
 *     extraTools: [pandoc]
 */

export function agentsFiles(env: NodeJS.ProcessEnv, home: string): string[] {
  if (env.BRIG_AGENTS_FILE) return [env.BRIG_AGENTS_FILE];
  const dir = `${env.XDG_CONFIG_HOME || `${home}/.config`}/brig`;
  return ['agents.yaml', 'agents.yml', 'agents.json', 'agents.mjs', 'agents.js', 'agents.ts'].map((name) => `${dir}/${name}`);
}

/** A code file's default export (agents.mjs, .js; .ts where Node strips types itself): the same mapping a YAML file holds. */
async function importAgentsModule(file: string): Promise<unknown> {
  try {
    const module = (await import(pathToFileURL(file).href)) as { default?: unknown };
    return module.default;
  } catch (error) {
    const typescript = file.endsWith('.ts') ? ' This Node cannot load TypeScript itself (Node 22.18+ can): compile it to agents.mjs, or write agents.yaml.' : '';
    throw new BrigError('BRIG_AGENT_INVALID', `${file}: cannot load it (${error instanceof Error ? error.message.split('\n')[0] : String(error)}).${typescript}`, 'export default a mapping of agent names to definitions (docs/agents.md)');
  }
}

export async function loadAgentsFile(env: NodeJS.ProcessEnv, home: string): Promise<AgentSpec[]> {
  const files = agentsFiles(env, home);
  const file = env.BRIG_AGENTS_FILE ? files[0] : files.find((candidate) => existsSync(candidate));
  if (!file) return [];
  const content = /\.(m?js|ts)$/.test(file) ? await importAgentsModule(file) : await readConfigFile(file, 'agents');
  if (content === null || content === undefined) return [];
  if (typeof content !== 'object' || Array.isArray(content)) throw invalid(file, '', 'must be a mapping of agent names to definitions');
  return Object.entries(content as Record<string, unknown>).map(([name, definition]) => checkAgent(name, definition, file));
}

const NAME = /^[a-z0-9][a-z0-9-]{0,40}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A definition from a file or code, checked field by field; every problem named. */
export function checkAgent(name: string, definition: unknown, source: string): AgentSpec {
  const problems: string[] = [];
  if (!NAME.test(name)) problems.push(`name: must be lower-case letters, digits and - (at most 41), got ${JSON.stringify(name)}`);
  if (typeof definition !== 'object' || definition === null || Array.isArray(definition)) throw invalid(source, name, 'must be a mapping of fields');
  const given = definition as Record<string, unknown>;
  const strings = (field: string, check: (value: string) => boolean = () => true, phrase = 'a list of strings'): string[] | undefined => {
    const value = given[field];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0 && check(item))) {
      problems.push(`${field}: must be ${phrase}`);
      return undefined;
    }
    return value as string[];
  };
  const text = (field: string, required: boolean): string | undefined => {
    const value = given[field];
    if (value === undefined && !required) return undefined;
    if (typeof value !== 'string' || value.length === 0) problems.push(`${field}: must be a non-empty string`);
    return typeof value === 'string' ? value : undefined;
  };
  const known = ['name', 'aliases', 'description', 'command', 'npmPackage', 'configPaths', 'providers', 'allow', 'deny', 'env', 'forwardEnv', 'extraTools', 'extraReadWriteDirs', 'extraReadOnlyDirs', 'seedFiles', 'jsonSettings', 'unattendedSettings', 'promptArgs', 'args', 'base'];
  for (const field of Object.keys(given)) if (!known.includes(field)) problems.push(`${field}: unknown field (known: ${known.join(', ')})`);
  const env = given.env;
  if (env !== undefined && (typeof env !== 'object' || env === null || Array.isArray(env) || !Object.entries(env).every(([key, value]) => ENV_NAME.test(key) && typeof value === 'string'))) {
    problems.push('env: must map variable names to strings');
  }
  const path = (value: string) => (value.startsWith('/') || value.startsWith('~/')) && !value.split('/').includes('..');
  const plainObject = (value: unknown) => typeof value === 'object' && value !== null && !Array.isArray(value);
  for (const field of ['jsonSettings', 'unattendedSettings'] as const) {
    const settings = given[field];
    if (settings !== undefined && (!plainObject(settings) || !Object.entries(settings as object).every(([key, value]) => key.startsWith('~/') && !key.split('/').includes('..') && plainObject(value)))) {
      problems.push(`${field}: must map paths under the home (~/…, no ..) to objects of fields`);
    }
  }
  const seeds = given.seedFiles;
  if (seeds !== undefined && (typeof seeds !== 'object' || seeds === null || Array.isArray(seeds) || !Object.entries(seeds).every(([key, value]) => key.startsWith('~/') && !key.split('/').includes('..') && typeof value === 'string'))) {
    problems.push('seedFiles: must map paths under the home (~/…, no ..) to file contents');
  }
  const spec: AgentSpec = {
    name,
    aliases: strings('aliases', (value) => NAME.test(value), 'a list of names'),
    description: text('description', false) ?? `Custom agent ${name}.`,
    command: text('command', true) ?? '',
    npmPackage: text('npmPackage', false),
    configPaths: strings('configPaths', path, 'a list of paths starting with ~/ or / (no ..)') ?? [],
    providers: (strings('providers', (value) => (PROVIDERS as readonly string[]).includes(value), `a list of providers (${PROVIDERS.join(', ')})`) ?? []) as AgentSpec['providers'],
    allow: strings('allow'),
    deny: strings('deny'),
    env: env as Record<string, string> | undefined,
    seedFiles: seeds as Record<string, string> | undefined,
    jsonSettings: given.jsonSettings as Record<string, Record<string, unknown>> | undefined,
    unattendedSettings: given.unattendedSettings as Record<string, Record<string, unknown>> | undefined,
    forwardEnv: strings('forwardEnv', (value) => ENV_NAME.test(value), 'a list of variable names'),
    extraTools: strings('extraTools'),
    extraReadWriteDirs: strings('extraReadWriteDirs', path, 'a list of paths starting with ~/ or / (no ..)'),
    extraReadOnlyDirs: strings('extraReadOnlyDirs', path, 'a list of paths starting with ~/ or / (no ..)'),
    promptArgs: strings('promptArgs'),
    args: strings('args'),
  };
  if (given.base !== undefined) {
    try {
      spec.base = validatePolicyInput(given.base, `${source}: agent ${name}: base`);
    } catch (error) {
      problems.push(error instanceof Error ? error.message.replace(`${source}: agent ${name}: base: `, 'base: ') : String(error));
    }
  }
  if (problems.length > 0) throw invalid(source, name, problems.join('; '));
  return spec;
}

/** For agents written in TypeScript: the same checks as a file's, at the line that defines it. */
export function defineAgent(spec: AgentSpec): AgentSpec {
  const { name, ...rest } = spec;
  return checkAgent(name, rest, 'defineAgent');
}

function invalid(source: string, name: string, reason: string): BrigError {
  return new BrigError('BRIG_AGENT_INVALID', `${source}: ${name ? `agent ${name}: ` : ''}${reason}`, 'see docs/agents.md for the fields of an agent definition');
}
