import { chmodSync, closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, realpathSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import brigSpawn from 'brig-spawn';
import { BrigError } from '../protocol/index.ts';

/**
 * The state directory is one daemon's: two daemons on one directory (the
 * same default /var/lib/brig for every root daemon) would share a store,
 * reconcile each other's sandboxes and take over each other's egress
 * sockets. The first holds an flock on `daemon.lock` (released by the
 * kernel however it dies) with its pid and port in it, so the second can
 * say who is there.
 */

const LOCK_NAME = 'daemon.lock';

export interface StateDirClaim {
  /** Write the address the daemon now listens on into the lock file, for the next daemon's error. */
  listening(url: string): void;
  /** Let the next daemon in. */
  release(): void;
}

interface Holder {
  pid: number;
  url: string | null;
}

/** Make the state directory, check sandboxes can reach it, and lock it: BRIG_STATE_LOCKED when another daemon holds it. */
export function claimStateDir(dir: string): StateDirClaim {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  if (process.getuid?.() === 0) {
    // Traversable, not listable (the manager keeps it so): only its parents are the caller's choice.
    chmodSync(dir, 0o711);
    checkTraversable(dirname(realpathSync(dir)), dir);
  }
  const file = `${dir}/${LOCK_NAME}`;
  const fd = openSync(file, 'a+', 0o600);
  let locked: boolean;
  try {
    locked = brigSpawn.lockExclusive(fd);
  } catch (error) {
    closeSync(fd);
    throw new BrigError('BRIG_STATE_DIR', `cannot lock the state directory ${dir}: ${(error as Error).message}`, 'put --state on a local filesystem that supports flock');
  }
  if (!locked) {
    closeSync(fd);
    const holder = readHolder(file);
    const who = holder ? `pid ${holder.pid}, ${holder.url ? `listening on ${holder.url}` : 'not listening yet'}` : 'a process that has not written its pid yet';
    throw new BrigError('BRIG_STATE_LOCKED', `another brig daemon uses the state directory ${dir} (${who})`, 'stop that daemon first, or give this one a state directory of its own: brig serve --state DIR');
  }
  const write = (holder: Holder): void => {
    ftruncateSync(fd, 0);
    writeSync(fd, JSON.stringify(holder) + '\n', 0);
  };
  write({ pid: process.pid, url: null });
  let released = false;
  return {
    listening: (url) => write({ pid: process.pid, url }),
    release() {
      if (released) return;
      released = true;
      closeSync(fd);
    },
  };
}

function readHolder(file: string): Holder | null {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as Partial<Holder>;
    return typeof holder.pid === 'number' ? { pid: holder.pid, url: typeof holder.url === 'string' ? holder.url : null } : null;
  } catch {
    return null;
  }
}

/**
 * As root, each sandbox's jail runs as a host uid of its own, and bubblewrap
 * (as that uid) must pass through every parent of the state directory to
 * reach the sandbox's workspace. A parent closed to others (0700) would fail
 * every create with an opaque bubblewrap message: say so at start instead.
 */
export function checkTraversable(parent: string, dir: string): void {
  for (let path = parent; ; path = dirname(path)) {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o001) === 0) {
      throw new BrigError(
        'BRIG_STATE_DIR',
        `the state directory ${dir} is under ${path} (mode ${mode.toString(8).padStart(4, '0')}), which sandboxes' users cannot pass through: every create would fail`,
        `let others traverse it (chmod o+x ${path}), or give brig serve a --state DIR whose parents all may be traversed (e.g. the default /var/lib/brig)`,
      );
    }
    if (path === '/') return;
  }
}
