import { statSync } from 'node:fs';
import { HOST_ID_COUNT, HOST_ID_FIRST, pickHostId, readHostAccounts, usedHostIds } from './host-ids.ts';
import type { Store } from './types.ts';

/**
 * The host uid/gid of a sandbox, as recorded in the store; claimed now when
 * none is. A workspace from a brig that hashed ids (no record) keeps the
 * owner it has, when no other sandbox holds that id and no host account uses it.
 */
export function hostOwnerOf(store: Store, sandbox: string, workspace: string): { uid: number; gid: number } {
  const uid = store.hostId(sandbox) ?? store.claimHostId(sandbox, (taken) => {
    const used = usedHostIds(readHostAccounts());
    const current = currentOwner(workspace);
    if (current !== null && current >= HOST_ID_FIRST && current < HOST_ID_FIRST + HOST_ID_COUNT && !taken.has(current) && !used.some(([low, high]) => current >= low && current <= high)) return current;
    return pickHostId(taken, used);
  });
  return { uid, gid: uid };
}

function currentOwner(workspace: string): number | null {
  try {
    return statSync(workspace).uid;
  } catch {
    return null;
  }
}
