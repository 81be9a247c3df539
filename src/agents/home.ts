import { chownSync, existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { EGRESS_URL } from '../egress/index.ts';
import type { AgentSpec } from './types.ts';

/**
 * An agent's home before a run: its config directories, the seed files it
 * would otherwise ask about, written only where nothing is yet (what the
 * agent changed later is its own), and the JSON settings that must hold in
 * every project, merged into what the agent wrote. `home` is the host directory the jail
 * shows as $HOME (brig agent's kept home, a daemon sandbox's workspace);
 * `owner` the host user the jail runs as, when brig runs as root and that is
 * someone else: what is created here becomes theirs; `unattended` for a
 * daemon sandbox, where the profile's unattendedSettings apply too.
 */
export function prepareAgentHome(spec: AgentSpec, home: string, options: { cwd: string; owner: { uid: number; gid: number } | null; unattended?: boolean }): void {
  const created: string[] = [];
  const makeDir = (dir: string): void => {
    if (existsSync(dir)) return;
    makeDir(dirname(dir));
    mkdirSync(dir, { mode: 0o700 });
    created.push(dir);
  };
  makeDir(home);
  for (const path of spec.configPaths) if (path.startsWith('~/')) makeDir(`${home}/${path.slice(2)}`);
  for (const [path, content] of Object.entries(spec.seedFiles ?? {})) {
    if (!path.startsWith('~/')) continue;
    const file = `${home}/${path.slice(2)}`;
    if (existsSync(file)) continue;
    makeDir(dirname(file));
    writeFileSync(file, content.split('{cwd}').join(JSON.stringify(options.cwd).slice(1, -1)).split('{gateway}').join(EGRESS_URL), { mode: 0o600 });
    created.push(file);
  }
  const settings = Object.entries(spec.jsonSettings ?? {});
  // Nobody at a terminal: the non-interactive mode is the setting, not a flag the caller must know.
  if (options.unattended) settings.push(...Object.entries(spec.unattendedSettings ?? {}));
  for (const [path, fields] of settings) {
    if (!path.startsWith('~/')) continue;
    const file = `${home}/${path.slice(2)}`;
    const existed = existsSync(file);
    makeDir(dirname(file));
    writeFileSync(file, JSON.stringify(mergeJson(readJsonObject(file), withCwd(fields, options.cwd) as Record<string, unknown>), null, 2) + '\n', { mode: 0o600 });
    if (!existed) created.push(file);
  }
  if (options.owner) for (const path of [home, ...created]) chownSync(path, options.owner.uid, options.owner.gid);
}

/** The agent's own JSON file, or {} when it is missing or no longer an object (then brig's fields start it anew). */
function readJsonObject(file: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return isObject(value) ? value : {};
  } catch {
    return {};
  }
}

function mergeJson(base: Record<string, unknown>, fields: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(fields)) {
    const current = merged[key];
    merged[key] = isObject(value) && isObject(current) ? mergeJson(current, value) : value;
  }
  return merged;
}

function withCwd(value: unknown, cwd: string): unknown {
  if (typeof value === 'string') return value.split('{cwd}').join(cwd);
  if (Array.isArray(value)) return value.map((item) => withCwd(item, cwd));
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key.split('{cwd}').join(cwd), withCwd(item, cwd)]));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A directory holding one symlink, the CLI's name → its real file, for the
 * jail's PATH: the host's bin directory (an npm prefix, node_modules/.bin)
 * is not in the jail's view, and the agent (or a shell in a daemon sandbox)
 * calls the CLI by name. Returns the directory.
 */
export function agentBinDir(dir: string, command: string, target: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const link = `${dir}/${basename(command)}`;
  let current: string | null = null;
  try {
    current = readlinkSync(link);
  } catch {
    // Not there yet.
  }
  if (current !== target) {
    // Replaced in one step: a jail starting now sees the old link or the new one, never none.
    const fresh = `${link}.${process.pid}`;
    symlinkSync(target, fresh);
    renameSync(fresh, link);
  }
  return dir;
}
