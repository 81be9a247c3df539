import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { BrigError } from '../../protocol/index.ts';
import type { FilesystemPolicy, NetworkMode } from '../../policy/index.ts';
import { checkSource } from '../host/index.ts';
import type { MountStep } from './types.ts';

/**
 * The filesystem policy as mount steps, for every tier. Only what a policy
 * names is visible: system directories read-only, the workspace read-write,
 * fresh tmpfs for /tmp and the home. The protections below are not policy
 * fields: they hold whatever the policy says. Every bind source is checked
 * here (no link on its way: host/sources.ts), so a bad policy fails before
 * anything starts.
 */

/** /proc knobs that change the host kernel: read-only (Docker's readonlyPaths). */
const PROC_READ_ONLY = ['/proc/sys', '/proc/sysrq-trigger', '/proc/irq', '/proc/bus', '/proc/fs'];
/** /proc files that leak host memory, keys or timing: masked (Docker's maskedPaths). */
const PROC_MASKED = ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/latency_stats', '/proc/acpi', '/proc/scsi', '/proc/asound'];
/** Credentials and host secrets under /etc: masked in every jail. */
const ETC_SECRETS = [
  '/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-', '/etc/sudoers', '/etc/sudoers.d',
  '/etc/ssh', '/etc/ssl/private', '/etc/security/opasswd', '/etc/krb5.keytab', '/etc/credstore',
  '/etc/credstore.encrypted', '/etc/NetworkManager/system-connections', '/etc/wireguard',
];

export interface MountInputs {
  /**
   * The root is an image's: none of the host's system directories, /etc or
   * accounts are in it, so nothing of theirs needs masking; the policy's own
   * binds and tmpfs still apply.
   */
  image: boolean;
  filesystem: FilesystemPolicy;
  /** The sandbox's home: a private tmpfs, unless it lies in the workspace. */
  home: string;
  /** Extra private tmp dir the caller's environment names ($TMPDIR), if it exists. */
  tmpdir: string | null;
  /** Tools, bound read-only: their real file (no links in its path) at the path the sandbox runs them by. */
  toolPaths: Array<{ source: string; dest: string }>;
  network: NetworkMode;
  /**
   * The sandbox keeps host uid 0 (a root-owned workspace): every /etc entry
   * that is not world-readable is masked too, since owner access would open it.
   */
  hostRoot: boolean;
  /** The sandbox's /etc/passwd and /etc/group (not for an image, which keeps its own). */
  passwd: string;
  group: string;
  /** The sandbox's host name, for its own /etc/hostname and /etc/hosts. */
  hostname: string;
}

type Ranked = { path: string; rank: number; step: MountStep };

// Within one depth: fresh filesystems first, then binds, then masks on top.
const RANK = { tmpfs: 0, bind: 1, mask: 2 } as const;

