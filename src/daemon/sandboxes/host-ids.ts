import { readFileSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import { IMAGE_ID_COUNT, imageIdBase } from '../../drivers/index.ts';

/**
 * The host uid (and gid, the same number) each sandbox's files and jail
 * belong to when the daemon runs as root: allocated, recorded in the store
 * with the sandbox, freed with its record. Never one a host user or group
 * has, nor one inside a subordinate range (/etc/subuid, /etc/subgid) that
 * rootless containers map their users to: a sandbox must not own what some
 * other identity on the host owns.
 */

/** Where sandbox ids are taken from: [HOST_ID_FIRST, HOST_ID_FIRST + HOST_ID_COUNT). */
export const HOST_ID_FIRST = 200_000;
export const HOST_ID_COUNT = 100_000;

/** The host's account files, as text (missing ones as ''). */
export interface HostAccounts {
  passwd: string;
  group: string;
  subuid: string;
  subgid: string;
}

export function readHostAccounts(root = ''): HostAccounts {
  const read = (file: string): string => {
    try {
      return readFileSync(`${root}${file}`, 'utf8');
    } catch {
      return '';
    }
  };
  return { passwd: read('/etc/passwd'), group: read('/etc/group'), subuid: read('/etc/subuid'), subgid: read('/etc/subgid') };
}

/** [first, last] ranges of ids the host's accounts use. */
export function usedHostIds(accounts: HostAccounts): Array<[number, number]> {
  const used: Array<[number, number]> = [];
  // name:x:ID:… — the third field of passwd and group.
  for (const text of [accounts.passwd, accounts.group]) {
    for (const line of text.split('\n')) {
      const id = Number(line.split(':')[2]);
      if (line.trim() !== '' && !line.startsWith('#') && Number.isSafeInteger(id) && id >= 0) used.push([id, id]);
    }
  }
  // name:START:COUNT — a range, owner's name or uid first.
  for (const text of [accounts.subuid, accounts.subgid]) {
    for (const line of text.split('\n')) {
      const [, start, count] = line.trim().split(':').map(Number);
      if (!line.startsWith('#') && Number.isSafeInteger(start) && Number.isSafeInteger(count) && (count ?? 0) > 0) used.push([start ?? 0, (start ?? 0) + (count ?? 0) - 1]);
    }
  }
  return used;
}

/**
 * The lowest id of the range that no other sandbox holds (`taken`) and no
 * host account uses. BRIG_NO_HOST_ID when there is none.
 */
export function pickHostId(taken: ReadonlySet<number>, used: ReadonlyArray<[number, number]>, first = HOST_ID_FIRST, count = HOST_ID_COUNT): number {
  const last = first + count - 1;
  for (let id = first; id <= last; id++) {
    if (taken.has(id)) continue;
    // Jump past a used range in one step (a subordinate range may hold 65 536 ids).
    const range = used.find(([low, high]) => id >= low && id <= high);
    if (range) {
      id = range[1];
      continue;
    }
    return id;
  }
  throw new BrigError('BRIG_NO_HOST_ID', `no host uid is free for another sandbox in ${first}-${last} (${taken.size} held by sandboxes, the rest used by host accounts or /etc/subuid and /etc/subgid ranges)`, 'remove stopped sandboxes (brig rm, brig prune), or free ids in that range');
}

/**
 * The host ids an image sandbox's ids 0 … IMAGE_ID_COUNT-1 map to: the range
 * whose slot is its host id's place in the table, so two sandboxes never
 * share one. Refused (BRIG_NO_HOST_ID) when a host account or subordinate
 * range overlaps it, or it would pass the largest id.
 */
export function idRangeOf(hostId: number, used: ReadonlyArray<[number, number]>): number {
  const base = hostId < HOST_ID_FIRST ? null : imageIdBase(hostId - HOST_ID_FIRST);
  if (base === null) {
    throw new BrigError('BRIG_NO_HOST_ID', `sandbox host id ${hostId} has no id range for an image sandbox (it would pass the largest uid)`, 'remove stopped sandboxes (brig rm, brig prune) so lower ids are free');
  }
  const last = base + IMAGE_ID_COUNT - 1;
  const overlap = used.find(([low, high]) => low <= last && high >= base);
  if (overlap) {
    throw new BrigError('BRIG_NO_HOST_ID', `the ids ${base}-${last} an image sandbox would map to overlap host ids ${overlap[0]}-${overlap[1]} (an account, or a range in /etc/subuid or /etc/subgid)`, 'free that range on the host, or remove stopped sandboxes so another range is used');
  }
  return base;
}
