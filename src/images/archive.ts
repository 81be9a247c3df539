/**
 * extractLayer: unpack a tar (or tar.gz) layer into a fresh directory,
 * treating the archive as hostile. Nothing is written outside destDir: names
 * with '..' are dropped, parents are created one component at a time and a
 * symlink met on the way drops the entry, files are opened O_NOFOLLOW|O_EXCL,
 * hard links only reach files this archive already wrote. Device nodes and
 * fifos are dropped, set-id bits cleared. The result is overlay-ready (the
 * layer format in docs/images.md): entries keep the tar's uid/gid (as root),
 * a whiteout `.wh.NAME` becomes a character device 0/0 named NAME and
 * `.wh..wh..opq` the xattr trusted.overlay.opaque=y on its directory.
 * A broken archive or a passed limit throws BRIG_ARCHIVE_INVALID and removes
 * destDir. The rules are in docs/images.md.
 */
import { constants, createReadStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import brigSpawn from 'brig-spawn';
import { BrigError } from '../protocol/index.ts';
import { BLOCK, ByteReader, invalid, openArchive, padding, parseHeader, parsePax } from './tar.ts';

export interface ExtractLimits {
  /** Headers read, metadata headers (pax, GNU long names) included. @default 1,000,000 */
  maxEntries: number;
  /** Data bytes of all entries together, as declared by their headers. @default 64 GiB */
  maxTotalBytes: number;
  /** Data bytes of one entry. @default 16 GiB */
  maxEntryBytes: number;
  /** Bytes of an entry's name or link target, after cleaning. @default 4096 */
  maxPathBytes: number;
  /** Bytes of one pax extended header or GNU long name. @default 1 MiB */
  maxPaxBytes: number;
}

export const DEFAULT_LIMITS: ExtractLimits = {
  maxEntries: 1_000_000,
  maxTotalBytes: 64 * 2 ** 30,
  maxEntryBytes: 16 * 2 ** 30,
  maxPathBytes: 4096,
  maxPaxBytes: 2 ** 20,
};

export interface ExtractResult {
  /** Entries written: files, directories, symlinks, hard links. */
  files: number;
  /** Bytes of file data written. */
  bytes: number;
  /** Entries refused (not written) or changed (set-id bits cleared, an id past 65535 made 65534), with why. */
  dropped: Array<{ path: string; why: string }>;
  /** Paths a whiteout removes from lower layers (each written as a whiteout device); an opaque directory ends with '/'. */
  whiteouts: string[];
}

type Clean = { path: string } | { why: string };

/** An entry's name as a relative path of plain components; '/' leads nowhere but the layer's root. */
export function cleanName(raw: string): Clean {
  if (raw.includes('\0')) return { why: 'NUL byte in name' };
  const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) return { why: '".." in name' };
  return { path: parts.join('/') };
}

const SPECIAL: Record<string, string> = { '3': 'character device', '4': 'block device', '6': 'fifo' };

class Dropped extends Error {}

/** 9999-12-31T23:59:59Z, in seconds. */
const MAX_MTIME = 253_402_300_799;

/** Ids a layer keeps: one id-mapped range of 65536 (0 to 65535); a larger one becomes NOBODY. */
export const MAX_LAYER_ID = 65535;
export const NOBODY = 65534;

/** The tar names of overlay's two markers (OCI image spec, layer.md: whiteouts). */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

/** What an entry's header says besides its name, link and size. */
interface Meta {
  mode: number;
  mtime: number;
  uid: number;
  gid: number;
}

export async function extractLayer(archive: Readable | string, destDir: string, limits: Partial<ExtractLimits> = {}): Promise<ExtractResult> {
  const limit: ExtractLimits = { ...DEFAULT_LIMITS, ...limits };
  await prepareDest(destDir);
  const source = typeof archive === 'string' ? createReadStream(archive) : archive;
  let chunks: AsyncIterator<Buffer | string> | undefined;
  try {
    chunks = await openArchive(source);
    return await new Extractor(destDir, limit, new ByteReader(chunks)).run();
  } catch (error) {
    await fs.rm(destDir, { recursive: true, force: true });
    if (error instanceof BrigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && typeof archive === 'string') throw invalid(`the archive ${archive} does not exist`, 'check the path');
    throw error;
  } finally {
    await chunks?.return?.();
    source.destroy();
  }
}

