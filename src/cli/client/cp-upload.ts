import { createReadStream, type Stats } from 'node:fs';
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { posix } from 'node:path';
import { BrigError, type EntryInfo } from '../../protocol/index.ts';
import { ALL_THE_WAY, inParallel, landing, missing, PARALLEL_FILES, type CopySummary, type Existing } from './cp-rules.ts';
import { EnvdFailure, exitCodeOf, type Envd } from './envd.ts';

/**
 * Host → sandbox. Files go through envd's /files upload, directories through
 * MakeDir; what envd has no call for (permission bits, symlinks) is done by
 * `chmod` and `ln` run inside, with argv, never a shell, and batched. The
 * host side is read without following links below SRC.
 */

interface HostEntry {
  /** Relative to SRC, with /. */
  relative: string;
  kind: 'directory' | 'file' | 'link' | 'other';
  mode: number;
  size: number;
  linkTarget?: string;
}

export async function copyToSandbox(envd: Envd, from: string, to: string, summary: CopySummary): Promise<void> {
  // SRC itself is followed when it is a link: the user named what it points to.
  const top = await stat(from).catch(() => null);
  if (!top) throw missing(from, 'on the host');
  const directory = top.isDirectory();
  if (!directory && !top.isFile()) throw new BrigError('BRIG_USAGE', `${from} is not a regular file or a directory`, 'sockets, FIFOs and devices cannot be copied');
  const contentsOnly = from === '.' || from.endsWith('/.');
  const target = landing({ name: basename(resolve(from)), directory, contentsOnly }, to, await existing(envd, to), posix.join);
  if (await existing(envd, posix.dirname(target)) !== 'directory') throw missing(posix.dirname(target), 'in the sandbox');

  if (!directory) {
    await upload(envd, from, target, top.size, summary);
    const written = await envd.stat(target);
    if (written) await setModes(envd, [{ path: written.path, mode: top.mode & 0o777, directory: false }], new Map([[written.path, written.mode]]), summary);
    return;
  }
  const entries = await walk(from);
  for (const entry of entries.filter((item) => item.kind === 'other')) summary.skipped.push({ path: join(from, entry.relative), reason: 'not a regular file (a socket, FIFO or device)' });
  await makeDirectory(envd, target);
  // Absolute from here on: ListDir answers absolute paths, and modes are matched on them.
  const root = (await envd.stat(target))?.path ?? target;
  const path = (entry: HostEntry): string => (entry.relative === '' ? root : posix.join(root, entry.relative));
  // Directories first, in walk order (a parent before its children).
  for (const entry of entries.filter((item) => item.kind === 'directory' && item.relative !== '')) {
    await makeDirectory(envd, path(entry));
    summary.directories++;
  }
  await inParallel(
    entries.filter((entry) => entry.kind === 'file'),
    PARALLEL_FILES,
    (entry) => upload(envd, join(from, entry.relative), path(entry), entry.size, summary),
  );
  for (const entry of entries.filter((item) => item.kind === 'link')) {
    // -n: a link to a directory already there is replaced, not followed into.
    if (await run(envd, ['ln', '-sfn', '--', entry.linkTarget ?? '', path(entry)], summary, path(entry))) summary.links++;
  }
  // What the bits are now, in one call: only those that differ get a chmod.
  const { entries: listed } = await envd.unary<{ entries: EntryInfo[] }>('filesystem.Filesystem/ListDir', { path: root, depth: ALL_THE_WAY });
  const current = new Map(listed.map((entry) => [entry.path, entry.mode]));
  // SRC/. into an existing directory: that directory keeps its own bits.
  const wanted = entries.filter((entry) => (entry.kind === 'file' || entry.kind === 'directory') && !(contentsOnly && entry.relative === ''));
  await setModes(envd, wanted.map((entry) => ({ path: path(entry), mode: entry.mode, directory: entry.kind === 'directory' })), current, summary);
}

/** MakeDir, where a directory already there is fine (a copy merges into it). */
async function makeDirectory(envd: Envd, path: string): Promise<void> {
  await envd.unary('filesystem.Filesystem/MakeDir', { path }).catch((error: unknown) => {
    if (!(error instanceof EnvdFailure && error.connectCode === 'already_exists')) throw error instanceof EnvdFailure ? error.toBrigError(`making ${path} in the sandbox`) : error;
  });
}

