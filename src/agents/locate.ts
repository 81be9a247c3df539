import { closeSync, existsSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { BrigError } from '../protocol/index.ts';
import { findExecutable, linksOnTheWay } from '../drivers/index.ts';
import type { AgentSpec } from './types.ts';

/**
 * Where an agent's CLI is on this host, and what of the host it needs to
 * run in a jail. An npm CLI is started by its real file inside its package
 * (never through a bin symlink, whose target the jail would not resolve), with
 * the package bound read-only when the jail would not see it, and node brought
 * in when it is a node script and node lives outside the system directories.
 */
export interface LocatedAgent {
  /** The file to execute, a host path the jail sees at the same place. */
  command: string;
  /** Host paths the jail must see read-only (the node_modules tree of the CLI's package) beyond what the policy shows. */
  readOnly: string[];
  /** Tools to bring in (the interpreter of a node CLI outside the system directories). */
  tools: string[];
  /** How it was found, for `brig agent ls`. */
  foundIn: 'path' | 'project' | 'global npm' | 'absolute';
}

export interface LocateContext {
  cwd: string;
  home: string;
  env: NodeJS.ProcessEnv;
  /** Directories every jail sees (the policy's filesystem.system): nothing there needs binding. */
  visible: string[];
}

export function locateAgent(spec: AgentSpec, context: LocateContext): LocatedAgent | null {
  const found = findCommand(spec, context);
  if (!found) return null;
  const real = realpathSync(found.path);
  const inProject = (path: string) => path === context.cwd || path.startsWith(`${context.cwd}/`);
  // A link in the project may have been planted by a jail (an `npm link`ed CLI leads there): it may lead
  // only within the project, never to a host file brig would then bind read-only.
  const planted = linksOnTheWay(found.path).find(inProject);
  if (planted && !inProject(real)) {
    throw new BrigError('BRIG_PATH_SYMLINK', `${spec.command}: ${found.path} leads through ${planted}, a link in the project, out of it to ${real}`, 'a jail may have planted that link: remove it, or reinstall the CLI');
  }
  const seen = (path: string) => context.visible.some((dir) => path === dir || path.startsWith(`${dir}/`));
  const packageRoot = npmPackageRoot(real);
  // The whole node_modules tree it sits in: npm hoists its dependencies (Codex's platform binary, Claude
  // Code's sharp) beside it, not inside it.
  const readOnly = [packageRoot ? outermostNodeModules(packageRoot) : real].filter((path) => !seen(path));
  const tools: string[] = [];
  if (isNodeScript(real)) {
    const node = findExecutable('node', context.env.PATH);
    if (node && !seen(realpathSync(node))) tools.push(node);
  }
  return { command: real, readOnly, tools, foundIn: found.where };
}

function findCommand(spec: AgentSpec, context: LocateContext): { path: string; where: LocatedAgent['foundIn'] } | null {
  if (isAbsolute(spec.command)) return isFile(spec.command) ? { path: spec.command, where: 'absolute' } : null;
  const project = join(context.cwd, 'node_modules', '.bin', spec.command);
  if (isFile(project)) return { path: project, where: 'project' };
  const onPath = findExecutable(spec.command, context.env.PATH);
  if (onPath) return { path: onPath, where: 'path' };
  // npm's global prefixes that are often missing from PATH: beside this node, a user prefix, the common one.
  const prefixes = [context.env.NPM_CONFIG_PREFIX, context.env.npm_config_prefix, dirname(dirname(process.execPath)), join(context.home, '.npm-global'), '/usr/local'];
  for (const prefix of prefixes) {
    if (!prefix) continue;
    const candidate = join(prefix, 'bin', spec.command);
    if (isFile(candidate)) return { path: candidate, where: 'global npm' };
  }
  return null;
}

/** The directory of the installed package holding `file`: the one right under a node_modules (or node_modules/@scope). */
function npmPackageRoot(file: string): string | null {
  for (let dir = dirname(file); dir !== '/'; dir = dirname(dir)) {
    const parent = dirname(dir);
    const underModules = basename(parent) === 'node_modules' || (basename(parent).startsWith('@') && basename(dirname(parent)) === 'node_modules');
    if (underModules && existsSync(join(dir, 'package.json'))) return dir;
  }
  return null;
}

function outermostNodeModules(packageRoot: string): string {
  let found = dirname(packageRoot);
  for (let dir = found; dir !== '/'; dir = dirname(dir)) if (basename(dir) === 'node_modules') found = dir;
  return found;
}

function isNodeScript(file: string): boolean {
  if (/\.[cm]?js$/.test(file)) return true;
  const head = Buffer.alloc(128);
  let fd: number | null = null;
  try {
    fd = openSync(file, 'r');
    const length = readSync(fd, head, 0, head.length, 0);
    return /^#!.*\bnode\b/.test(head.toString('latin1', 0, length));
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
