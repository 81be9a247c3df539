/**
 * The build cache: <store>/build-cache.json maps a step's key (sha256 of its
 * parent's key, its instruction after substitution and, for COPY and ADD,
 * the hash of what it copies) to the layer the step made, or to null for a
 * step that needed none. Written atomically after each step, so a failed or
 * interrupted build keeps what the steps before it made. An entry whose layer
 * the store no longer holds (pruned) is a miss.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readJson, writeJsonAtomic } from './files.ts';
import type { ImageStore } from './store.ts';

export interface CacheEntry {
  /** The layer's digest, or null when the step changed no file. */
  layer: string | null;
  created: string;
}

interface CacheFile {
  version: 1;
  entries: Record<string, CacheEntry>;
}

/** The key of a step: its parent's key and what defines the step, hashed. */
export function stepKey(parent: string, ...parts: string[]): string {
  const hash = createHash('sha256').update(parent);
  for (const part of parts) hash.update('\0').update(part);
  return hash.digest('hex');
}

export class BuildCache {
  private readonly file: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: ImageStore) {
    this.file = join(store.dir, 'build-cache.json');
  }

  async get(key: string): Promise<CacheEntry | undefined> {
    const entry = (await this.read()).entries[key];
    if (entry === undefined) return undefined;
    if (entry.layer !== null && (await this.store.layer(entry.layer)) === undefined) return undefined;
    return entry;
  }

  put(key: string, layer: string | null): Promise<void> {
    const next = this.queue.then(async () => {
      const cache = await this.read();
      cache.entries[key] = { layer, created: new Date().toISOString() };
      await writeJsonAtomic(this.file, cache);
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async read(): Promise<CacheFile> {
    const cache = (await readJson(this.file)) as CacheFile | undefined;
    return cache?.version === 1 && typeof cache.entries === 'object' ? cache : { version: 1, entries: {} };
  }
}