async function existing(envd: Envd, path: string): Promise<Existing> {
  let entry = await envd.stat(path);
  // A link at the destination counts as what it points to, as cp and docker cp have it.
  if (entry?.type === 'FILE_TYPE_SYMLINK' && entry.symlinkTarget) entry = await envd.stat(entry.symlinkTarget);
  if (!entry) return null;
  return entry.type === 'FILE_TYPE_DIRECTORY' ? 'directory' : 'other';
}

async function upload(envd: Envd, from: string, to: string, size: number, summary: CopySummary): Promise<void> {
  await envd.upload(to, createReadStream(from)).catch((error: unknown) => {
    throw error instanceof EnvdFailure ? error.toBrigError(`writing ${to} in the sandbox`) : error;
  });
  summary.files++;
  summary.bytes += size;
}

/** SRC's tree, SRC itself first as '', parents before children, names sorted; links are not followed. */
async function walk(root: string): Promise<HostEntry[]> {
  const entries: HostEntry[] = [];
  const visit = async (relative: string, stats: Stats): Promise<void> => {
    // rwx only: a setuid bit would be set on a file a host uid of the sandbox's owns.
    const mode = stats.mode & 0o777;
    if (stats.isSymbolicLink()) entries.push({ relative, kind: 'link', mode, size: 0, linkTarget: await readlink(join(root, relative)) });
    else if (stats.isFile()) entries.push({ relative, kind: 'file', mode, size: stats.size });
    else if (stats.isDirectory()) {
      entries.push({ relative, kind: 'directory', mode, size: 0 });
      const names = (await readdir(join(root, relative))).sort();
      for (const name of names) await visit(relative === '' ? name : `${relative}/${name}`, await lstat(join(root, relative, name)));
    } else entries.push({ relative, kind: 'other', mode, size: 0 });
  };
  await visit('', await stat(root));
  return entries;
}

/**
 * Permission bits as they are on the host, for the paths whose bits differ
 * (`current`; a path not there is left alone): one `chmod` per mode, at most
 * a few hundred paths each, so a tree takes a handful of processes. Files
 * first, then directories, those the owner can still enter first and the
 * deepest first: a directory closed to its owner is closed last.
 */
async function setModes(envd: Envd, items: { path: string; mode: number; directory: boolean }[], current: Map<string, number>, summary: CopySummary): Promise<void> {
  const depth = (path: string): number => path.split('/').length;
  const changes = items.filter((item) => current.has(item.path) && current.get(item.path) !== item.mode);
  const groups = (directory: boolean): [number, string[]][] => {
    const byMode = new Map<number, string[]>();
    const chosen = changes.filter((item) => item.directory === directory).sort((a, b) => depth(b.path) - depth(a.path));
    for (const item of chosen) byMode.set(item.mode, [...(byMode.get(item.mode) ?? []), item.path]);
    return [...byMode].sort(([a], [b]) => (b & 0o100) - (a & 0o100));
  };
  for (const [mode, paths] of [...groups(false), ...groups(true)]) {
    for (let start = 0; start < paths.length; start += 200) {
      const batch = paths.slice(start, start + 200);
      await run(envd, ['chmod', mode.toString(8), '--', ...batch], summary, batch.length === 1 ? (batch[0] ?? '') : `${batch.length} paths`);
    }
  }
}

/** A helper program inside the sandbox; a failure is a skipped item with its stderr, not the end of the copy. */
async function run(envd: Envd, argv: string[], summary: CopySummary, what: string): Promise<boolean> {
  const [cmd = '', ...args] = argv;
  let stderr = '';
  let code = -1;
  for await (const event of envd.start({ process: { cmd, args }, stdin: false })) {
    if ('data' in event && 'stderr' in event.data) stderr += Buffer.from(event.data.stderr, 'base64').toString();
    if ('end' in event) code = exitCodeOf(event.end);
  }
  if (code !== 0) summary.skipped.push({ path: what, reason: `${cmd} failed: ${stderr.trim() || `exit ${code}`}` });
  return code === 0;
}
