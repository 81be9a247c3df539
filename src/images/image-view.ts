/**
 * ImageView: reads an image's merged filesystem straight from its layer
 * directories, top layer first, as overlayfs would show it, without mounting
 * anything. The builder needs it to answer small questions: does WORKDIR's
 * directory exist, what mode and owner do a COPY's parent directories have,
 * who is USER in /etc/passwd. Symlinks in the image are resolved inside the
 * image (an absolute target starts at the image's root), never on the host.
 */
import type { Stats } from 'node:fs';
import { promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { BrigError } from '../protocol/index.ts';

export interface ViewLayer {
  dir: string;
  /** Paths this layer deletes from lower ones ("a/b"; "a/" for an opaque directory). */
  whiteouts: string[];
}

export interface Found {
  stats: Stats;
  /** The host path of the entry, in the layer that shows it. */
  host: string;
}

const MAX_LINKS = 40;

export class ImageView {
  /** Top layer first. */
  private readonly layers: ViewLayer[];

  constructor(layers: ViewLayer[]) {
    this.layers = [...layers].reverse();
  }

  /** The entry at an in-image path, symlinks not followed; null when no layer shows one. */
  async lstat(path: string): Promise<Found | null> {
    const rel = posix.normalize(path).replace(/^\/+/, '');
    if (rel === '' || rel === '.') return null;
    for (const layer of this.layers) {
      const host = join(layer.dir, rel);
      const stats = await fs.lstat(host).catch(() => null);
      if (stats !== null) {
        // an overlay whiteout: a character device 0/0
        if (stats.isCharacterDevice() && stats.rdev === 0) return null;
        return { stats, host };
      }
      if (hidden(layer.whiteouts, rel)) return null;
    }
    return null;
  }

  /** The path with every symlink in it resolved inside the image (the last one too when `followLast`). */
  async resolve(path: string, followLast = true): Promise<string> {
    let pending = posix.normalize(`/${path}`).split('/').filter((part) => part !== '');
    let at = '/';
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.shift() as string;
      if (part === '..') {
        at = posix.dirname(at);
        continue;
      }
      const next = posix.join(at, part);
      const found = pending.length === 0 && !followLast ? null : await this.lstat(next);
      if (found === null || !found.stats.isSymbolicLink()) {
        at = next;
        continue;
      }
      if (++hops > MAX_LINKS) throw new BrigError('BRIG_BUILD_FAILED', `too many symlinks resolving ${path} in the image`, 'the image has a symlink loop on that path');
      const target = await fs.readlink(found.host);
      pending = [...target.split('/').filter((one) => one !== '' && one !== '.'), ...pending];
      if (target.startsWith('/')) at = '/';
    }
    return at;
  }

  /** A regular file's contents (symlinks resolved in the image), or null. */
  async readFile(path: string): Promise<string | null> {
    const found = await this.lstat(await this.resolve(path));
    if (found === null || !found.stats.isFile()) return null;
    return fs.readFile(found.host, 'utf8');
  }
}

function hidden(whiteouts: string[], rel: string): boolean {
  for (const entry of whiteouts) {
    if (entry.endsWith('/')) {
      if (rel.startsWith(entry)) return true;
    } else if (rel === entry || rel.startsWith(`${entry}/`)) return true;
  }
  return false;
}

export interface Ids {
  uid: number;
  gid: number;
}

/** "name", "uid", "name:group", "uid:gid" as Docker reads --chown and USER: without a group, the gid is the uid's own. */
export async function resolveIds(spec: string, view: ImageView, usePrimaryGroup: boolean): Promise<Ids> {
  const [userPart = '', groupPart] = spec.split(':', 2);
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = usePrimaryGroup ? await lookup(view, '/etc/passwd', (fields) => fields[2] === userPart) : undefined;
    if (entry?.[3] !== undefined) gid = Number(entry[3]);
  } else {
    // root is uid 0 even in an image without /etc/passwd (FROM scratch)
    const entry = (await lookup(view, '/etc/passwd', (fields) => fields[0] === userPart)) ?? (userPart === 'root' ? ['root', 'x', '0', '0'] : undefined);
    if (entry === undefined) throw noSuch('user', userPart, '/etc/passwd');
    uid = Number(entry[2]);
    if (usePrimaryGroup) gid = Number(entry[3]);
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const entry = (await lookup(view, '/etc/group', (fields) => fields[0] === groupPart)) ?? (groupPart === 'root' ? ['root', 'x', '0'] : undefined);
      if (entry === undefined) throw noSuch('group', groupPart, '/etc/group');
      gid = Number(entry[2]);
    }
  }
  const ids = { uid, gid: gid ?? uid };
  if (!Number.isSafeInteger(ids.uid) || !Number.isSafeInteger(ids.gid) || ids.uid > 65535 || ids.gid > 65535) {
    throw new BrigError('BRIG_BUILD_FAILED', `${JSON.stringify(spec)} is not a usable user (ids run from 0 to 65535)`, 'give a name from the image\'s /etc/passwd, or a uid[:gid] below 65536');
  }
  return ids;
}

async function lookup(view: ImageView, file: string, match: (fields: string[]) => boolean): Promise<string[] | undefined> {
  const text = (await view.readFile(file)) ?? '';
  return text.split('\n').map((line) => line.split(':')).find((fields) => fields.length >= 3 && match(fields));
}

function noSuch(what: string, name: string, file: string): BrigError {
  return new BrigError('BRIG_BUILD_FAILED', `no ${what} ${JSON.stringify(name)} in the image's ${file}`, `create it in an earlier RUN step (useradd, groupadd), or give a numeric id`);
}
