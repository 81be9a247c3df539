import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One program to time: what to run, where, with which environment. */
export interface Peer {
  name: string;
  argv: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Sample {
  wallMs: number;
  peakRssKiB: number;
}

export interface Stats {
  name: string;
  runs: number;
  medianMs: number;
  p95Ms: number;
  medianRssMiB: number;
}

/**
 * Run every peer `runs` times, interleaved round by round so that a noisy
 * moment of the machine falls on all of them alike. Wall time is measured
 * around GNU time, which reports the peak RSS of the process tree's largest
 * member; GNU time's own cost is the same for every peer.
 */
export function measure(peers: Peer[], runs: number): Stats[] {
  const scratch = mkdtempSync(join(tmpdir(), 'brig-bench-'));
  const samples = new Map<string, Sample[]>(peers.map((peer) => [peer.name, []]));
  try {
    for (const peer of peers) runOnce(peer, scratch); // warm the page cache
    for (let round = 0; round < runs; round++) {
      for (const peer of peers) samples.get(peer.name)?.push(runOnce(peer, scratch));
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return peers.map((peer) => summarize(peer.name, samples.get(peer.name) ?? []));
}

function runOnce(peer: Peer, scratch: string): Sample {
  const rssFile = join(scratch, 'rss');
  const start = process.hrtime.bigint();
  const result = spawnSync('/usr/bin/time', ['-f', '%M', '-o', rssFile, ...peer.argv], { cwd: peer.cwd, env: peer.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) throw new Error(`${peer.name} failed (exit ${result.status}): ${result.stderr.toString().trim()}`);
  return { wallMs, peakRssKiB: Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) };
}

function summarize(name: string, samples: Sample[]): Stats {
  const walls = samples.map((sample) => sample.wallMs).sort((a, b) => a - b);
  const rss = samples.map((sample) => sample.peakRssKiB).sort((a, b) => a - b);
  return { name, runs: samples.length, medianMs: percentile(walls, 0.5), p95Ms: percentile(walls, 0.95), medianRssMiB: percentile(rss, 0.5) / 1024 };
}

export function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[index] ?? NaN;
}

/** A table with each peer's ratio to the reference peers. */
export function table(stats: Stats[], references: string[]): string {
  const header = ['peer', 'runs', 'median ms', 'p95 ms', 'peak RSS MiB', ...references.map((name) => `× ${name}`)];
  const rows = stats.map((entry) => [
    entry.name,
    String(entry.runs),
    entry.medianMs.toFixed(1),
    entry.p95Ms.toFixed(1),
    entry.medianRssMiB.toFixed(1),
    ...references.map((name) => {
      const reference = stats.find((candidate) => candidate.name === name);
      return reference ? (entry.medianMs / reference.medianMs).toFixed(2) : '—';
    }),
  ]);
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}
