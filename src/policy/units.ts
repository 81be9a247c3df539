import { BrigError } from '../protocol/index.ts';

/**
 * Sizes and durations as people type them on a command line. Every size unit
 * is binary (k = KiB, m = MiB, g = GiB, t = TiB, with or without B/iB), as
 * docker and cgroups mean them; sizes round down to whole MiB, the policy's
 * unit. Checking the range (memory ≥ 16 MiB, …) is the validator's job.
 */

const MIB_PER_UNIT: Record<string, number> = { k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 };
const SIZE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt])(?:i?b)?)?$/i;

/** "2g" → 2048, "512m" → 512, "1.5GiB" → 1536, "1024" → 1024 (a bare number is MiB). */
export function parseSizeMiB(text: string, flag = 'size'): number {
  const match = SIZE.exec(text.trim());
  const mib = match ? Number(match[1]) * (MIB_PER_UNIT[(match[2] ?? 'm').toLowerCase()] ?? Number.NaN) : Number.NaN;
  if (!Number.isFinite(mib)) {
    throw new BrigError(
      'BRIG_USAGE',
      `${flag}: ${JSON.stringify(text)} is not a size`,
      'Write a number with an optional unit: 512m, 2g, 1.5GiB (k, m, g, t are powers of 1024; a bare number is MiB).',
    );
  }
  return Math.floor(mib);
}

const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const NUMBER = '(\\d+(?:\\.\\d+)?|\\.\\d+)';
const DURATION = new RegExp(`^(?:${NUMBER}(ms|s|m|h|d))+$`);
const DURATION_PART = new RegExp(`${NUMBER}(ms|s|m|h|d)`, 'g');
const BARE_NUMBER = new RegExp(`^${NUMBER}$`);

/** "250ms", "30s", "5m", "1h", "1h30m"; a bare number is seconds, as for timeout(1): "90" → 90000. */
export function parseDurationMs(text: string, flag = 'duration'): number {
  const trimmed = text.trim().toLowerCase();
  let ms = Number.NaN;
  if (BARE_NUMBER.test(trimmed)) ms = Number(trimmed) * 1000;
  else if (DURATION.test(trimmed)) {
    ms = 0;
    for (const [, amount, unit] of trimmed.matchAll(DURATION_PART)) ms += Number(amount) * (MS_PER_UNIT[unit ?? ''] ?? Number.NaN);
  }
  if (!Number.isFinite(ms)) {
    throw new BrigError(
      'BRIG_USAGE',
      `${flag}: ${JSON.stringify(text)} is not a duration`,
      'Write a number with a unit, or several: 250ms, 30s, 5m, 1h, 1h30m (a bare number is seconds; 0 means no limit).',
    );
  }
  return Math.round(ms);
}