export function mountSteps(input: MountInputs): MountStep[] {
  const { filesystem } = input;
  const steps: MountStep[] = [];

  for (const path of input.image ? [] : filesystem.system) {
    const stats = lstatOrNull(path);
    if (!stats) continue;
    if (stats.isSymbolicLink()) steps.push({ kind: 'symlink', target: path, linkTo: readlinkSync(path) });
    else steps.push(checkedBind(path, path, false, 'filesystem.system'));
  }
  steps.push({ kind: 'proc', target: '/proc' }, { kind: 'dev', target: '/dev' });
  for (const path of PROC_READ_ONLY) if (lstatOrNull(path)) steps.push({ kind: 'proc-readonly', target: path });
  for (const path of PROC_MASKED) steps.push(...mask(path, true));

  const ranked: Ranked[] = [];
  const secrets = input.image ? [] : input.hostRoot ? [...ETC_SECRETS, ...unreadableEntries('/etc')] : ETC_SECRETS;
  for (const path of new Set(secrets)) ranked.push(...mask(path, false).map((step) => ({ path, rank: RANK.mask, step })));
  const sizeBytes = filesystem.tmpfsSizeMiB * 1024 * 1024;
  const workspaceInside = filesystem.workspace === null ? null : (filesystem.workspaceTarget ?? filesystem.workspace);
  // The home is brig's (a private tmpfs, or the kept home) unless it lies in the workspace's place.
  // An image's home is its own, kept in its copy-on-write root like the rest.
  const privateHome = input.image ? null : workspaceInside === null || !within(input.home, workspaceInside) ? input.home : null;
  const guard = destinationGuard([...secrets, ...filesystem.hidden], [privateHome, input.tmpdir]);
  // Shared memory every user may use, as on any Linux (and Docker): /dev's own /dev/shm is a plain directory
  // of the jail's uid, which in a daemon sandbox is root, and then a user's Python multiprocessing or a
  // Chromium cannot make a semaphore. On the sandbox's memory, capped as /tmp is.
  ranked.push({ path: '/dev/shm', rank: RANK.tmpfs, step: { kind: 'tmpfs', target: '/dev/shm', sizeBytes, mode: 0o1777 } });
  // A home inside the workspace's place is the workspace's (an E2B sandbox's /home/user): no tmpfs over it.
  if (privateHome !== null) {
    const kept = filesystem.home;
    ranked.push(
      kept === null
        ? { path: input.home, rank: RANK.tmpfs, step: { kind: 'tmpfs', target: input.home, sizeBytes, mode: 0o700 } }
        : { path: input.home, rank: RANK.bind, step: checkedBind(kept, input.home, true, 'filesystem.home') },
    );
  }
  // Shared scratch space keeps its usual sticky, world-writable mode.
  for (const path of new Set([...filesystem.tmpfs, ...(input.tmpdir ? [input.tmpdir] : [])])) {
    if (path !== input.home) ranked.push({ path, rank: RANK.tmpfs, step: { kind: 'tmpfs', target: path, sizeBytes, mode: 0o1777 } });
  }
  const bind = (source: string, dest: string, writable: boolean, field: string): Ranked => {
    guard(dest, field);
    return { path: dest, rank: RANK.bind, step: checkedBind(source, dest, writable, field) };
  };
  for (const path of filesystem.readOnly) ranked.push(bind(path, path, false, 'filesystem.readOnly'));
  for (const tool of input.toolPaths) ranked.push(bind(tool.source, tool.dest, false, 'tools'));
  for (const path of filesystem.readWrite) ranked.push(bind(path, path, true, 'filesystem.readWrite'));
  if (filesystem.workspace !== null && workspaceInside !== null) {
    if (input.image) {
      guard(workspaceInside, 'filesystem.workspace');
      checkSource(filesystem.workspace, 'filesystem.workspace');
      ranked.push({ path: workspaceInside, rank: RANK.bind, step: { kind: 'mapped-bind', source: filesystem.workspace, target: workspaceInside, field: 'filesystem.workspace' } });
    } else ranked.push(bind(filesystem.workspace, workspaceInside, true, 'filesystem.workspace'));
  }
  // Hidden paths and the resolver link name the host's files; an image has its own.
  if (!input.image) for (const path of filesystem.hidden) ranked.push(...mask(path, false).map((step) => ({ path, rank: RANK.mask, step })));
  if (input.network === 'host' && !input.image) ranked.push(...resolverSteps());

  ranked.sort((a, b) => depth(a.path) - depth(b.path) || a.rank - b.rank);
  for (const entry of ranked) steps.push(entry.step);
  // After /etc is bound: the sandbox's own user database replaces the host's (an image keeps its own).
  if (!input.image) steps.push(file('/etc/passwd', input.passwd), file('/etc/group', input.group));
  steps.push(...identityFiles(input));
  return steps;
}

/** A bind whose source opens without following any link (checked now, opened again at launch). */
function checkedBind(source: string, target: string, writable: boolean, field: string): MountStep {
  checkSource(source, field);
  return { kind: 'bind', source, target, writable, field };
}

