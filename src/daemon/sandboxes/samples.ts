import { statfsSync } from 'node:fs';
import type { SandboxUsage } from '../../drivers/index.ts';
import type { SandboxRecord } from './types.ts';

/**
 * Each running sandbox's CPU, memory and disk over time, as E2B's
 * getMetrics returns them: a sample per look (the manager's sweep, every
 * 5 s), the last hour kept, gone with the sandbox. CPU is the share of the
 * sandbox's CPUs used since the look before; the disk (a walk of the
 * workspace, which can be large) is measured once a minute in the background
 * and carried over.
 */

export interface SandboxSample {
  /** Seconds since the epoch. */
  timestampUnix: number;
  cpuCount: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  memCache: number;
  diskUsed: number;
  diskTotal: number;
}

const KEPT = 720;
const DISK_EVERY_MS = 60_000;

export class SandboxSamples {
  private readonly bySandbox = new Map<string, { samples: SandboxSample[]; cpuUsec: number; atMs: number; diskUsed: number; diskAtMs: number; measuring: boolean }>();

  constructor(private readonly diskUsage: (path: string) => Promise<number>) {}

  /** One sample of each running sandbox; those no longer given are forgotten. */
  look(records: SandboxRecord[], usage: (record: SandboxRecord) => SandboxUsage | null): void {
    const now = Date.now();
    const seen = new Set<string>();
    for (const record of records) {
      if (record.state !== 'running') continue;
      const used = usage(record);
      if (!used) continue;
      seen.add(record.id);
      const last = this.bySandbox.get(record.id);
      const cpuCount = Math.max(1, Math.ceil(record.policy.resources.cpus));
      const elapsedUsec = last ? (now - last.atMs) * 1000 : 0;
      const cpuUsedPct = last && elapsedUsec > 0 ? Math.min(100, Math.max(0, ((used.cpuUsec - last.cpuUsec) / elapsedUsec / cpuCount) * 100)) : 0;
      const entry = last ?? { samples: [], cpuUsec: 0, atMs: 0, diskUsed: 0, diskAtMs: 0, measuring: false };
      // Walked in the background, one walk at a time per sandbox; samples carry the last finished measure.
      if (!entry.measuring && now - entry.diskAtMs >= DISK_EVERY_MS) {
        entry.measuring = true;
        void this.diskUsage(record.workspace).then((bytes) => Object.assign(entry, { diskUsed: bytes, diskAtMs: Date.now(), measuring: false }));
      }
      // The first look has no interval to measure CPU over: it only sets the baseline.
      if (last) {
        entry.samples.push({
          timestampUnix: Math.floor(now / 1000),
          cpuCount,
          cpuUsedPct: Math.round(cpuUsedPct * 100) / 100,
          memUsed: used.memoryBytes,
          memTotal: record.policy.resources.memoryMiB * 1024 * 1024,
          memCache: used.memoryCacheBytes ?? 0,
          diskUsed: entry.diskUsed,
          diskTotal: diskTotal(record),
        });
        if (entry.samples.length > KEPT) entry.samples.shift();
      }
      Object.assign(entry, { cpuUsec: used.cpuUsec, atMs: now });
      this.bySandbox.set(record.id, entry);
    }
    for (const id of this.bySandbox.keys()) if (!seen.has(id)) this.bySandbox.delete(id);
  }

  /** The samples taken from `startUnix` to `endUnix` (seconds, both included), oldest first. */
  of(sandbox: string, startUnix = 0, endUnix = Number.MAX_SAFE_INTEGER): SandboxSample[] {
    return (this.bySandbox.get(sandbox)?.samples ?? []).filter((sample) => sample.timestampUnix >= startUnix && sample.timestampUnix <= endUnix);
  }
}

/** The workspace's limit (resources.diskMiB), else the size of the filesystem it is on. */
function diskTotal(record: SandboxRecord): number {
  if (record.policy.resources.diskMiB !== null) return record.policy.resources.diskMiB * 1024 * 1024;
  try {
    const stats = statfsSync(record.workspace);
    return stats.blocks * stats.bsize;
  } catch {
    return 0;
  }
}
