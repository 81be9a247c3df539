import { lstatSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import type { SandboxIdentity, SandboxPlan } from './types.ts';

/**
 * For a tier that maps no ids (gVisor's gofer, the VM's virtiofsd: a host
 * root process that gives each file the creator's ids inside): a file the
 * sandbox writes in a writable bind belongs on the host to its uid inside.
 * So the workspace keeps its host owner only when the inside ids are the
 * host ids. Returns what would go wrong, for the tier to refuse with; null
 * when nothing does.
 */
export function unmappedOwnershipProblem(plan: SandboxPlan): string | null {
  const { identity } = plan;
  if (identity.uid === identity.hostUid && identity.gid === identity.hostGid) return null;
  const writable = plan.mounts.find((step) => step.kind === 'bind' && step.writable);
  if (!writable || writable.kind !== 'bind') return null;
  return `identity: uid ${identity.uid}:${identity.gid} inside with a writable bind (${writable.field}: ${writable.source}); this tier maps no ids, so it would leave its files owned by ${identity.uid}:${identity.gid} on the host, not by ${identity.hostUid}:${identity.hostGid}`;
}

/**
 * An id-mapped bind (an image sandbox's workspace) on a tier that maps no
 * ids is a plain bind, which is the same thing only when the sandbox's user
 * owns the directory. What would go wrong, for the tier to refuse with; null
 * when nothing does.
 */
export function unmappedBindProblem(source: string, identity: SandboxIdentity, field: string): string | null {
  let owner: { uid: number; gid: number };
  try {
    owner = lstatSync(source);
  } catch {
    throw new BrigError('BRIG_PATH_MISSING', `${field}: ${source} does not exist on the host`, 'create it first, or remove it from the policy (a sandbox can only be given paths that exist)');
  }
  if (owner.uid === identity.uid && owner.gid === identity.gid) return null;
  return `${field}: ${source} belongs to ${owner.uid}:${owner.gid} on the host, and the sandbox's user is ${identity.uid}:${identity.gid}; this tier maps no ids, so it would write files there as ${identity.uid}:${identity.gid}`;
}
