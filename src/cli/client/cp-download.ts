import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, rename, rm, stat, symlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { posix } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BrigError, isBrigError, type EntryInfo } from '../../protocol/index.ts';
import { ALL_THE_WAY, inParallel, landing, missing, PARALLEL_FILES, type CopySummary, type Existing } from './cp-rules.ts';
import { EnvdFailure, type Envd } from './envd.ts';

/**
 * Sandbox → host. What the sandbox says is not trusted: every path it lists
 * must fall inside what was asked for, files land through a temporary file
 * and a rename (never written through a link), links are made last and only
 * when they point inside the copy, and nothing gets more than rwx bits.
 */

export async function copyFromSandbox(envd: Envd, from: string, to: string, summary: CopySummary): Promise<void> {
  const given = await envd.stat(from);
  if (!given) throw missing(from, 'in the sandbox');
  // SRC itself is followed when it is a link; the copy keeps the link's name.
  const top = given.type === 'FILE_TYPE_SYMLINK' && given.symlinkTarget ? await envd.stat(given.symlinkTarget) : given;
  if (!top || top.type === 'FILE_TYPE_SYMLINK') throw new BrigError('BRIG_USAGE', `${from} is a dangling symlink in the sandbox`, 'copy what it should point to');
  const directory = top.type === 'FILE_TYPE_DIRECTORY';
  if (!directory && !top.permissions.startsWith('-')) throw new BrigError('BRIG_USAGE', `${from} is not a regular file or a directory in the sandbox`, 'sockets, FIFOs and devices cannot be copied');
  const contentsOnly = from === '.' || from.endsWith('/.');
  const before = await existing(to);
  const target = landing({ name: given.name, directory, contentsOnly }, to, before, join);
  if ((await existing(dirname(resolve(target)))) !== 'directory') throw missing(dirname(target), 'on the host');

  if (!directory) {
    await writeFile(envd, given.path, target, top.mode, summary);
    return;
  }
  const root = given.path;
  const rootReal = top.path;
  const { entries } = await envd.unary<{ entries: EntryInfo[] }>('filesystem.Filesystem/ListDir', { path: root, depth: ALL_THE_WAY });
  const skip = (path: string, reason: string): void => void summary.skipped.push({ path, reason });
  // Directories made here get their bits at the end (a read-only one would refuse its files); ones already there keep theirs.
  const made: { host: string; mode: number }[] = [];
  if (await makeDirectory(target)) made.push({ host: target, mode: top.mode });
  else if ((await existing(target)) !== 'directory') throw new BrigError('BRIG_USAGE', `cannot make the directory ${target}: something else is there`, 'remove it, or copy elsewhere');
  const blocked: string[] = [];
  const files: { entry: EntryInfo; host: string }[] = [];
  const links: { entry: EntryInfo; host: string }[] = [];
  for (const entry of entries) {
    const relative = posix.relative(root, entry.path);
    if (relative === '' || relative === '..' || relative.startsWith('../') || posix.isAbsolute(relative)) {
      skip(entry.path, `listed outside ${root}`);
      continue;
    }
    if (blocked.some((prefix) => relative.startsWith(`${prefix}/`))) continue;
    const host = join(target, ...relative.split('/'));
    if (entry.type === 'FILE_TYPE_DIRECTORY') {
      if (await makeDirectory(host)) made.push({ host, mode: entry.mode });
      else if (!(await lstat(host)).isDirectory()) {
        // A file, or a link (never followed): what the sandbox has below it is left out.
        blocked.push(relative);
        skip(entry.path, `${host} is on the host and is not a directory`);
        continue;
      }
      summary.directories++;
    } else if (entry.type === 'FILE_TYPE_SYMLINK') links.push({ entry, host });
    else if (entry.permissions.startsWith('-')) files.push({ entry, host });
    else skip(entry.path, 'not a regular file (a socket, FIFO or device)');
  }
  await inParallel(files, PARALLEL_FILES, ({ entry, host }) =>
    writeFile(envd, entry.path, host, entry.mode, summary).catch((error: unknown) => {
      // Gone or changed meanwhile, or a directory in the way on the host: that file, not the whole copy.
      if (skippable(error)) skip(entry.path, (error as Error).message);
      else throw error;
    }),
  );
  for (const { entry, host } of links) {
    const text = linkInside(entry, root, rootReal);
    if (text === null) skip(entry.path, `a symlink to ${entry.symlinkTarget ?? '?'}, outside what is copied`);
    else if (await placeLink(host, text)) summary.links++;
    else skip(entry.path, `${host} is a directory on the host`);
  }
  for (const { host, mode } of made.reverse()) await chmod(host, mode & 0o777);
}

/** Failures of one file; anything else (the sandbox gone, the host disk full) ends the copy. */
function skippable(error: unknown): boolean {
  if (isBrigError(error)) return error.code === 'BRIG_USAGE';
  return ['EISDIR', 'ENOTDIR', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '');
}

async function existing(path: string): Promise<Existing> {
  const stats = await stat(path).catch(() => null);
  if (!stats) return null;
  return stats.isDirectory() ? 'directory' : 'other';
}

/** True when made now; false when something is already there. */
async function makeDirectory(path: string): Promise<boolean> {
  try {
    await mkdir(path, { mode: 0o700 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** The file's bytes into a temporary file beside `host`, then renamed over it: a link at `host` is replaced, never written through. */
async function writeFile(envd: Envd, path: string, host: string, mode: number, summary: CopySummary): Promise<void> {
  const response = await envd.download(path).catch((error: unknown) => {
    throw error instanceof EnvdFailure ? error.toBrigError(`reading ${path} in the sandbox`) : error;
  });
  const temp = join(dirname(host), `.brig-cp-${randomBytes(8).toString('hex')}`);
  let size = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(response, count, createWriteStream(temp, { flags: 'wx', mode: 0o600 }));
    await chmod(temp, mode & 0o777);
    await rename(temp, host);
  } catch (error) {
    await rm(temp, { force: true });
    if ((error as NodeJS.ErrnoException).code === 'EISDIR') throw new BrigError('BRIG_USAGE', `${host} is a directory: a file cannot replace it`, 'remove it, or copy elsewhere');
    throw error;
  }
  summary.files++;
  summary.bytes += size;
}

/**
 * The link's text on the host, relative, when it points inside the copied
 * tree; null otherwise. envd reports a link's target resolved (realpath), so
 * it is matched against the tree's real path as well as the path asked for.
 */
function linkInside(entry: EntryInfo, root: string, rootReal: string): string | null {
  const raw = entry.symlinkTarget ?? '';
  const absolute = posix.isAbsolute(raw) ? posix.normalize(raw) : posix.resolve(posix.dirname(entry.path), raw);
  const under = (base: string): boolean => absolute === base || absolute.startsWith(`${base}/`);
  const inTree = under(rootReal) ? posix.join(root, posix.relative(rootReal, absolute)) : under(root) ? absolute : null;
  return inTree === null ? null : posix.relative(posix.dirname(entry.path), inTree) || '.';
}

/** A file or link already at `host` is replaced; a directory is not. */
async function placeLink(host: string, text: string): Promise<boolean> {
  const there = await lstat(host).catch(() => null);
  if (there?.isDirectory()) return false;
  if (there) await rm(host);
  await symlink(text, host);
  return true;
}
