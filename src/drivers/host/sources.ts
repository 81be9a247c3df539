import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, realpathSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { BrigError } from '../../protocol/index.ts';

/**
 * Bind sources, opened so that no symbolic link can redirect them.
 *
 * A path handed to bubblewrap as `--bind SRC DEST` is resolved by bubblewrap,
 * following every symlink in it, at the moment it mounts. A workspace is
 * written by jails, so a jail can plant `cache -> ../../../root` and wait for
 * a later `brig run --rw ./cache` to bind the host's /root. Instead, brig
 * opens every source itself, one component at a time from /, each with
 * O_PATH|O_NOFOLLOW relative to the directory opened before it (through
 * /proc/self/fd/N/NAME, which is what openat(N, NAME) does). A component that
 * is a symlink is refused, naming the path and its real path: the user can
 * name the real path on purpose, a planted link cannot choose it for them.
 * The fd that comes out is handed to bubblewrap (`--bind-fd FD DEST`), so what
 * was checked is exactly what is mounted, whatever the path holds by then.
 * bubblewrap closes those fds once it has mounted them: none reaches the jail.
 */

/** open(2) flags Node does not name: a handle on a path, not on its contents. */
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const PATH_FLAGS = O_PATH | constants.O_NOFOLLOW | O_CLOEXEC;

/** One fd bubblewrap reads, from FD.bindSources on: a host path to bind, or data it copies into a file. */
export type PlanFd = { kind: 'path'; path: string; field: string } | { kind: 'data'; data: string } | { kind: 'slot' };

/**
 * Opens `path` without following any symlink in it; the caller closes the fd.
 * Throws BRIG_PATH_MISSING or BRIG_PATH_SYMLINK naming `field` and the path.
 */
export function openSource(path: string, field: string): number {
  if (!isAbsolute(path) || path.split('/').some((name) => name === '.' || name === '..')) {
    throw new BrigError('BRIG_POLICY_INVALID', `${field}: ${path} is not a normalised absolute path`, 'give the path without . or .. components');
  }
  let fd = openSync('/', PATH_FLAGS);
  let walked = '';
  try {
    for (const name of path.split('/').filter(Boolean)) {
      const parent = fd;
      walked += `/${name}`;
      try {
        fd = openSync(`/proc/self/fd/${parent}/${name}`, PATH_FLAGS);
      } catch (error) {
        fd = parent;
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') throw missing(path, field);
        throw new BrigError('BRIG_JAIL_SETUP', `${field}: cannot open ${walked}: ${(error as Error).message}`, 'check that brig may read every directory on the way');
      }
      closeSync(parent);
      if (fstatSync(fd).isSymbolicLink()) throw symlink(path, walked, field);
    }
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** Checks at plan time that a source opens cleanly (launch opens it again, for real). */
export function checkSource(path: string, field: string): void {
  closeSync(openSource(path, field));
}

/**
 * The fds a launch hands bubblewrap, in order: bind sources opened now (the
 * check that counts), data as strings to write down a pipe. close() releases
 * brig's copies once bubblewrap has its own.
 */
export function openPlanFds(entries: readonly PlanFd[]): { stdio: Array<number | 'pipe' | 'ignore'>; close(): void } {
  const opened: number[] = [];
  try {
    const stdio = entries.map((entry) => {
      if (entry.kind === 'data') return 'pipe' as const;
      // Filled by brig-exec before bubblewrap starts (an image jail's namespace and root).
      if (entry.kind === 'slot') return 'ignore' as const;
      const fd = openSource(entry.path, entry.field);
      opened.push(fd);
      return fd;
    });
    return { stdio, close: () => opened.splice(0).forEach((fd) => closeSync(fd)) };
  } catch (error) {
    for (const fd of opened) closeSync(fd);
    throw error;
  }
}

function missing(path: string, field: string): BrigError {
  return new BrigError('BRIG_PATH_MISSING', `${field}: ${path} does not exist on the host`, 'create it first, or remove it from the policy (a jail can only be given paths that exist)');
}

function symlink(path: string, link: string, field: string): BrigError {
  let target = '?';
  let real: string | null = null;
  try {
    target = readlinkSync(link);
    real = realpathSync(path);
  } catch {
    // A dangling or looping link: the message still names it.
  }
  return new BrigError(
    'BRIG_PATH_SYMLINK',
    `${field}: ${path} goes through a symbolic link (${link} -> ${target}); brig binds no path through a link, since a jail could have planted it to redirect the bind`,
    real ? `if ${real} is what you mean, name it directly` : 'remove the link, or name the directory it should lead to',
  );
}

/**
 * The plan's list of fds from `first` on: source() takes a bind source the
 * plan has checked (plan/mounts.ts) and returns the fd number bubblewrap will
 * find it at; data() does the same for text bubblewrap copies into a file.
 */
export function fdTable(first: number): { entries: PlanFd[]; source(path: string, field: string): string; data(text: string): string; slot(): string } {
  const entries: PlanFd[] = [];
  const add = (entry: PlanFd): string => String(first + entries.push(entry) - 1);
  return {
    entries,
    // Launch opens it again, for real (openPlanFds).
    source: (path, field) => add({ kind: 'path', path, field }),
    data: (text) => add({ kind: 'data', data: text }),
    slot: () => add({ kind: 'slot' }),
  };
}

/**
 * Every symbolic link that resolving `path` goes through, in order, as the
 * kernel would follow them (at most 40). For paths brig resolves itself
 * (tools found on PATH): a link inside a directory jails write may have been
 * planted by one, wherever the path started.
 */
export function linksOnTheWay(path: string): string[] {
  const links: string[] = [];
  let rest = path.split('/').filter(Boolean);
  let current = '';
  while (rest.length > 0) {
    const name = rest.shift() as string;
    if (name === '.') continue;
    if (name === '..') {
      current = current.slice(0, current.lastIndexOf('/'));
      continue;
    }
    const next = `${current}/${name}`;
    let target: string | null = null;
    try {
      if (lstatSync(next).isSymbolicLink()) target = readlinkSync(next);
    } catch {
      return links; // Missing: the caller's own check says so.
    }
    if (target === null) {
      current = next;
      continue;
    }
    links.push(next);
    if (links.length > 40) return links;
    rest = [...target.split('/').filter(Boolean), ...rest];
    if (target.startsWith('/')) current = '';
  }
  return links;
}
