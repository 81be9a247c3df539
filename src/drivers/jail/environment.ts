import { isAbsolute } from 'node:path';
import type { EnvironmentPolicy } from '../../policy/index.ts';
import type { JailIdentity } from './identity.ts';

const FALLBACK_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';

/**
 * The jail's whole environment: built up from nothing, never filtered down
 * from the host's. Forwarded names first, then the identity's own variables,
 * (a forwarded PATH cut to what the jail sees), then the policy's explicit values (they win), then the tools' directories
 * put in front of PATH.
 */
export function jailEnvironment(
  policy: EnvironmentPolicy,
  hostEnv: NodeJS.ProcessEnv,
  identity: JailIdentity,
  extra: { tmpdir: string | null; toolDirs: string[]; visible: (dir: string) => boolean },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of policy.forward) {
    const value = hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  // A forwarded PATH keeps only directories the jail sees: the rest would only describe the host's layout.
  if (env.PATH !== undefined) env.PATH = env.PATH.split(':').filter((dir) => isAbsolute(dir) && extra.visible(dir)).join(':') || FALLBACK_PATH;
  env.HOME = identity.home;
  env.USER = identity.user;
  env.LOGNAME = identity.user;
  env.SHELL = identity.shell;
  if (extra.tmpdir) env.TMPDIR = extra.tmpdir;
  Object.assign(env, policy.set);
  // Tools brought in stay reachable whatever PATH the policy set.
  const path = env.PATH ?? FALLBACK_PATH;
  const missing = extra.toolDirs.filter((dir) => !path.split(':').includes(dir));
  env.PATH = [...missing, path].join(':');
  return env;
}
