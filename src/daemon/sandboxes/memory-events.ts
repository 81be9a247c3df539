import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { MemoryEvent } from '../../protocol/index.ts';

/**
 * A sandbox's out-of-memory decisions, one JSON object per line in a file of
 * its own beside its workspace (where the sandbox cannot write), so they
 * outlive a daemon restart and a stopped sandbox keeps them. A sandbox that
 * hits its limit over and over cannot grow the file without bound: past
 * MAX_BYTES the oldest half is dropped.
 */

const MAX_BYTES = 256 * 1024;

export function appendMemoryEvent(file: string, event: MemoryEvent): void {
  try {
    appendFileSync(file, JSON.stringify(event) + '\n', { mode: 0o600 });
    if (statSync(file).size > MAX_BYTES) {
      const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
      writeFileSync(file, lines.slice(Math.floor(lines.length / 2)).join('\n') + '\n', { mode: 0o600 });
    }
  } catch {
    // The sandbox was removed as its last event came in: there is nowhere to keep it.
  }
}

/** The newest `limit` events, oldest first; none when the sandbox never reached its limit. */
export function readMemoryEvents(file: string, limit: number): MemoryEvent[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const events: MemoryEvent[] = [];
  for (const line of text.split('\n')) {
    try {
      if (line) events.push(JSON.parse(line) as MemoryEvent);
    } catch {
      // A line cut short by a crash mid-write: skip it.
    }
  }
  return events.slice(-limit);
}
