import { isAbsolute } from 'node:path';
import type { EnvironmentPolicy } from '../../policy/index.ts';
import type { SandboxIdentity } from './types.ts';

const FALLBACK_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';

/**
 * The jail's whole environment: built up from nothing, never filtered down
 * from the host's. Forwarded names first, then the identity's own variables,
 * then the policy's explicit values (they win); PATH is cut to the
 * directories the jail has, and the tools' directories are put in front.
 */
export function jailEnvironment(
  policy: EnvironmentPolicy,
  hostEnv: NodeJS.ProcessEnv,
  identity: SandboxIdentity,
  extra: {
    tmpdir: string | null;
    toolDirs: string[];
    /** A host directory the jail sees at the same path. */
    sees: (dir: string) => boolean;
    /** A directory that can exist inside: one it sees, or one of its own writable places (its home, tmpfs). */
    has: (dir: string) => boolean;
  },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of policy.forward) {
    const value = hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  // The host's PATH names the host's layout: only what the jail sees of it is forwarded.
  const cut = (path: string, keep: (dir: string) => boolean) => path.split(':').filter((dir) => isAbsolute(dir) && keep(dir)).join(':');
  if (env.PATH !== undefined) env.PATH = cut(env.PATH, extra.sees);
  env.HOME = identity.home;
  env.USER = identity.user;
  env.LOGNAME = identity.user;
  env.SHELL = identity.shell;
  if (extra.tmpdir) env.TMPDIR = extra.tmpdir;
  Object.assign(env, policy.set);
  // A PATH the policy sets (an agent profile builds one from the host's) keeps what can exist inside.
  // Tools stay reachable whatever it says.
  const path = cut(env.PATH ?? '', extra.has) || FALLBACK_PATH;
  const missing = extra.toolDirs.filter((dir) => !path.split(':').includes(dir));
  env.PATH = [...missing, path].join(':');
  return env;
}