/** Readable by every user of the sandbox: its own data files, never the host's. */
function file(target: string, data: string): MountStep {
  return { kind: 'file', target, data, mode: 0o644 };
}

/**
 * The sandbox's own /etc/hostname and /etc/hosts, naming its host name, not
 * the host's. With the host's network the host's /etc/hosts stays: its
 * names are part of the network the policy opened on purpose.
 */
function identityFiles(input: MountInputs): MountStep[] {
  const steps: MountStep[] = [];
  // An image's /etc is its own: both files are the sandbox's whatever the host has.
  const exists = (path: string): boolean => input.image || lstatOrNull(path)?.isFile() === true;
  if (exists('/etc/hostname')) steps.push(file('/etc/hostname', `${input.hostname}\n`));
  // An image's own resolv.conf names its builder's resolver: with the host's network, the host's is the one that answers.
  if (input.image && input.network === 'host') {
    const resolver = hostResolver();
    if (resolver !== null) steps.push(file('/etc/resolv.conf', resolver));
  }
  if (input.network !== 'host' && exists('/etc/hosts')) {
    steps.push(file('/etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${input.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`));
  }
  return steps;
}

/**
 * A bind may not land on what brig keeps from the jail: a masked path or
 * anything under one, /proc and /dev (bubblewrap's own), the private home or
 * $TMPDIR tmpfs itself (a bind there would replace it), or /. Under them is
 * fine: that is how a user hands the jail one of their own files.
 */
function destinationGuard(masks: string[], privates: Array<string | null>): (dest: string, field: string) => void {
  const covered = [...masks, '/proc', '/dev'];
  return (dest, field) => {
    const mask = covered.find((path) => within(dest, path));
    const what = dest === '/' ? 'the root of the jail' : mask ? `${mask}, which brig masks` : privates.includes(dest) ? 'a private directory of the jail (its home or $TMPDIR)' : null;
    if (what) {
      throw new BrigError('BRIG_BIND_MASKED', `${field}: a bind at ${dest} would land on ${what}`, 'bind the directory at another path, or drop it from the policy');
    }
  };
}

/** An existing path made invisible: an empty read-only directory, or an empty file. */
function mask(path: string, proc: boolean): MountStep[] {
  const stats = lstatOrNull(path);
  if (!stats) return [];
  return [{ kind: 'mask', target: path, type: stats.isDirectory() ? 'dir' : 'file', proc }];
}

/** On hosts where /etc/resolv.conf links into /run (systemd-resolved), the sandbox needs the target too. */
function resolverSteps(): Ranked[] {
  const link = lstatOrNull('/etc/resolv.conf');
  if (!link?.isSymbolicLink()) return [];
  let target: string;
  try {
    target = realpathSync('/etc/resolv.conf');
  } catch {
    return [];
  }
  if (target.startsWith('/etc/')) return [];
  return [{ path: target, rank: RANK.bind, step: checkedBind(target, target, false, 'network (resolv.conf)') }];
}

/** The host's resolver configuration, as text (bounded: it is a small file); null when there is none. */
function hostResolver(): string | null {
  try {
    const text = readFileSync('/etc/resolv.conf', 'utf8');
    return text.length <= 64 * 1024 ? text : null;
  } catch {
    return null;
  }
}

/** Entries under dir that "other" may not read, not descending into them. */
function unreadableEntries(dir: string): string[] {
  const found: string[] = [];
  const walk = (current: string): void => {
    let names: string[];
    try {
      names = readdirSync(current);
    } catch {
      return;
    }
    for (const name of names) {
      const path = `${current}/${name}`;
      const stats = lstatOrNull(path);
      if (!stats || stats.isSymbolicLink()) continue;
      if ((stats.mode & 0o004) === 0) found.push(path);
      else if (stats.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return found;
}

/** Whether `path` is `dir` or lies under it. */
export function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

function depth(path: string): number {
  let count = 0;
  for (let current = path; current !== '/' && current !== '.'; current = dirname(current)) count++;
  return count;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}
