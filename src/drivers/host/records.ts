import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import type { Liveness } from '../driver.ts';
import { removeCgroup } from './cgroup.ts';

/**
 * What a running brig holds on the host, written down before it is created,
 * so a later brig can clean up after one that was killed with SIGKILL. The
 * jail's processes die with their parent (bubblewrap's --die-with-parent);
 * what outlives them is the cgroups, and the record itself.
 */
export interface JailRecord {
  id: string;
  /** The brig process that owns the jail, and its start time (pids are reused). */
  ownerPid: number;
  ownerStart: string;
  cgroupDirs: string[];
  killDir: string | null;
  /** Directories the owner made for the sandbox (a gVisor run's OCI bundle and runsc state), removed once its cgroups are. */
  dirs?: string[];
}

export function recordsDir(): string {
  const uid = process.getuid?.() ?? 0;
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime) return `${runtime}/brig/jails`;
  return uid === 0 ? '/run/brig/jails' : `/tmp/brig-${uid}/jails`;
}

/**
 * /proc/<pid>/stat from its state field on ([0] state, [1] parent … [19]
 * start time); 'gone' when no such process exists, 'unknown' when it could
 * not be read (EMFILE under a descriptor flood, ENOMEM): not knowing is not dead.
 */
function readStat(pid: number | 'self'): string[] | 'gone' | 'unknown' {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ESRCH' ? 'gone' : 'unknown';
  }
}

/** /proc/<pid>/stat's fields from the state on, or null when they cannot be read (gone, or not knowable now). */
export function statFields(pid: number | 'self'): string[] | null {
  const fields = readStat(pid);
  return typeof fields === 'string' ? null : fields;
}

/** A process's start time: with its pid, what names it (pids are reused). */
export function processStart(pid: number | 'self'): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** Whether that process still runs (the same one: its start time matches), a zombie counting as gone. */
export function processLiveness(pid: number, start: string): Liveness {
  const fields = readStat(pid);
  if (typeof fields === 'string') return fields;
  return fields[19] === start && fields[0] !== 'Z' && fields[0] !== 'X' ? 'alive' : 'gone';
}

export function writeRecord(record: JailRecord): void {
  const dir = recordsDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const owner = statSync(dir).uid;
  if (owner !== (process.getuid?.() ?? owner)) {
    throw new BrigError('BRIG_JAIL_SETUP', `${dir} belongs to uid ${owner}, not to this user: another user could tamper with brig's records`, `remove ${dir}, or set XDG_RUNTIME_DIR to a directory of your own`);
  }
  const file = `${dir}/${record.id}.json`;
  writeFileSync(`${file}.tmp`, JSON.stringify(record), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function removeRecord(id: string): void {
  rmSync(`${recordsDir()}/${id}.json`, { force: true });
}

/** Clean up after every brig that died without doing so. Returns the ids cleaned. */
export async function sweepLeftovers(): Promise<string[]> {
  const dir = recordsDir();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const cleaned: string[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    let record: JailRecord;
    try {
      record = JSON.parse(readFileSync(`${dir}/${name}`, 'utf8')) as JailRecord;
    } catch {
      rmSync(`${dir}/${name}`, { force: true });
      continue;
    }
    if (processLiveness(record.ownerPid, record.ownerStart) !== 'gone') continue;
    if (await removeCgroup({ dirs: record.cgroupDirs, killDir: record.killDir })) {
      for (const left of record.dirs ?? []) rmSync(left, { recursive: true, force: true });
      removeRecord(record.id);
      cleaned.push(record.id);
    }
  }
  return cleaned;
}
