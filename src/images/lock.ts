/**
 * The store's write lock: an flock on <store>/lock, so a CLI and a daemon
 * (or two CLIs) never change one store at once. Readers do not lock: every
 * file a reader looks at is replaced atomically (images.json) or appears
 * whole (a layer exists once its .json does).
 *
 * flock locks belong to an open file, so two opens in one process exclude
 * each other too; the store makes sure one call path takes it once.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import brigSpawn from 'brig-spawn';

/** How long to wait between tries while another process writes (lockExclusive does not block, so the event loop keeps running). */
const RETRY_MS = 50;

export const LOCK_NAME = 'lock';

/** Runs `work` while this process holds the store's write lock, waiting for another holder to finish. */
export async function withStoreLock<T>(storeDir: string, work: () => Promise<T>): Promise<T> {
  const fd = openSync(join(storeDir, LOCK_NAME), 'a', 0o600);
  try {
    while (!brigSpawn.lockExclusive(fd)) await sleep(RETRY_MS);
    return await work();
  } finally {
    // closing the file releases the lock
    closeSync(fd);
  }
}

/** Runs `work` only when the lock is free right now; false (and nothing run) when another process holds it. */
export async function ifStoreUnlocked(storeDir: string, work: () => Promise<void>): Promise<boolean> {
  const fd = openSync(join(storeDir, LOCK_NAME), 'a', 0o600);
  try {
    if (!brigSpawn.lockExclusive(fd)) return false;
    await work();
    return true;
  } finally {
    closeSync(fd);
  }
}
