import { lstatSync, readdirSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { BrigError } from '../../protocol/index.ts';
import type { FilesystemPolicy, NetworkMode } from '../../policy/index.ts';
import type { fdTable } from './sources.ts';

type FdTable = ReturnType<typeof fdTable>;

/**
 * The filesystem policy as bubblewrap mount steps. Only what a policy names
 * is visible: system directories read-only, the workspace read-write, fresh
 * tmpfs for /tmp and the home. The protections below are not policy fields:
 * they hold whatever the policy says.
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
  filesystem: FilesystemPolicy;
  /** The jail's home: a private tmpfs, unless it lies in the workspace. */
  home: string;
  /** Extra private tmp dir the caller's environment names ($TMPDIR), if it exists. */
  tmpdir: string | null;
  /** Tools, bound read-only: their real file (no links in its path) at the path the jail runs them by. */
  toolPaths: Array<{ source: string; dest: string }>;
  network: NetworkMode;
  /**
   * The jail keeps host uid 0 (a root-owned workspace): every /etc entry that
   * is not world-readable is masked too, since owner access would open it.
   */
  hostRoot: boolean;
  /** File descriptors carrying the jail's /etc/passwd and /etc/group. */
  passwdFd: number;
  groupFd: number;
  /** The jail's host name, for its own /etc/hostname and /etc/hosts. */
  hostname: string;
  /** Bind sources and data go to bubblewrap on fds (sources.ts): these return the fd's number. */
  fds: Pick<FdTable, 'bind' | 'data'>;
}

type Step = { path: string; rank: number; args: string[] };

// Within one depth: fresh filesystems first, then binds, then masks on top.
const RANK = { tmpfs: 0, bind: 1, mask: 2 } as const;

export function mountArgs(input: MountInputs): string[] {
  const { filesystem, fds } = input;
  const args: string[] = [];

  for (const path of filesystem.system) {
    const stats = lstatOrNull(path);
    if (!stats) continue;
    if (stats.isSymbolicLink()) args.push('--symlink', readlinkSync(path), path);
    else args.push('--ro-bind-fd', fds.bind(path, 'filesystem.system'), path);
  }
  args.push('--proc', '/proc', '--dev', '/dev');
  for (const path of PROC_READ_ONLY) if (lstatOrNull(path)) args.push('--ro-bind', path, path);
  for (const path of PROC_MASKED) args.push(...maskArgs(path));

  const steps: Step[] = [];
  const secrets = input.hostRoot ? [...ETC_SECRETS, ...unreadableEntries('/etc')] : ETC_SECRETS;
  for (const path of new Set(secrets)) steps.push({ path, rank: RANK.mask, args: maskArgs(path) });
  const size = String(filesystem.tmpfsSizeMiB * 1024 * 1024);
  const workspaceInside = filesystem.workspace === null ? null : (filesystem.workspaceTarget ?? filesystem.workspace);
  // The home is brig's (a private tmpfs, or the kept home) unless it lies in the workspace's place.
  const privateHome = workspaceInside === null || !within(input.home, workspaceInside) ? input.home : null;
  const guard = destinationGuard([...secrets, ...filesystem.hidden], [privateHome, input.tmpdir]);
  // A home inside the workspace's place is the workspace's (an E2B sandbox's /home/user): no tmpfs over it.
  if (privateHome !== null) {
    const kept = filesystem.home;
    steps.push(
      kept === null
        ? { path: input.home, rank: RANK.tmpfs, args: ['--size', size, '--perms', '0700', '--tmpfs', input.home] }
        : { path: input.home, rank: RANK.bind, args: ['--bind-fd', fds.bind(kept, 'filesystem.home'), input.home] },
    );
  }
  // Shared scratch space keeps its usual sticky, world-writable mode.
  for (const path of new Set([...filesystem.tmpfs, ...(input.tmpdir ? [input.tmpdir] : [])])) {
    if (path !== input.home) steps.push({ path, rank: RANK.tmpfs, args: ['--size', size, '--perms', '1777', '--tmpfs', path] });
  }
  const bind = (flag: '--ro-bind-fd' | '--bind-fd', source: string, dest: string, field: string): Step => {
    guard(dest, field);
    return { path: dest, rank: RANK.bind, args: [flag, fds.bind(source, field), dest] };
  };
  for (const path of filesystem.readOnly) steps.push(bind('--ro-bind-fd', path, path, 'filesystem.readOnly'));
  for (const tool of input.toolPaths) steps.push(bind('--ro-bind-fd', tool.source, tool.dest, 'tools'));
  for (const path of filesystem.readWrite) steps.push(bind('--bind-fd', path, path, 'filesystem.readWrite'));
  if (filesystem.workspace !== null && workspaceInside !== null) steps.push(bind('--bind-fd', filesystem.workspace, workspaceInside, 'filesystem.workspace'));
  for (const path of filesystem.hidden) steps.push({ path, rank: RANK.mask, args: maskArgs(path) });
  if (input.network === 'host') steps.push(...resolverSteps(fds));

  steps.sort((a, b) => depth(a.path) - depth(b.path) || a.rank - b.rank);
  for (const step of steps) args.push(...step.args);
  // After /etc is bound: the jail's own user database replaces the host's.
  args.push('--ro-bind-data', String(input.passwdFd), '/etc/passwd', '--ro-bind-data', String(input.groupFd), '/etc/group');
  args.push(...identityFiles(input));
  return args;
}

/**
 * The jail's own /etc/hostname and /etc/hosts, naming the jail's host name,
 * not the host's. With the host's network the host's /etc/hosts stays: its
 * names are part of the network the policy opened on purpose.
 */
function identityFiles(input: MountInputs): string[] {
  const args: string[] = [];
  const file = (path: string): boolean => lstatOrNull(path)?.isFile() === true;
  if (file('/etc/hostname')) args.push('--ro-bind-data', input.fds.data(`${input.hostname}\n`), '/etc/hostname');
  if (input.network !== 'host' && file('/etc/hosts')) {
    const hosts = `127.0.0.1\tlocalhost\n127.0.1.1\t${input.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
    args.push('--ro-bind-data', input.fds.data(hosts), '/etc/hosts');
  }
  return args;
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
function maskArgs(path: string): string[] {
  const stats = lstatOrNull(path);
  if (!stats) return [];
  if (stats.isDirectory()) return ['--tmpfs', path, '--remount-ro', path];
  return ['--ro-bind', '/dev/null', path];
}

/** On hosts where /etc/resolv.conf links into /run (systemd-resolved), the jail needs the target too. */
function resolverSteps(fds: MountInputs['fds']): Step[] {
  const link = lstatOrNull('/etc/resolv.conf');
  if (!link?.isSymbolicLink()) return [];
  let target: string;
  try {
    target = realpathSync('/etc/resolv.conf');
  } catch {
    return [];
  }
  if (target.startsWith('/etc/')) return [];
  return [{ path: target, rank: RANK.bind, args: ['--ro-bind-fd', fds.bind(target, 'network (resolv.conf)'), target] }];
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
