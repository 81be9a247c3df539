import { existsSync, readFileSync, statSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import type { IdentityPolicy, Policy } from '../../policy/index.ts';
import { imageUser } from './image.ts';
import type { ImageRoot, SandboxIdentity } from './types.ts';

/**
 * Who the sandbox is, outside and inside.
 *
 * Outside, the jail must never act as host root when that can be avoided: a
 * process whose host uid is 0 keeps owner access to every root-owned file it
 * can see, user namespace or not. So when brig runs as root, the jail runs as
 * the owner of the workspace. Only a root-owned workspace keeps host uid 0 (it
 * must stay writable); then mounts.ts masks what that uid could still read.
 */
export interface Caller {
  uid: number;
  gid: number;
  home: string;
}

export function jailIdentity(policy: IdentityPolicy, caller: Caller, workspace: string | null): SandboxIdentity {
  let hostUid = caller.uid;
  let hostGid = caller.gid;
  if (caller.uid === 0 && workspace !== null) {
    const owner = statSync(workspace);
    hostUid = owner.uid;
    hostGid = owner.gid;
  }
  const uid = policy.uid ?? hostUid;
  const gid = policy.gid ?? hostGid;
  const entry = passwdEntry(uid);
  const user = policy.user ?? entry?.name ?? (uid === 0 ? 'root' : 'user');
  const home = policy.home ?? (uid === caller.uid && hostUid === caller.uid ? caller.home : (entry?.home ?? (uid === 0 ? '/root' : `/home/${user}`)));
  const groupName = groupEntryName(gid) ?? (gid === 0 ? 'root' : user);
  const shell = existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh';
  const users = [`${user}:x:${uid}:${gid}:${user}:${home}:${shell}`];
  const groups = [`${groupName}:x:${gid}:`];
  if (uid !== 0) users.unshift('root:x:0:0:root:/root:/usr/sbin/nologin');
  if (gid !== 0) groups.unshift('root:x:0:');
  users.push('nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin');
  groups.push('nogroup:x:65534:');
  return {
    hostUid,
    hostGid,
    dropPrivileges: caller.uid === 0 && hostUid !== 0,
    uid,
    gid,
    user,
    home,
    shell,
    passwd: users.join('\n') + '\n',
    group: groups.join('\n') + '\n',
  };
}

function passwdEntry(uid: number): { name: string; home: string } | undefined {
  const fields = findLine('/etc/passwd', 2, uid);
  return fields && { name: fields[0] ?? 'user', home: fields[5] ?? '/' };
}

function groupEntryName(gid: number): string | undefined {
  return findLine('/etc/group', 2, gid)?.[0];
}

function findLine(file: string, idColumn: number, id: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[idColumn] === String(id)) return fields;
  }
  return undefined;
}

/**
 * Who an image sandbox is: the policy's uid (or user, by the image's own
 * /etc/passwd), root by default; on the host, that id in the sandbox's range.
 * The image's passwd and group stay as they are.
 */
export function imageIdentity(policy: Policy['identity'], image: ImageRoot): SandboxIdentity {
  const found = imageUser(image.layers, policy.uid ?? policy.user ?? 0);
  const uid = policy.uid ?? found?.uid ?? 0;
  const gid = policy.gid ?? found?.gid ?? uid;
  if (uid >= image.idCount || gid >= image.idCount) {
    throw new BrigError('BRIG_POLICY_INVALID', `identity: uid ${uid} / gid ${gid} is outside the image jail's ids (0-${image.idCount - 1})`, 'give a uid and gid below 65536');
  }
  const user = found?.name ?? policy.user ?? (uid === 0 ? 'root' : String(uid));
  return {
    hostUid: image.idBase + uid,
    hostGid: image.idBase + gid,
    // The tier drops to the range itself, once it has built the root.
    dropPrivileges: false,
    uid,
    gid,
    user,
    home: policy.home ?? found?.home ?? (uid === 0 ? '/root' : `/home/${user}`),
    shell: found?.shell ?? '/bin/sh',
    passwd: '',
    group: '',
  };
}