async function prepareDest(destDir: string): Promise<void> {
  try {
    await fs.mkdir(destDir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const info = await fs.lstat(destDir);
    if (!info.isDirectory() || (await fs.readdir(destDir)).length > 0) {
      throw new BrigError('BRIG_INTERNAL', `extractLayer: ${destDir} exists and is not an empty directory`, 'a layer is extracted into a fresh directory only; this is a bug in the caller');
    }
  }
}

class Extractor {
  private readonly result: ExtractResult = { files: 0, bytes: 0, dropped: [], whiteouts: [] };
  /** Regular files this archive wrote, by cleaned path: the only hard link targets allowed. */
  private readonly written = new Set<string>();
  /** Directory modes, owners and times, applied last so a read-only directory does not stop its own entries (and its time is not moved by them). */
  private readonly dirModes = new Map<string, Meta>();
  /**
   * Host paths already made or checked to be real directories: nothing but
   * this extractor writes destDir and it never turns a directory into
   * anything else, so each parent is lstat'ed once, not once per entry.
   */
  private readonly knownDirs = new Set<string>();
  /** Only root may give files away; anyone else's layers are owned by whoever extracted them. */
  private readonly keepOwners = process.geteuid?.() === 0;
  private entries = 0;
  private declared = 0;

  constructor(
    private readonly root: string,
    private readonly limit: ExtractLimits,
    private readonly bytes: ByteReader,
  ) {}

  async run(): Promise<ExtractResult> {
    let pax = new Map<string, string>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.bytes.take(BLOCK);
      if (block === null) throw invalid('the archive is truncated: it ends without the end-of-archive blocks');
      const header = parseHeader(block);
      if (header === null) break;
      if (++this.entries > this.limit.maxEntries) throw invalid(`the archive has more than ${this.limit.maxEntries} entries (limit maxEntries)`);
      const meta = header.type === 'x' || header.type === 'g' || header.type === 'L' || header.type === 'K';
      let size = header.size;
      if (!meta && pax.has('size')) size = paxNumber(pax, 'size');
      if (meta && size > this.limit.maxPaxBytes) throw invalid(`a ${header.type} header of ${size} bytes passes the limit of ${this.limit.maxPaxBytes} (limit maxPaxBytes)`);
      if (size > this.limit.maxEntryBytes) throw invalid(`an entry declares ${size} bytes, more than the limit of ${this.limit.maxEntryBytes} (limit maxEntryBytes)`);
      this.declared += size;
      if (this.declared > this.limit.maxTotalBytes) throw invalid(`the archive's entries declare more than ${this.limit.maxTotalBytes} bytes (limit maxTotalBytes)`);
      if (meta) {
        const data = await this.bytes.need(size);
        await this.bytes.need(padding(size));
        if (header.type === 'x') pax = parsePax(data);
        else if (header.type === 'L') longName = trimNul(data);
        else if (header.type === 'K') longLink = trimNul(data);
        continue;
      }
      const name = pax.get('path') ?? longName ?? header.name;
      const linkname = pax.get('linkpath') ?? longLink ?? header.linkname;
      const uid = pax.has('uid') ? paxNumber(pax, 'uid') : header.uid;
      const gid = pax.has('gid') ? paxNumber(pax, 'gid') : header.gid;
      pax = new Map();
      longName = undefined;
      longLink = undefined;
      const consumed = await this.entry(header.type, name, linkname, { mode: header.mode, mtime: header.mtime, uid, gid }, size);
      if (!consumed) await this.bytes.skip(size);
      await this.bytes.need(padding(size));
    }
    await this.applyDirModes();
    return this.result;
  }

  private drop(path: string, why: string): false {
    this.result.dropped.push({ path, why });
    return false;
  }

  private checkLength(text: string, what: string): void {
    if (Buffer.byteLength(text) > this.limit.maxPathBytes) throw invalid(`an entry's ${what} is longer than ${this.limit.maxPathBytes} bytes (limit maxPathBytes)`);
  }

  /** Writes one entry; true when it consumed its data. */
  private async entry(type: string, rawName: string, linkname: string, meta: Meta, size: number): Promise<boolean> {
    const mode = meta.mode;
    const clean = cleanName(rawName);
    if ('why' in clean) return this.drop(rawName, clean.why);
    const path = clean.path;
    this.checkLength(path, 'name');
    if (path === '') return type === '5' ? false : this.drop(rawName, 'empty name');
    const slash = path.lastIndexOf('/');
    const base = path.slice(slash + 1);
    const parent = slash === -1 ? '' : path.slice(0, slash);
    if (base.startsWith(WHITEOUT_PREFIX)) return this.whiteout(path, parent, base.slice(WHITEOUT_PREFIX.length));
    const special = SPECIAL[type];
    if (special !== undefined) return this.drop(path, `${special} not allowed in a layer`);
    if (!['0', '7', '1', '2', '5'].includes(type)) return this.drop(path, `unsupported entry type ${JSON.stringify(type)}`);
    // a directory keeps its sticky bit (/tmp's 1777: users may not remove each other's files); set-id bits go everywhere
    const kept = type === '5' ? 0o1777 : 0o777;
    if ((type === '0' || type === '7' || type === '5') && (mode & 0o7000 & ~kept) !== 0) this.drop(path, 'set-id bits cleared');
    const owned = type === '1' ? meta : { ...meta, mode: mode & kept, uid: this.layerId(path, 'uid', meta.uid), gid: this.layerId(path, 'gid', meta.gid) };
    try {
      const target = await this.parents(path);
      if (type === '5') await this.directory(path, target, owned);
      else if (type === '2') await this.symlink(path, target, linkname, owned);
      else if (type === '1') await this.hardlink(path, target, linkname);
      else {
        await this.file(path, target, owned, size);
        return true;
      }
    } catch (error) {
      return this.dropOn(path, error);
    }
    return false;
  }

  /** Drops the entry for a Dropped or a name too long for the filesystem; anything else is not the entry's fault. */
  private dropOn(path: string, error: unknown): false {
    if (error instanceof Dropped) return this.drop(path, error.message);
    if ((error as NodeJS.ErrnoException).code === 'ENAMETOOLONG') return this.drop(path, 'a name component is longer than the filesystem allows');
    throw error;
  }

  /** An id the layer can keep: past MAX_LAYER_ID it becomes NOBODY, listed. */
  private layerId(path: string, which: string, id: number): number {
    if (id <= MAX_LAYER_ID) return id;
    this.drop(path, `${which} ${id} is past ${MAX_LAYER_ID}: made ${NOBODY} (nobody)`);
    return NOBODY;
  }

  /**
   * `.wh.NAME` becomes an overlay whiteout (a character device 0/0) named NAME
   * beside it; `.wh..wh..opq` makes its directory opaque. Parents are made
   * and checked as for any entry, so a whiteout never lands through a symlink.
   */
  private async whiteout(path: string, parent: string, hidden: string): Promise<false> {
    try {
      if (WHITEOUT_PREFIX + hidden === OPAQUE_MARKER) {
        if (parent === '') return this.drop(path, 'an opaque marker at the layer\'s root hides nothing a layer may hide');
        await this.parents(path);
        const dir = join(this.root, ...parent.split('/'));
        try {
          brigSpawn.setOpaque(dir);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
          return this.drop(path, 'opaque marker not kept: the trusted.overlay.opaque xattr needs root');
        }
        this.result.whiteouts.push(`${parent}/`);
        return false;
      }
      if (hidden === '' || hidden === '.' || hidden === '..') return this.drop(path, 'whiteout without a name a file can have');
      if (hidden.startsWith(WHITEOUT_PREFIX)) return this.drop(path, 'whiteout metadata of another format (aufs) not supported');
      const hiddenPath = parent === '' ? hidden : `${parent}/${hidden}`;
      this.checkLength(hiddenPath, 'name');
      const target = await this.parents(hiddenPath);
      if ((await lstatOrNull(target)) !== null) return this.drop(path, 'this layer has an entry of the name it whites out');
      try {
        brigSpawn.makeWhiteout(target);
      } catch (error) {
        // kernels before 5.8 let only CAP_MKNOD make even a 0/0 device
        if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
        return this.drop(path, 'whiteout not kept: this kernel lets only root make the whiteout device');
      }
      this.result.whiteouts.push(hiddenPath);
    } catch (error) {
      return this.dropOn(path, error);
    }
    return false;
  }

  /** Creates path's parent directories one component at a time, never through a symlink; the full host path. */
  private async parents(path: string): Promise<string> {
    const parts = path.split('/');
    let at = this.root;
    for (const part of parts.slice(0, -1)) {
      at = join(at, part);
      if (this.knownDirs.has(at)) continue;
      const info = await lstatOrNull(at);
      if (info === null) await fs.mkdir(at, { mode: 0o755 });
      else if (info.isSymbolicLink()) throw new Dropped(`a parent (${part}) is a symlink`);
      else if (!info.isDirectory()) throw new Dropped(`a parent (${part}) is not a directory`);
      this.knownDirs.add(at);
    }
    return join(at, parts[parts.length - 1] ?? '');
  }

  /** Clears the way for a non-directory entry: a later entry replaces an earlier file or link, never a directory. */
  private async replace(path: string, target: string): Promise<void> {
    const info = await lstatOrNull(target);
    if (info === null) return;
    if (info.isDirectory()) throw new Dropped('a directory of that name exists');
    await fs.unlink(target);
    this.written.delete(path);
  }

  private async directory(path: string, target: string, meta: Meta): Promise<void> {
    const info = await lstatOrNull(target);
    if (info !== null && !info.isDirectory()) {
      await fs.unlink(target);
      this.written.delete(path);
    }
    if (info === null || !info.isDirectory()) {
      await fs.mkdir(target, { mode: 0o700 });
      this.result.files++;
    }
    this.dirModes.set(target, meta);
  }

  private async file(path: string, target: string, meta: Meta, size: number): Promise<void> {
    await this.replace(path, target);
    const handle = await fs.open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      let left = size;
      while (left > 0) {
        const piece = await this.bytes.some(Math.min(left, 1 << 20));
        for (let done = 0; done < piece.length; ) done += (await handle.write(piece, done, piece.length - done)).bytesWritten;
        left -= piece.length;
      }
      // chown before chmod: chown clears set-id bits, chmod sets the mode it is given
      if (this.keepOwners) await handle.chown(meta.uid, meta.gid);
      await handle.chmod(meta.mode);
      // a hostile mtime past year 9999 is not worth an error: the file keeps the time it was written
      if (meta.mtime <= MAX_MTIME) await handle.utimes(meta.mtime, meta.mtime);
    } finally {
      await handle.close();
    }
    this.written.add(path);
    this.result.files++;
    this.result.bytes += size;
  }

  private async symlink(path: string, target: string, linkname: string, meta: Meta): Promise<void> {
    if (linkname === '' || linkname.includes('\0')) throw new Dropped('symlink with an empty target or a NUL byte in it');
    this.checkLength(linkname, 'link target');
    await this.replace(path, target);
    await fs.symlink(linkname, target);
    if (this.keepOwners) await fs.lchown(target, meta.uid, meta.gid);
    if (meta.mtime <= MAX_MTIME) await fs.lutimes(target, meta.mtime, meta.mtime);
    this.result.files++;
  }

  private async hardlink(path: string, target: string, linkname: string): Promise<void> {
    const clean = cleanName(linkname);
    if ('why' in clean) throw new Dropped(`hard link target ${JSON.stringify(linkname)}: ${clean.why}`);
    this.checkLength(clean.path, 'link target');
    if (!this.written.has(clean.path)) throw new Dropped(`hard link to ${JSON.stringify(linkname)}, which is not a file this archive wrote before it`);
    const existing = join(this.root, ...clean.path.split('/'));
    const info = await lstatOrNull(existing);
    if (info === null || !info.isFile()) throw new Dropped(`hard link to ${JSON.stringify(linkname)}, which is no longer a regular file`);
    if (clean.path === path) return;
    await this.replace(path, target);
    await fs.link(existing, target);
    this.written.add(path);
    this.result.files++;
  }

  private async applyDirModes(): Promise<void> {
    const deepestFirst = [...this.dirModes].sort(([a], [b]) => b.length - a.length);
    for (const [target, meta] of deepestFirst) {
      const handle = await fs.open(target, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      try {
        if (this.keepOwners) await handle.chown(meta.uid, meta.gid);
        await handle.chmod(meta.mode);
        if (meta.mtime <= MAX_MTIME) await handle.utimes(meta.mtime, meta.mtime);
      } finally {
        await handle.close();
      }
    }
  }
}

/** A pax record that must be a decimal number (size, uid, gid). */
function paxNumber(pax: Map<string, string>, key: string): number {
  const value = pax.get(key) ?? '';
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw invalid(`a pax ${key} is not a number: ${JSON.stringify(value)}`);
  return Number(value);
}

function trimNul(data: Buffer): string {
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  return data.subarray(0, end).toString('utf8');
}

async function lstatOrNull(path: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fs.lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}
