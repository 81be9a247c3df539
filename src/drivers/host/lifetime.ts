import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import brigSpawn from 'brig-spawn';
import { recordsDir } from './records.ts';

/**
 * `argv` behind brig-exec --die-with: the program dies with brig, even when
 * brig is killed outright (runsc run, QEMU, a host-root bubblewrap, whose
 * --die-with-parent reaches only its child). The signal survives the exec,
 * and a brig killed before it was set is noticed (setpriv --pdeathsig misses
 * that, and a VM outlived its brig). A program that changes its ids (QEMU's
 * -runas) loses the signal, so `supervise` keeps brig-exec as its parent to
 * kill it. The program gets fds 0-2 only, or what an `argv` that already
 * starts with brig-exec keeps.
 */
export function dieWithParent(argv: string[], options: { supervise?: boolean } = {}): string[] {
  const dieWith = ['--die-with', String(process.pid), ...(options.supervise ? ['--supervise'] : [])];
  if (argv[0] === brigSpawn.execPath) return [brigSpawn.execPath, ...dieWith, ...argv.slice(1)];
  return [brigSpawn.execPath, ...dieWith, '--keep-fds', '2', '--', ...argv];
}

/** Where a foreground run of `tier` keeps its files (a bundle, sockets, state): beside brig's records, 0700, named by the run's id. */
export function tierRunDir(tier: string, id: string): string {
  const base = `${dirname(recordsDir())}/${tier}`;
  mkdirSync(base, { recursive: true, mode: 0o700 });
  return `${base}/${id}`;
}
