import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';

/**
 * Bytes a directory tree takes on disk (its files' blocks; links are not
 * followed), walked without blocking the daemon: a large workspace is many
 * thousands of lstat calls, and a synchronous walk would hold every other
 * request up meanwhile. Entries that vanish while counting are skipped.
 */
export async function diskUsage(path: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = `${dir}/${entry.name}`;
      try {
        const stats = await lstat(full);
        total += stats.blocks * 512;
        if (stats.isDirectory()) await walk(full);
      } catch {
        // Gone while counting.
      }
    }
  };
  await walk(path);
  return total;
}
