import { watch, type FSWatcher, type Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { ConnectError, type FilesystemEvent, type FilesystemEventType } from '../../protocol/index.ts';
import { toConnectError } from '../rpc.ts';
import { entryFromStats, OwnerNames } from './entry.ts';
import { isUploadTempName } from './upload.ts';

/**
 * A directory watch that reports E2B's event types (CREATE, WRITE, REMOVE,
 * RENAME, CHMOD) from what Linux's inotify, through Node's fs.watch, can say.
 *
 * Why not `fs.watch(dir, { recursive: true })`: on Linux, Node 20 emulates it
 * with one inotify watch per *file*, walks trees with synchronous calls that
 * stall envd, and loses a file for good once it is replaced by rename (the
 * way every upload lands). So this keeps one non-recursive fs.watch per
 * directory (one inotify watch each, as E2B's fsnotify does) and adds the
 * subdirectories itself.
 *
 * fs.watch only says "rename" (created, deleted, moved) or "change" (written,
 * attributes changed) for a name. The event type comes from comparing an
 * lstat taken after the event with what was last seen for that name:
 * - a name that appears: CREATE, followed by WRITE when it is a file with
 *   content already (an upload lands by rename, with no write event of its own);
 * - a name that now holds a different inode: WRITE (a file replaced whole);
 * - the same inode: WRITE when its mtime or size moved, CHMOD when only its
 *   mode, owner or ctime did, nothing when nothing did (a repeated event);
 * - a name that is gone: RENAME when the next event of the same inotify batch
 *   shows its inode under a new name inside the watch (the new name then
 *   gets CREATE), REMOVE otherwise.
 * Limits: events are read after the fact, so quick successive changes to one
 * name fold into what the last lstat shows; an entry created and removed
 * before envd looks is not reported at all; a move out of the watched tree is
 * a REMOVE (E2B says RENAME); touching a file's times reads as WRITE; inode
 * numbers are reused, so a delete and a create in one batch can read as a
 * move. A new subdirectory is watched as soon as its creation is seen, and
 * what is already in it is reported as created, so nothing written into it in
 * the meantime is lost. Each watched directory holds one inotify watch
 * (fs.inotify.max_user_watches bounds them; past it the watch ends with
 * resource_exhausted). Changes made while the watch is being set up, before
 * its start message, are not reported.
 */

export interface WatchOptions {
  recursive: boolean;
  includeEntry: boolean;
}

/** What was last seen under a name: enough to tell a write from a chmod from a replacement. */
interface Seen {
  ino: number;
  directory: boolean;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  mode: number;
  uid: number;
  gid: number;
}

interface WatchedDir {
  path: string;
  ino: number;
  watcher: FSWatcher;
  children: Map<string, Seen>;
}

interface RawEvent {
  dir: string;
  kind: string;
  name: string;
}

/** Raw events waiting to be read: past this, the oldest are dropped (a burst larger than envd can stat). */
const MAX_RAW_EVENTS = 16_384;

export class DirWatcher {
  private readonly dirs = new Map<string, WatchedDir>();
  private readonly raw: RawEvent[] = [];
  private readonly names = new OwnerNames();
  private draining = false;
  private started = false;
  private closed = false;
  private failure: ConnectError | null = null;

  constructor(
    private readonly root: string,
    private readonly options: WatchOptions,
    private readonly onEvent: (event: FilesystemEvent) => void,
    private readonly onFailure: (error: ConnectError) => void,
  ) {}

  /** Watch the directory (and, when recursive, every directory below it); events flow from here on. */
  async start(): Promise<void> {
    try {
      await this.addDir(this.root, false);
    } catch (error) {
      this.close(); // the watches set up so far
      throw error;
    }
    if (this.failure) throw this.failure;
    this.raw.length = 0; // what changed while setting up happened before the watch began
    this.started = true;
  }

  close(): void {
    this.closed = true;
    for (const dir of this.dirs.values()) dir.watcher.close();
    this.dirs.clear();
    this.raw.length = 0;
  }

  /** Watch `path` and record what it holds; `announce` reports the contents as created (a new directory). */
  private async addDir(path: string, announce: boolean): Promise<void> {
    if (this.closed || this.dirs.has(path)) return;
    const stats = await lstat(path);
    const watcher = watch(path, { persistent: false }, (kind, name) => this.onRaw(path, kind, name));
    watcher.on('error', (error) => this.fail(toConnectError(error)));
    const dir: WatchedDir = { path, ino: stats.ino, watcher, children: new Map() };
    this.dirs.set(path, dir);
    const names = (await readdir(path)).sort();
    for (const name of names) {
      if (this.closed) return;
      if (isUploadTempName(name)) continue;
      const child = join(path, name);
      const childStats = await lstat(child).catch(() => null);
      if (!childStats || dir.children.has(name)) continue;
      dir.children.set(name, seen(childStats));
      if (announce) await this.appeared(child, childStats);
      if (this.options.recursive && childStats.isDirectory()) await this.addSubdir(child, announce);
    }
  }

  /** A subdirectory that cannot be watched (gone already, unreadable) is skipped; the inotify limit ends the watch. */
  private async addSubdir(path: string, announce: boolean): Promise<void> {
    try {
      await this.addDir(path, announce);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EMFILE') {
        this.fail(new ConnectError('resource_exhausted', `cannot watch ${path}: the system's limit of inotify watches is reached (fs.inotify.max_user_watches)`));
      }
    }
  }

  private onRaw(dir: string, kind: string, name: string | null): void {
    if (this.closed || !this.started || name === null) return;
    if (this.raw.length >= MAX_RAW_EVENTS) this.raw.shift();
    this.raw.push({ dir, kind, name });
    void this.drain();
  }

  /** One event at a time, in order: each is read with an lstat before the next. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let event = this.raw.shift(); event && !this.closed; event = this.raw.shift()) await this.handle(event);
    } catch (error) {
      this.fail(toConnectError(error));
    } finally {
      this.draining = false;
    }
  }

  private async handle(event: RawEvent): Promise<void> {
    const dir = this.dirs.get(event.dir);
    if (!dir || isUploadTempName(event.name)) return;
    if (event.name === basename(dir.path) && (await this.lostSelf(dir))) return;
    const path = join(dir.path, event.name);
    const stats = await lstat(path).catch(() => null);
    const before = dir.children.get(event.name);
    if (!stats) {
      if (!before) return; // came and went before envd looked
      dir.children.delete(event.name);
      if (before.directory) this.unwatchTree(path);
      const destination = await this.moveDestination(before.ino);
      await this.emit(path, destination ? 'EVENT_TYPE_RENAME' : 'EVENT_TYPE_REMOVE', null);
      if (destination) await this.handleAppeared(destination.dir, destination.name, destination.stats, false);
      return;
    }
    if (!before) return this.handleAppeared(dir, event.name, stats, true);
    dir.children.set(event.name, seen(stats));
    if (stats.ino !== before.ino) {
      // Replaced by another entry under the same name: for a file, its content changed.
      if (before.directory) this.unwatchTree(path);
      if (stats.isDirectory() && this.options.recursive) await this.addSubdir(path, true);
      return this.emit(path, stats.isFile() ? 'EVENT_TYPE_WRITE' : 'EVENT_TYPE_CREATE', stats);
    }
    const written = !stats.isDirectory() && (stats.mtimeMs !== before.mtimeMs || stats.size !== before.size);
    const changed = stats.mode !== before.mode || stats.uid !== before.uid || stats.gid !== before.gid || stats.ctimeMs !== before.ctimeMs;
    if (written) await this.emit(path, 'EVENT_TYPE_WRITE', stats);
    else if (changed) await this.emit(path, 'EVENT_TYPE_CHMOD', stats);
  }

  /** A name new to this directory: CREATE (and WRITE for a file with content); watch it when it is a directory. */
  private async handleAppeared(dir: WatchedDir, name: string, stats: Stats, created: boolean): Promise<void> {
    const path = join(dir.path, name);
    dir.children.set(name, seen(stats));
    if (created) await this.appeared(path, stats);
    else await this.emit(path, 'EVENT_TYPE_CREATE', stats);
    // A directory moved in is watched, its contents not reported: they were not created.
    if (stats.isDirectory() && this.options.recursive) await this.addSubdir(path, created);
  }

  private async appeared(path: string, stats: Stats): Promise<void> {
    await this.emit(path, 'EVENT_TYPE_CREATE', stats);
    if (stats.isFile() && stats.size > 0) await this.emit(path, 'EVENT_TYPE_WRITE', stats);
  }

  /**
   * inotify sends a rename's two halves together: when the next event waiting
   * is a name that now holds the vanished inode, the two are one move, and
   * that event is taken here.
   */
  private async moveDestination(ino: number): Promise<{ dir: WatchedDir; name: string; stats: Stats } | null> {
    const next = this.raw[0];
    if (!next || next.kind !== 'rename') return null;
    const dir = this.dirs.get(next.dir);
    if (!dir || dir.children.get(next.name)?.ino === ino) return null;
    const stats = await lstat(join(dir.path, next.name)).catch(() => null);
    if (!stats || stats.ino !== ino || this.raw[0] !== next) return null;
    this.raw.shift();
    return { dir, name: next.name, stats };
  }

  /**
   * inotify reports a watched directory's own removal under its own name.
   * When the directory is really gone: the root ends the watch; a
   * subdirectory is dropped (its parent reports it).
   */
  private async lostSelf(dir: WatchedDir): Promise<boolean> {
    const now = await lstat(dir.path).catch(() => null);
    if (now && now.ino === dir.ino) return false;
    if (dir.path === this.root) this.fail(new ConnectError('not_found', `the watched directory ${this.root} was removed or moved away`));
    else this.unwatchTree(dir.path);
    return true;
  }

  private unwatchTree(path: string): void {
    for (const [key, dir] of this.dirs) {
      if (key === path || key.startsWith(path + '/')) {
        dir.watcher.close();
        this.dirs.delete(key);
      }
    }
  }

  private async emit(path: string, type: FilesystemEventType, stats: Stats | null): Promise<void> {
    const event: FilesystemEvent = { name: relative(this.root, path), type };
    if (this.options.includeEntry && stats) event.entry = await entryFromStats(path, stats, this.names);
    if (!this.closed) this.onEvent(event);
  }

  private fail(error: ConnectError): void {
    if (this.closed) return;
    this.failure = error;
    this.close();
    this.onFailure(error);
  }
}

function seen(stats: Stats): Seen {
  return {
    ino: stats.ino,
    directory: stats.isDirectory(),
    size: stats.size,
    mtimeMs: stats.mtimeMs,
    ctimeMs: stats.ctimeMs,
    mode: stats.mode,
    uid: stats.uid,
    gid: stats.gid,
  };
}
