import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import brigSpawn from 'brig-spawn';
import { BrigError } from '../../protocol/index.ts';

/**
 * envd's socket, bound by the daemon in a directory of its own (0700, the
 * daemon's user) that no jail sees: envd inherits the listening fd, so
 * nothing inside a sandbox can put another socket (or a symlink to a host
 * socket) where the gateway connects.
 */

const SOCKET_NAME = 'envd.sock';
const BACKLOG = 511;

/** Make `dir` (fresh) and bind envd's socket in it. The caller hands `fd` to the driver, which closes it. */
export function bindEnvdSocket(dir: string): { path: string; fd: number } {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  const path = `${dir}/${SOCKET_NAME}`;
  try {
    return { path, fd: brigSpawn.listenUnix(path, BACKLOG) };
  } catch (error) {
    throw new BrigError('BRIG_JAIL_SETUP', `cannot bind envd's socket ${path}: ${(error as Error).message}`, 'a unix socket path is at most 107 bytes: use a shorter --state directory');
  }
}

/**
 * What the gateway connects to must still be the socket the daemon bound:
 * its directory the daemon's own and closed to others, the socket itself
 * not a symlink. Throws BRIG_SANDBOX_NOT_FOUND otherwise.
 */
export function checkEnvdSocket(path: string): void {
  const dir = path.slice(0, path.lastIndexOf('/'));
  let sound = false;
  try {
    const parent = lstatSync(dir);
    sound = parent.isDirectory() && parent.uid === (process.getuid?.() ?? parent.uid) && (parent.mode & 0o077) === 0 && lstatSync(path).isSocket();
  } catch {
    // Gone: the sandbox is being removed.
  }
  if (!sound) throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `sandbox's envd socket ${path} is gone or not the one the daemon bound`, 'the sandbox may have been removed; create a new one');
}
