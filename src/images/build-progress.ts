/**
 * What a build prints besides the steps' own output: elapsed time per step
 * and, at the end, the layers each step made with their sizes and the
 * image's total (a layer two steps share, or one taken from the base image,
 * counted once).
 */
import type { ImageStore } from './store.ts';

export class StepClock {
  private readonly start = process.hrtime.bigint();

  seconds(): number {
    return Number(process.hrtime.bigint() - this.start) / 1e9;
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export async function summary(store: ImageStore, ref: string, steps: Array<{ step: number; instruction: string; layer: string | null; cached: boolean | null; seconds: number }>): Promise<string> {
  const image = await store.getImage(ref);
  const lines = [`Layers of ${ref}:`];
  const made = new Set<string>();
  for (const step of steps) {
    if (step.layer === null) continue;
    made.add(step.layer);
    const bytes = (await store.layer(step.layer))?.bytes ?? 0;
    const flat = step.instruction.replace(/\s+/g, ' ');
    lines.push(`  step ${String(step.step).padStart(2)}  ${formatBytes(bytes).padStart(10)}  ${step.cached === true ? 'cached ' : 'built  '} ${flat.length > 60 ? `${flat.slice(0, 57)}…` : flat}`);
  }
  let total = 0;
  let fromBase = 0;
  for (const digest of new Set(image.layers)) {
    const bytes = (await store.layer(digest))?.bytes ?? 0;
    total += bytes;
    if (!made.has(digest)) fromBase += bytes;
  }
  if (fromBase > 0) lines.push(`  base image layers ${formatBytes(fromBase)}`);
  const seconds = steps.reduce((sum, step) => sum + step.seconds, 0);
  lines.push(`Total ${formatBytes(total)} in ${image.layers.length} layer${image.layers.length === 1 ? '' : 's'}, built in ${seconds.toFixed(1)}s; tagged ${ref}`);
  return `${lines.join('\n')}\n`;
}
