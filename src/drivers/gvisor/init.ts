import { existsSync, realpathSync } from 'node:fs';
import brigSpawn from 'brig-spawn';
import { BrigError } from '../../protocol/index.ts';

/**
 * brig's two programs inside every gVisor sandbox, both built by `npm ci`
 * (native/spawn) and bound read-only by their real paths (bind sources are
 * opened without following links: an install reached through a link still
 * works).
 *
 * brig-init (init.c) is pid 1. runsc makes the container's first process
 * pid 1, where orphans are reparented (they stay zombies unless it reaps
 * them: envd, a Node program, reaps only its own children) and a signal it
 * has no handler for is ignored, SIGTERM and SIGINT included. The jail has
 * bubblewrap's init there; here the command runs as brig-init's child, every
 * other child is reaped, the usual signals are passed on, and the command's
 * end is the sandbox's (its exit code, 128 + the signal that ended it, 127
 * when it cannot be found).
 *
 * brig-statx.so (statx-compat.c) is preloaded: Debian's runsc (0.0~20221219)
 * answers statx(2) with EINVAL when the flags hold AT_NO_AUTOMOUNT, which
 * bookworm's coreutils always passes (ls, stat and cp fail: "cannot access
 * '/': Invalid argument"); it drops the flag, which means nothing inside
 * gVisor.
 */
export const INIT_INSIDE = '/run/brig/init/brig-init';
export const STATX_INSIDE = '/run/brig/statx/brig-statx.so';

/** The host's brig-init and brig-statx.so, by their real paths. */
export function insidePrograms(): { init: string; statx: string } {
  const real = (path: string, name: string): string => {
    if (!existsSync(path)) throw new BrigError('BRIG_GVISOR_SETUP', `${name} is not built (${path})`, 'run `npm run setup` (npm ci builds it with the rest of native/spawn)');
    return realpathSync(path);
  };
  return { init: real(brigSpawn.initPath, 'brig-init'), statx: real(brigSpawn.statxCompatPath, 'brig-statx.so') };
}

/** The command behind brig-init. */
export function behindInit(argv: string[]): string[] {
  return [INIT_INSIDE, '--', ...argv];
}

/** The plan's LD_PRELOAD with brig-statx.so first. */
export function withPreload(env: Record<string, string>): Record<string, string> {
  return { ...env, LD_PRELOAD: [STATX_INSIDE, env.LD_PRELOAD].filter(Boolean).join(':') };
}
