/**
 * Small filesystem helpers for the store: JSON written atomically (a temp
 * file, fsync, rename) and trees removed even when their directories are
 * read-only (a layer's root is 0555 and an archive may make any of its
 * directories read-only too).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';

export function randomName(): string {
  return randomBytes(8).toString('hex');
}

/** Writes `value` as JSON to `path` so a reader sees the old file or the new one, never half of one; durable (synced) unless said otherwise. */
export async function writeJsonAtomic(path: string, value: unknown, options: { durable: boolean } = { durable: true }): Promise<void> {
  const temp = join(dirname(path), `.${randomName()}.tmp`);
  const handle = await fs.open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    if (options.durable) await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(temp, path);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}

/** The parsed JSON at `path`, or undefined when there is no file. */
export async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await fs.readFile(path, 'utf8')) as unknown;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Gives every directory under `root` (root included) u+rwx, never following a symlink, so rm can empty it. */
async function unlockDirs(root: string): Promise<void> {
  const info = await fs.lstat(root).catch(() => null);
  if (info === null || !info.isDirectory()) return;
  await fs.chmod(root, (info.mode & 0o777) | 0o700);
  for (const entry of await fs.readdir(root, { withFileTypes: true })) {
    if (entry.isDirectory()) await unlockDirs(join(root, entry.name));
  }
}

/** Removes a tree the store owns, read-only directories included; a missing one is fine. */
export async function removeTree(path: string): Promise<void> {
  await unlockDirs(path);
  await fs.rm(path, { recursive: true, force: true });
}

