import type { Dirent } from 'node:fs';
import { cp, lchown, lstat, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConnectError, type EntryInfo } from '../../protocol/index.ts';
import type { Message, RpcContext } from '../rpc.ts';
import { makeDirs, ownerFor, userPath } from '../users.ts';
import { entryFromStats, entryInfo, OwnerNames } from './entry.ts';

/**
 * The unary half of filesystem.Filesystem: Stat, ListDir, MakeDir, Move,
 * Remove. Paths are the caller's (relative to their home); errno failures
 * become Connect codes through rpc.ts's toConnectError (ENOENT → not_found,
 * which the SDK turns into FileNotFoundError).
 */

export async function statEntry(message: Message, context: RpcContext): Promise<{ entry: EntryInfo }> {
  const path = userPath(context.user, message.path);
  return { entry: await entryInfo(path, new OwnerNames()) };
}

export async function listDir(message: Message, context: RpcContext): Promise<{ entries: EntryInfo[] }> {
  const path = userPath(context.user, message.path);
  const depth = depthOf(message.depth);
  // The directory asked for may be a link to one (E2B follows it); what is below is not followed.
  const target = await stat(path);
  if (!target.isDirectory()) throw new ConnectError('invalid_argument', `path is not a directory: ${path}`);
  const entries: EntryInfo[] = [];
  await walk(path, depth, new OwnerNames(), entries, true);
  return { entries };
}

/**
 * Entries below `dir` in E2B's order (a lexical depth-first walk, a directory
 * before what it holds), `depth` levels deep, in one flat list. A
 * subdirectory that cannot be read is listed but not entered; an entry that
 * vanishes during the walk is left out.
 */
async function walk(dir: string, depth: number, names: OwnerNames, entries: EntryInfo[], top = false): Promise<void> {
  let children: Dirent[];
  try {
    children = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (top) throw error; // the directory asked for: say why it cannot be listed
    return;
  }
  children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    const path = join(dir, child.name);
    const stats = await lstat(path).catch(() => null);
    if (!stats) continue;
    entries.push(await entryFromStats(path, stats, names));
    if (depth > 1 && stats.isDirectory()) await walk(path, depth - 1, names, entries);
  }
}

/** uint32 in proto3 JSON: a number, or a decimal string; 0 or absent means 1 (E2B's default). */
function depthOf(value: unknown): number {
  if (value === undefined || value === null) return 1;
  const depth = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 0) throw new ConnectError('invalid_argument', 'depth must be a non-negative integer');
  return depth === 0 ? 1 : depth;
}

export async function makeDir(message: Message, context: RpcContext): Promise<{ entry: EntryInfo }> {
  const path = userPath(context.user, message.path);
  const existing = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (existing?.isDirectory()) throw new ConnectError('already_exists', `directory already exists: ${path}`);
  if (existing) throw new ConnectError('invalid_argument', `path already exists but it is not a directory: ${path}`);
  await makeDirs(path, ownerFor(context.user));
  return { entry: await entryInfo(path, new OwnerNames()) };
}

export async function move(message: Message, context: RpcContext): Promise<{ entry: EntryInfo }> {
  const source = userPath(context.user, message.source, 'source');
  const destination = userPath(context.user, message.destination, 'destination');
  await lstat(source); // a missing source is not_found, before any directory is made for it
  await makeDirs(dirname(destination), ownerFor(context.user));
  try {
    await rename(source, destination);
  } catch (error) {
    // The jail's home and /tmp are tmpfs mounts apart from the workspace: rename(2) cannot cross them.
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await cp(source, destination, { recursive: true, force: true, preserveTimestamps: true, verbatimSymlinks: true });
    // cp makes its copies envd's own: as root (an image sandbox), each gets its source's owner back, as mv does.
    if (process.getuid?.() === 0) await keepOwners(source, destination);
    await rm(source, { recursive: true, force: true });
  }
  return { entry: await entryInfo(destination, new OwnerNames()) };
}

/** Gives each entry of a copied tree the owner of its source (lchown: a link itself, never what it names). */
async function keepOwners(source: string, copy: string): Promise<void> {
  const stats = await lstat(source);
  await lchown(copy, stats.uid, stats.gid);
  if (stats.isDirectory()) for (const name of await readdir(source)) await keepOwners(join(source, name), join(copy, name));
}

/**
 * Removes a file, a link or a whole tree. As E2B's envd (os.RemoveAll), a
 * path that is already gone is not an error: E2B's own SDK tests remove
 * missing files and expect success.
 */
export async function remove(message: Message, context: RpcContext): Promise<Record<string, never>> {
  const path = userPath(context.user, message.path);
  await rm(path, { recursive: true, force: true });
  return {};
}
