/**
 * Staging a layer for COPY, ADD and WORKDIR: a fresh directory under the
 * store's tmp/ that holds exactly the files the step adds, at their in-image
 * paths, with their owners (lchown, as root) and modes. Parent directories
 * that already exist in the image are staged with the image's own mode and
 * owner, so the new layer does not change them when it is stacked over the
 * others. Context files are read O_NOFOLLOW and symlinks copied as symlinks.
 * commitDirectory (layer-tar.ts) turns the directory into a store layer.
 */
import { constants, promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BrigError } from '../protocol/index.ts';
import { openNoFollow, type Source } from './build-context.ts';
import type { ImageView, Ids } from './image-view.ts';

/** 2000-01-01T00:00:00Z: the mtime of a directory a step creates, fixed so rebuilding gives the same layer. */
const NEW_DIR_MTIME = 946_684_800;

export class Stage {
  /**
   * Directory modes and mtimes, applied last (deepest first) so a read-only
   * one does not block its own entries. The mtimes are the image's or the
   * source's, and NEW_DIR_MTIME for a new parent: the same files give the
   * same layer digest whenever they are built.
   */
  private readonly dirModes = new Map<string, { mode: number; mtime: number }>();
  /** Entries the stage holds, by in-image path. */
  readonly written = new Set<string>();

  constructor(
    readonly root: string,
    private readonly view: ImageView,
  ) {}

  private host(path: string): string {
    return join(this.root, path);
  }

  /** Creates `dir` (absolute, symlinks already resolved) and its parents; new ones get `owner`. True when the image lacked it. */
  async ensureDir(dir: string, owner: Ids): Promise<boolean> {
    let at = '/';
    let created = false;
    for (const part of dir.split('/').filter((one) => one !== '')) {
      at = posix.join(at, part);
      if (this.written.has(at)) continue;
      const inImage = await this.view.lstat(at);
      if (inImage !== null && !inImage.stats.isDirectory()) {
        throw new BrigError('BRIG_BUILD_FAILED', `${at} is not a directory in the image`, 'a destination directory must not be a file in the image');
      }
      await fs.mkdir(this.host(at), { mode: 0o700 });
      if (inImage !== null) {
        await fs.lchown(this.host(at), inImage.stats.uid, inImage.stats.gid);
        this.dirModes.set(at, { mode: inImage.stats.mode & 0o7777, mtime: inImage.stats.mtimeMs / 1000 });
      } else {
        await fs.lchown(this.host(at), owner.uid, owner.gid);
        this.dirModes.set(at, { mode: 0o755, mtime: NEW_DIR_MTIME });
        created = true;
      }
      this.written.add(at);
    }
    return created;
  }

  /** Is `path` a directory in the stage or the image (after what this step wrote)? */
  async isDir(path: string): Promise<boolean> {
    if (this.written.has(path)) return (await fs.lstat(this.host(path))).isDirectory();
    return (await this.view.lstat(path))?.stats.isDirectory() ?? false;
  }

  /** Copies one source from the context to `target` (its contents into it when the source is a directory). */
  async copy(context: string, source: Source, target: string, owner: Ids, chmod: number | undefined): Promise<void> {
    await this.ensureDir(posix.dirname(target), owner);
    for (const entry of source.entries) {
      const at = entry.under === '' ? target : posix.join(target, entry.under);
      const from = join(context, entry.rel);
      const stats = entry.stats;
      if (entry.under === '' && stats.isDirectory()) {
        // a directory source's contents go into the target; the target keeps the image's metadata
        await this.ensureDir(at, owner);
        continue;
      }
      if (stats.isDirectory()) {
        if (!this.written.has(at)) await fs.mkdir(this.host(at), { mode: 0o700 });
        this.dirModes.set(at, { mode: chmod ?? stats.mode & 0o777, mtime: stats.mtimeMs / 1000 });
      } else {
        await this.clear(at);
        if (stats.isSymbolicLink()) await fs.symlink(await fs.readlink(from), this.host(at));
        else if (stats.isFile()) {
          const out = await fs.open(this.host(at), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
          await pipeline(await openNoFollow(from), out.createWriteStream());
          await fs.chmod(this.host(at), chmod ?? stats.mode & 0o777);
          await fs.utimes(this.host(at), stats.atime, stats.mtime);
        } else continue; // sockets, fifos, devices: not copied
      }
      await fs.lchown(this.host(at), owner.uid, owner.gid);
      this.written.add(at);
    }
  }

  /** Moves an extracted archive's tree into `dir` (ADD of a local tar), merging directories. */
  async merge(extracted: string, dir: string): Promise<void> {
    for (const name of await fs.readdir(extracted)) {
      const at = posix.join(dir, name);
      const from = join(extracted, name);
      const stats = await fs.lstat(from);
      if (this.written.has(at) && stats.isDirectory() && (await fs.lstat(this.host(at))).isDirectory()) {
        await this.merge(from, at);
        continue;
      }
      await this.clear(at);
      await fs.rename(from, this.host(at));
      this.written.add(at);
    }
  }

  private async clear(at: string): Promise<void> {
    if (!this.written.has(at)) return;
    await fs.rm(this.host(at), { recursive: true, force: true });
    this.written.delete(at);
  }

  /** Applies the directory modes; call once, when the stage is complete. */
  async finish(): Promise<void> {
    const deepestFirst = [...this.dirModes].sort(([a], [b]) => b.length - a.length);
    for (const [at, { mode, mtime }] of deepestFirst) {
      await fs.chmod(this.host(at), mode);
      await fs.utimes(this.host(at), mtime, mtime);
    }
  }
}

/** Is the file a tar or tar.gz ADD should unpack? (gzip magic, or "ustar" at offset 257.) */
export async function isLocalArchive(path: string): Promise<boolean> {
  const handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, 512, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return true;
    return bytesRead >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    await handle.close();
  }
}
