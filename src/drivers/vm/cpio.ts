/**
 * A writer of the "newc" cpio format (magic 070701), the one the kernel
 * unpacks as an initramfs (Documentation/driver-api/early-userspace/
 * buffer-format.rst). Reproducible by construction: the entries go out in
 * the order given, with mtime 0, uid and gid 0, no device numbers and inode
 * numbers from a counter, so the same entries always make the same bytes
 * (and the initramfs can be named by its digest).
 *
 * Uncompressed on purpose: under TCG the guest's decompressor costs more
 * than reading a few megabytes more from the host's page cache.
 */
import { BrigError } from '../../protocol/index.ts';

export type CpioEntry =
  | { kind: 'directory'; path: string; mode: number }
  | { kind: 'file'; path: string; mode: number; data: Buffer }
  | { kind: 'symlink'; path: string; target: string };

const MAGIC = '070701';
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const TRAILER = 'TRAILER!!!';
/** The size field is 8 hex digits. */
const MAX_FILE_BYTES = 0xffffffff;

/**
 * The archive of `entries`, in that order, then the trailer. Paths are
 * relative ("init", "lib/modules/fuse.ko"), and every entry's parent
 * directory must come before it: the kernel's unpacker makes no parents.
 */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  const seen = new Set<string>();
  const directories = new Set<string>(['']);
  let inode = 0;
  for (const entry of entries) {
    checkPath(entry.path, seen, directories);
    seen.add(entry.path);
    inode += 1;
    if (entry.kind === 'directory') {
      directories.add(entry.path);
      chunks.push(...record(entry.path, { inode, mode: S_IFDIR | (entry.mode & 0o7777), nlink: 2 }, Buffer.alloc(0)));
    } else if (entry.kind === 'file') {
      if (entry.data.length > MAX_FILE_BYTES) throw bug(`${entry.path} is ${entry.data.length} bytes, more than newc's 4 GiB`);
      chunks.push(...record(entry.path, { inode, mode: S_IFREG | (entry.mode & 0o7777), nlink: 1 }, entry.data));
    } else {
      chunks.push(...record(entry.path, { inode, mode: S_IFLNK | 0o777, nlink: 1 }, Buffer.from(entry.target)));
    }
  }
  // GNU cpio's trailer: everything zero but nlink
  chunks.push(...record(TRAILER, { inode: 0, mode: 0, nlink: 1 }, Buffer.alloc(0)));
  return Buffer.concat(chunks);
}

/**
 * One entry: the 110-byte header, the name with its NUL padded so that
 * header and name together end on a multiple of 4, then the data padded to
 * a multiple of 4.
 */
function record(name: string, fields: { inode: number; mode: number; nlink: number }, data: Buffer): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`);
  const header = [
    MAGIC,
    hex(fields.inode),
    hex(fields.mode),
    hex(0), // uid
    hex(0), // gid
    hex(fields.nlink),
    hex(0), // mtime
    hex(data.length),
    hex(0), // devmajor
    hex(0), // devminor
    hex(0), // rdevmajor
    hex(0), // rdevminor
    hex(nameBytes.length),
    hex(0), // check: only the 070702 format sums its data
  ].join('');
  return [Buffer.from(header, 'ascii'), nameBytes, padding(header.length + nameBytes.length), data, padding(data.length)];
}

function hex(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

/** A path the kernel unpacks where it says: relative, normal, new, under a directory already in the archive. */
function checkPath(path: string, seen: Set<string>, directories: Set<string>): void {
  const parts = path.split('/');
  if (path === '' || path === TRAILER || parts.some((part) => part === '' || part === '.' || part === '..') || path.includes('\0')) {
    throw bug(`${JSON.stringify(path)} is not a relative path without . or .. components`);
  }
  if (seen.has(path)) throw bug(`${path} is in the archive twice`);
  const parent = parts.slice(0, -1).join('/');
  if (!directories.has(parent)) throw bug(`${path} comes before its directory ${parent}`);
}

function bug(message: string): BrigError {
  return new BrigError('BRIG_INTERNAL', `cpio: ${message}`, 'the initramfs builder lists its entries; this is a bug in it');
}
