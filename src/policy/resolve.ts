import { posix } from 'node:path';
import { BrigError } from '../protocol/index.ts';
import { deepFreeze } from './defaults.ts';
import type { FilesystemPolicy, Policy, PolicyInput } from './types.ts';
import { POLICY_HINT, validatePolicy } from './validate.ts';

/**
 * Turning the paths a person wrote into the host paths a driver binds. Pure:
 * string work only, no filesystem access (whether a path exists is the
 * driver's question, asked once, at boot).
 *
 * A path is absolute; or ~ / ~/… (the home directory); or . ./… ../… which
 * means the config file's directory for paths from a file (see
 * anchorRelativePaths, called by load.ts) and the working directory for paths
 * from flags and code (resolvePolicy).
 */

export interface ResolveContext {
  /** Absolute directory "." means for paths not from a file: where brig was started. */
  cwd: string;
  /** Absolute home directory "~" means. */
  home: string;
}

/** The filesystem fields that hold lists of host paths. */
const PATH_LISTS = ['system', 'readOnly', 'readWrite', 'tmpfs', 'hidden'] as const;

/** Every path made absolute and normalised, duplicates removed; a new frozen, checked Policy. */
export function resolvePolicy(policy: Policy, context: ResolveContext): Policy {
  for (const key of ['cwd', 'home'] as const) {
    if (!posix.isAbsolute(context[key])) {
      throw new BrigError('BRIG_USAGE', `resolvePolicy: ${key} must be an absolute path, got ${JSON.stringify(context[key])}`, 'Pass process.cwd() and os.homedir().');
    }
  }
  const at = (path: string) => resolveHostPath(path, context);
  const { filesystem } = policy;
  const resolvedFilesystem: FilesystemPolicy = {
    ...filesystem,
    workspace: filesystem.workspace === null ? null : at(filesystem.workspace),
    home: filesystem.home === null ? null : at(filesystem.home),
    // Paths inside the jail: only normalised, never taken relative to anything on the host.
    workspaceTarget: filesystem.workspaceTarget === null ? null : posix.resolve(filesystem.workspaceTarget),
  };
  for (const list of PATH_LISTS) resolvedFilesystem[list] = unique(filesystem[list].map(at));
  refuseContradictions(policy.name, resolvedFilesystem);
  return validatePolicy(
    {
      ...policy,
      filesystem: resolvedFilesystem,
      tools: unique(policy.tools.map((tool) => (tool.startsWith('/') ? posix.resolve(tool) : tool))),
      environment: { ...policy.environment, forward: unique(policy.environment.forward) },
      syscalls: { ...policy.syscalls, extraDeny: unique(policy.syscalls.extraDeny) },
      identity: { ...policy.identity, home: policy.identity.home === null ? null : posix.resolve(policy.identity.home) },
    },
    `policy "${policy.name}"`,
  );
}

/** For paths read from a file: ".", "./x" and "../x" become absolute against dir; "~" and absolute paths wait for resolvePolicy. */
export function anchorRelativePaths(input: PolicyInput, dir: string): PolicyInput {
  const filesystem = input.filesystem;
  if (!filesystem) return input;
  const anchor = (path: string) => (path.startsWith('.') ? posix.resolve(dir, path) : path);
  const anchored: NonNullable<PolicyInput['filesystem']> = { ...filesystem };
  if (typeof filesystem.workspace === 'string') anchored.workspace = anchor(filesystem.workspace);
  if (typeof filesystem.home === 'string') anchored.home = anchor(filesystem.home);
  for (const list of PATH_LISTS) {
    const paths = filesystem[list];
    if (paths) anchored[list] = paths.map(anchor);
  }
  return deepFreeze({ ...input, filesystem: anchored });
}

function resolveHostPath(path: string, { cwd, home }: ResolveContext): string {
  if (path === '~' || path.startsWith('~/')) return posix.resolve(home, `.${path.slice(1)}`);
  // Absolute paths ignore cwd; posix.resolve also drops "." segments, ".." and trailing slashes.
  return posix.resolve(cwd, path);
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** The same path with two meanings (read-only and read-write, hidden and bound) is refused, not silently ordered. */
function refuseContradictions(name: string, filesystem: FilesystemPolicy): void {
  const firstField = new Map<string, string>();
  const problems: string[] = [];
  const note = (path: string, field: string) => {
    const earlier = firstField.get(path);
    if (earlier === undefined) firstField.set(path, field);
    else problems.push(`${path} is in both filesystem.${earlier} and filesystem.${field}`);
  };
  if (filesystem.workspace !== null) note(filesystem.workspace, 'workspace');
  if (filesystem.home !== null) note(filesystem.home, 'home');
  for (const list of ['readOnly', 'readWrite', 'tmpfs', 'hidden'] as const) {
    for (const path of filesystem[list]) note(path, list);
  }
  if (problems.length > 0) {
    throw new BrigError('BRIG_POLICY_INVALID', `policy "${name}": ${problems.join('; ')}`, `Keep each path in one list. ${POLICY_HINT}`);
  }
}
