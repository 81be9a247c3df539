import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, table, type Peer } from './measure.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const BRIG = join(root, 'bin/brig');
const SRT = join(root, 'node_modules/.bin/srt');

/**
 * Issue 2's benchmark: wall time and peak RSS of `brig run -- true` against
 * bare bubblewrap and sandbox-runtime's `srt true`, same run, same machine.
 * Target: brig at most 0.25× srt.
 */
export function benchStartup(runs: number): string {
  const rootOwned = mkdtempSync(join(tmpdir(), 'brig-bench-ws-'));
  const userOwned = mkdtempSync(join(tmpdir(), 'brig-bench-ws-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(userOwned, 1000, 1000);
  const bareBwrap = [
    'bwrap', '--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin',
    '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev', 'true',
  ];
  const sections: string[] = [];
  try {
    const environments: Array<[string, NodeJS.ProcessEnv]> = [['this machine\'s environment', process.env]];
    if (process.env.NODE_EXTRA_CA_CERTS) {
      const { NODE_EXTRA_CA_CERTS: _dropped, ...rest } = process.env;
      environments.push(['without NODE_EXTRA_CA_CERTS (as on most machines)', rest]);
    }
    for (const [label, env] of environments) {
      const peers: Peer[] = [
        { name: 'bwrap (bare)', argv: bareBwrap, cwd: rootOwned, env },
        { name: 'node -e 0', argv: [process.execPath, '-e', '0'], cwd: rootOwned, env },
        { name: 'srt', argv: [SRT, 'true'], cwd: rootOwned, env },
        { name: 'brig run', argv: [BRIG, 'run', '--', 'true'], cwd: asRoot ? userOwned : rootOwned, env },
        ...(asRoot ? [{ name: 'brig run (root-owned ws)', argv: [BRIG, 'run', '--', 'true'], cwd: rootOwned, env }] : []),
      ];
      const stats = measure(peers, runs);
      const brig = stats.find((entry) => entry.name === 'brig run');
      const srt = stats.find((entry) => entry.name === 'srt');
      const verdict = brig && srt ? `brig/srt = ${(brig.medianMs / srt.medianMs).toFixed(2)} (target ≤ 0.25): ${brig.medianMs / srt.medianMs <= 0.25 ? 'met' : 'NOT met'}` : '';
      sections.push(`### brig run -- true, ${label}\n\n${table(stats, ['srt', 'bwrap (bare)'])}\n\n${verdict}`);
    }
  } finally {
    rmSync(rootOwned, { recursive: true, force: true });
    rmSync(userOwned, { recursive: true, force: true });
  }
  const note = asRoot
    ? '"brig run" uses a workspace owned by uid 1000, so the jail runs as that user (the usual case); "root-owned ws" keeps host uid 0 and pays the /etc scan (docs/jail.md).'
    : '';
  return [...sections, note].filter(Boolean).join('\n\n');
}
