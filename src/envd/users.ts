import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { lchown, mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { ConnectError } from '../protocol/index.ts';

/**
 * Who a call runs as. envd not running as root (a host-view sandbox) has no
 * capability to become anyone else, so it serves the users that name it:
 * E2B's default `user`, the identity's own name, and `root` when it is uid 0.
 * envd running as root (an image sandbox, where root is the sandbox's own)
 * serves every user of the sandbox's /etc/passwd, `user` by default when it
 * exists, as E2B's envd does. Asking for anyone else is refused, never
 * quietly served as someone else.
 */
export interface User {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** E2B's default user name: code written for E2B expects it. */
export const DEFAULT_USER = 'user';

export function envdIdentity(): User {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  let name = uid === 0 ? 'root' : DEFAULT_USER;
  let home = '/';
  try {
    const info = userInfo();
    name = info.username;
    home = info.homedir;
  } catch {
    // A root filesystem with no passwd entry for this uid (a bare or foreign root): keep the defaults.
  }
  return { name, uid, gid, home: process.env.HOME || home };
}

export function resolveUser(identity: User, requested: string | null): User {
  if (identity.uid === 0) {
    const name = requested === null || requested === '' ? DEFAULT_USER : requested;
    if (name === 'root' || name === identity.name) return identity;
    const found = passwdUser(name);
    if (found) return found;
    // No `user` in this root filesystem: the default is root itself.
    if (name === DEFAULT_USER) return identity;
    throw new ConnectError('permission_denied', `there is no user '${requested}' in this sandbox's /etc/passwd; call without a user, as root, or as one it has`);
  }
  if (requested === null || requested === '' || requested === DEFAULT_USER || requested === identity.name || (requested === 'root' && identity.uid === 0)) {
    return identity;
  }
  throw new ConnectError(
    'permission_denied',
    `this sandbox runs as ${identity.name} (uid ${identity.uid}) and cannot act as '${requested}'; call without a user, or as '${DEFAULT_USER}'`,
  );
}

/** What a file made for `user` must be chowned to: envd is root (an image sandbox) and the user is not. */
export function ownerFor(user: User): { uid: number; gid: number } | null {
  return process.getuid?.() === 0 && user.uid !== 0 ? { uid: user.uid, gid: user.gid } : null;
}

/** mkdir -p, each directory it made given to owner (root's otherwise, when envd is root). */
export async function makeDirs(path: string, owner: { uid: number; gid: number } | null): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (!owner || first === undefined) return;
  for (let dir = path; dir.length >= first.length; dir = dirname(dir)) {
    await lchown(dir, owner.uid, owner.gid);
    if (dir === first) break;
  }
}

/** A user of the sandbox's own /etc/passwd, by name. */
function passwdUser(name: string): User | null {
  let text: string;
  try {
    text = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const [entry, , uid, gid, , home] = line.split(':');
    if (entry === name && /^\d+$/.test(uid ?? '') && /^\d+$/.test(gid ?? '')) return { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
  }
  return null;
}

/** The user an RPC names in `Authorization: Basic base64("<user>:")`, or null. */
export function userFromAuthorization(request: IncomingMessage): string | null {
  const header = request.headers.authorization;
  if (!header) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/.exec(header.trim());
  if (!match) throw new ConnectError('invalid_argument', 'Authorization must be Basic base64("<user>:")');
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString();
  return decoded.split(':')[0] ?? null;
}

/** A path as the user means it: absolute as given, relative to their home, `~` expanded. */
export function userPath(user: User, path: unknown, field = 'path'): string {
  if (typeof path !== 'string') throw new ConnectError('invalid_argument', `${field} must be a string`);
  if (path.includes('\0')) throw new ConnectError('invalid_argument', `${field} contains a NUL byte`);
  if (path === '' || path === '~') return user.home;
  if (path.startsWith('~/')) return resolve(user.home, path.slice(2));
  return isAbsolute(path) ? resolve(path) : resolve(user.home, path);
}

/** Names for uids and gids, from the sandbox's own /etc/passwd and /etc/group. */
export function idNames(file: '/etc/passwd' | '/etc/group'): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id && /^\d+$/.test(id) && !names.has(Number(id))) names.set(Number(id), name);
    }
  } catch {
    // No database: ids are shown as numbers.
  }
  return names;
}
