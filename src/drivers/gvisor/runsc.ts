import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { findExecutable } from '../plan/index.ts';
import { recordsDir } from '../host/index.ts';
import { BrigError } from '../../protocol/index.ts';
import type { TierStatus } from '../driver.ts';

/**
 * Finding runsc, what it is, and how to run it here. Debian's runsc
 * (0.0~20221219) offers the ptrace and kvm platforms (systrap came later):
 * ptrace, runsc's own default, unless BRIG_GVISOR_PLATFORM=kvm asks. A
 * /dev/kvm that opens is no proof that kvm works: on a nested one here the
 * Sentry spun at full CPU for minutes and never ran the command.
 */

export interface Runsc {
  path: string;
  version: string;
  platform: string;
}

/** Where Debian and a manual install put it, looked at after PATH (a daemon's PATH may be short). */
const SEARCH_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/sbin'];
const FIX = 'apt-get install runsc (as root); brig runs gVisor sandboxes as root';

/** runsc's version by binary and its identity then: asking costs a process start. */
const known = new Map<string, { identity: string; version: string }>();

/** The runsc to use, or null when none is installed. BRIG_RUNSC names one explicitly. */
export function findRunsc(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.BRIG_RUNSC) return findExecutable(basename(env.BRIG_RUNSC), dirname(env.BRIG_RUNSC));
  return findExecutable('runsc', [env.PATH, ...SEARCH_DIRS].filter(Boolean).join(':'));
}

export function runscVersion(path: string): string {
  const stats = statSync(path);
  const identity = `${path}:${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
  const cached = known.get(path) ?? readCache();
  if (cached?.identity === identity) return cached.version;
  const output = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const version = /runsc version (\S+)/.exec(output)?.[1] ?? output.split('\n')[0] ?? 'unknown';
  known.set(path, { identity, version });
  writeCache({ identity, version });
  return version;
}

function cacheFile(): string {
  return `${dirname(recordsDir())}/gvisor-runsc.json`;
}

function readCache(): { identity: string; version: string } | undefined {
  try {
    const file = cacheFile();
    // Only a file of brig's own user is believed (the records' directory is, see host/records.ts).
    if (statSync(file).uid !== (process.getuid?.() ?? 0)) return undefined;
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { identity?: unknown; version?: unknown };
    return typeof parsed.identity === 'string' && typeof parsed.version === 'string' ? { identity: parsed.identity, version: parsed.version } : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(entry: { identity: string; version: string }): void {
  try {
    const file = cacheFile();
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(`${file}.${process.pid}`, JSON.stringify(entry), { mode: 0o600 });
    renameSync(`${file}.${process.pid}`, file);
  } catch {
    // A cache: without it, the next process asks runsc again.
  }
}

/** BRIG_GVISOR_PLATFORM, else ptrace (runsc's default). */
export function pickPlatform(env: NodeJS.ProcessEnv = process.env): string {
  const chosen = env.BRIG_GVISOR_PLATFORM;
  if (chosen) {
    if (!/^[a-z0-9_-]+$/.test(chosen)) throw new BrigError('BRIG_USAGE', `BRIG_GVISOR_PLATFORM=${chosen} is not a platform name`, 'use ptrace or kvm (runsc help platforms)');
    return chosen;
  }
  return 'ptrace';
}

/** Whether the tier works here, checked now. */
export function gvisorStatus(): TierStatus {
  if ((process.getuid?.() ?? 0) !== 0) return { available: false, detail: 'brig is not running as root (runsc builds its sandbox with namespaces and a chroot only root may make)', fix: FIX };
  const path = findRunsc();
  if (!path) return { available: false, detail: 'runsc (gVisor) is not installed', fix: FIX };
  try {
    const version = runscVersion(path);
    return { available: true, detail: `runsc ${version} (${path}), platform ${pickPlatform()}` };
  } catch (error) {
    return { available: false, detail: `${path} does not answer --version: ${(error as Error).message.split('\n')[0]}`, fix: FIX };
  }
}

/** The Runsc to launch with, or BRIG_GVISOR_UNAVAILABLE saying why not and what fixes it. */
export function requireRunsc(): Runsc {
  const status = gvisorStatus();
  const path = findRunsc();
  if (!status.available || !path) throw new BrigError('BRIG_TIER_UNAVAILABLE', `the gvisor tier cannot run on this host: ${status.detail}`, status.fix ?? FIX);
  return { path, version: runscVersion(path), platform: pickPlatform() };
}

export interface RunscFlags {
  /** runsc's state directory: one of the sandbox's own, so nothing else's containers are seen or touched. */
  stateDir: string;
  network: 'none' | 'host';
  /** Unix sockets the sandbox may reach on the host through its binds: connect out (egress), listen (envd), or both. */
  hostUds: 'none' | 'open' | 'create' | 'all';
  seccomp: boolean;
}

/** The global flags every runsc call for one sandbox takes (state, kill and delete must name the same root). */
export function runscFlags(runsc: Runsc, flags: RunscFlags): string[] {
  return [
    `--root=${flags.stateDir}`,
    `--platform=${runsc.platform}`,
    // brig makes and watches the cgroups itself (host/cgroup.ts): runsc is started inside them.
    '--ignore-cgroups',
    `--network=${flags.network}`,
    `--host-uds=${flags.hostUds}`,
    // Writes to a writable bind go to the host at once; the read-only root needs no overlay.
    '--overlay2=none',
    ...(flags.seccomp ? ['--oci-seccomp'] : []),
    // runsc's own debug logs (every process's, timestamped), for finding where a start-up's time goes.
    ...(process.env.BRIG_GVISOR_DEBUG_LOG ? ['--debug', `--debug-log=${process.env.BRIG_GVISOR_DEBUG_LOG.replace(/\/?$/, '/')}`] : []),
  ];
}
