import type { Stats } from 'node:fs';
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { EntryInfo, FileType } from '../../protocol/index.ts';
import { idNames } from '../users.ts';

/**
 * EntryInfo in proto3's JSON mapping, as E2B's envd fills it: size as an
 * int64 string, the permission bits as `mode`, `ls -l`-style permissions,
 * owner and group by name from the sandbox's own databases.
 */

/**
 * uid and gid names, read from /etc/passwd and /etc/group at most once per
 * request: a listing of thousands of entries reads them once, and a user
 * added inside the sandbox shows up on the next request.
 */
export class OwnerNames {
  private users: Map<number, string> | null = null;
  private groups: Map<number, string> | null = null;

  user(uid: number): string {
    this.users ??= idNames('/etc/passwd');
    return this.users.get(uid) ?? String(uid);
  }

  group(gid: number): string {
    this.groups ??= idNames('/etc/group');
    return this.groups.get(gid) ?? String(gid);
  }
}

/** The entry at `path` itself (a symlink is described, not followed). */
export async function entryInfo(path: string, names: OwnerNames): Promise<EntryInfo> {
  return entryFromStats(path, await lstat(path), names);
}

/** An entry from lstat results the caller already has (a directory walk, a watch event). */
export async function entryFromStats(path: string, stats: Stats, names: OwnerNames): Promise<EntryInfo> {
  const entry: EntryInfo = {
    name: basename(path) || path,
    type: fileType(stats),
    path,
    size: String(stats.size),
    mode: stats.mode & 0o777,
    permissions: permissionString(stats.mode),
    owner: names.user(stats.uid),
    group: names.group(stats.gid),
    modifiedTime: new Date(stats.mtimeMs).toISOString(),
  };
  if (stats.isSymbolicLink()) {
    entry.symlinkTarget = await symlinkTarget(path);
    // As E2B: a link's own bits are always 0777, the useful ones are its target's.
    entry.mode = await stat(path).then((target) => target.mode & 0o777, () => entry.mode);
  }
  return entry;
}

/**
 * Sockets, FIFOs and devices are reported as files: the protocol has no type
 * for them, and E2B's UNSPECIFIED makes the SDK drop them from listings. Their
 * `permissions` ("srwx…", "prw-…", "crw-…") still tell them apart.
 */
export function fileType(stats: Stats): FileType {
  if (stats.isSymbolicLink()) return 'FILE_TYPE_SYMLINK';
  if (stats.isDirectory()) return 'FILE_TYPE_DIRECTORY';
  return 'FILE_TYPE_FILE';
}

/** `ls -l`'s first column: type, then rwx for owner, group, others with setuid, setgid and sticky. */
export function permissionString(mode: number): string {
  const kind = TYPE_LETTERS[(mode & 0o170000) >> 12] ?? '?';
  const triplet = (shift: number, special: boolean, specialLetter: string): string => {
    const bits = (mode >> shift) & 0o7;
    const execute = bits & 0o1 ? (special ? specialLetter : 'x') : special ? specialLetter.toUpperCase() : '-';
    return (bits & 0o4 ? 'r' : '-') + (bits & 0o2 ? 'w' : '-') + execute;
  };
  return kind + triplet(6, (mode & 0o4000) !== 0, 's') + triplet(3, (mode & 0o2000) !== 0, 's') + triplet(0, (mode & 0o1000) !== 0, 't');
}

/** S_IFMT >> 12 → ls's letter. */
const TYPE_LETTERS: Record<number, string> = { 0o01: 'p', 0o02: 'c', 0o04: 'd', 0o06: 'b', 0o10: '-', 0o12: 'l', 0o14: 's' };

/**
 * Where a link leads, fully resolved as E2B reports it; a dangling link
 * (nothing to resolve) reports its raw target instead.
 */
async function symlinkTarget(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return readlink(path).catch(() => path);
  }
}
