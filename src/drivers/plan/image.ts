import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from 'node:fs';

/**
 * What every tier needs to know of an image sandbox before it builds one:
 * the ids it is given on the host, what root keeps inside, and who the
 * image's users are (its own /etc/passwd, read as hostile).
 */

/** How many ids an image sandbox maps: every id a Debian system uses (nobody is 65534). */
export const IMAGE_ID_COUNT = 65_536;

/**
 * The host ids of an image jail's range `slot`: ranges of IMAGE_ID_COUNT from
 * 2^20 up (above where host accounts and subordinate ranges are usually
 * handed out). The daemon's sandboxes take slots from 0 (its host-id table),
 * `brig run --image` and build steps from 65 000; null past the largest uid.
 */
export function imageIdBase(slot: number): number | null {
  const base = 2 ** 20 + slot * IMAGE_ID_COUNT;
  return slot >= 0 && base + IMAGE_ID_COUNT - 1 < 0xffff_fffe ? base : null;
}

/** The capabilities root inside an image sandbox keeps, in its own user namespace only: Docker's default set. */
export const IMAGE_ROOT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_AUDIT_WRITE', 'CAP_SETFCAP',
];

export interface ImageUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/**
 * A user of the image by name or uid, from its own /etc/passwd (the topmost
 * layer that has one): null when it has none. The file is the image's, so it
 * is read as hostile: no link followed, its size bounded.
 */
export function imageUser(layers: string[], who: string | number): ImageUser | null {
  const passwd = readLayeredFile(layers, 'etc/passwd');
  if (passwd === null) return null;
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid, , home, shell] = line.split(':');
    if (!name || !/^\d+$/.test(uid ?? '') || !/^\d+$/.test(gid ?? '')) continue;
    if (name === who || Number(uid) === who) return { name, uid: Number(uid), gid: Number(gid), home: home || '/', shell: shell || '/bin/sh' };
  }
  return null;
}

const MAX_FILE_BYTES = 1 << 20;

/** A small file as the merged image shows it: the topmost layer's, read without following links. */
export function readLayeredFile(layers: string[], path: string): string | null {
  for (let index = layers.length - 1; index >= 0; index--) {
    const layer = layers[index] as string;
    const parts = path.split('/');
    let dir = layer;
    let blocked = false;
    for (const part of parts.slice(0, -1)) {
      dir = `${dir}/${part}`;
      try {
        if (!lstatSync(dir).isDirectory()) blocked = true;
      } catch {
        blocked = true;
      }
      if (blocked) break;
    }
    if (blocked) continue;
    let fd: number;
    try {
      fd = openSync(`${layer}/${path}`, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      continue;
    }
    try {
      const stats = fstatSync(fd);
      if (!stats.isFile()) return null;
      const buffer = Buffer.alloc(Math.min(stats.size, MAX_FILE_BYTES));
      const length = readSync(fd, buffer, 0, buffer.length, 0);
      return buffer.subarray(0, length).toString('utf8');
    } finally {
      closeSync(fd);
    }
  }
  return null;
}
