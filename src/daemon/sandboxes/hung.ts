import type { ActivityBoard } from '../timeline/index.ts';
import type { SandboxRecord } from './types.ts';

/**
 * Hung sandboxes (timeouts.hungMs): commands running through envd, and for
 * that long no output from them and no CPU used by the sandbox. "No CPU" is
 * less than BUSY_SHARE of one CPU between two looks: envd's own keep-alives
 * cost a little CPU always, and must not count as the command working. A
 * sandbox is reported once per stretch of silence; output or CPU ends it.
 */

const BUSY_SHARE = 0.01;

export interface HungSandbox {
  record: SandboxRecord;
  /** How long it has been silent. */
  silentMs: number;
  /** Commands running in it. */
  commands: number;
}

export class HungWatch {
  private readonly looks = new Map<string, { cpuUsec: number; atMs: number; busyMs: number; reported: boolean }>();

  constructor(private readonly activity: ActivityBoard) {}

  /** The sandboxes that have just become hung, from one look at each running one (its CPU so far from `cpuUsec`). */
  look(records: SandboxRecord[], cpuUsec: (record: SandboxRecord) => number | null): HungSandbox[] {
    const now = Date.now();
    const hung: HungSandbox[] = [];
    const watched = new Set<string>();
    for (const record of records) {
      const commands = this.activity.of(record.id);
      if (record.state !== 'running' || record.policy.timeouts.hungMs === 0 || !commands) continue;
      const cpu = cpuUsec(record);
      if (cpu === null) continue;
      watched.add(record.id);
      const last = this.looks.get(record.id);
      const busy = !last || (cpu - last.cpuUsec) / Math.max(1, (now - last.atMs) * 1000) >= BUSY_SHARE;
      const look = { cpuUsec: cpu, atMs: now, busyMs: busy ? now : (last?.busyMs ?? now), reported: last?.reported ?? false };
      const silentMs = now - Math.max(look.busyMs, commands.lastOutputMs);
      if (silentMs < record.policy.timeouts.hungMs) look.reported = false;
      else if (!look.reported) {
        look.reported = true;
        hung.push({ record, silentMs, commands: commands.running });
      }
      this.looks.set(record.id, look);
    }
    for (const id of this.looks.keys()) if (!watched.has(id)) this.looks.delete(id);
    return hung;
  }
}
