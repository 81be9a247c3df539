import { BrigError } from '../../protocol/index.ts';

/** What both directions of `brig cp` share: docker cp's rules for where a copy lands, and the summary. */

/** What a copy did, for --json and the warnings. */
export interface CopySummary {
  files: number;
  /** Below SRC: the directory SRC becomes is not counted. */
  directories: number;
  links: number;
  bytes: number;
  skipped: { path: string; reason: string }[];
}

/** What exists at the destination, as far as the rules care. */
export type Existing = 'directory' | 'other' | null;

/**
 * Where the copy lands, by docker cp's rules: the path of the file, or of the
 * directory SRC becomes. Throws BRIG_USAGE for the combinations that cannot work.
 */
export function landing(source: { name: string; directory: boolean; contentsOnly: boolean }, destination: string, existing: Existing, join: (a: string, b: string) => string): string {
  if (existing === 'directory') return source.directory && source.contentsOnly ? destination : join(destination, source.name);
  if (existing === 'other') {
    if (source.directory) throw new BrigError('BRIG_USAGE', `cannot copy a directory onto the file ${destination}`, 'name a directory, or a path that does not exist yet');
    return destination;
  }
  if (destination.endsWith('/')) throw new BrigError('BRIG_USAGE', `the directory ${destination} does not exist`, 'create it first, or leave out the trailing /');
  return destination;
}

export function missing(path: string, where: string): BrigError {
  return new BrigError('BRIG_USAGE', `${path}: no such file or directory ${where}`, where === 'in the sandbox' ? 'relative sandbox paths start at /home/user; `brig exec NAME -- ls -la DIR` shows what is there' : 'check the path');
}

/** Runs `work` on every item, at most `limit` at a time: many small files go faster than one by one. */
export async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Files copied at once: enough to hide each request's round trip, few enough not to crowd envd. */
export const PARALLEL_FILES = 8;

/** ListDir's depth is a uint32: this is "all the way down". */
export const ALL_THE_WAY = 4_294_967_295;
