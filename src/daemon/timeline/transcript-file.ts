import { closeSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import type { TimelineBody, TimelineEntry, TimelineQuery } from './transcript-types.ts';

/**
 * One sandbox's transcript on disk: JSON lines, each starting with its seq
 * and time (so a read finds a page without parsing what it skips), appended
 * through a descriptor kept open while the sandbox runs.
 *
 * The cap: output and input (bulk) stop at `maxBytes`; the small entries that
 * say what happened (a command's start and end, events, model exchanges)
 * have RESERVE_BYTES more, then everything stops, with one last entry
 * saying so. The file never grows past maxBytes + RESERVE_BYTES: a sandbox
 * cannot fill the disk through its transcript.
 */

export const RESERVE_BYTES = 256 * 1024;
/** Room for the last entry, the one saying that nothing more is recorded. */
const LAST_WORD_BYTES = 512;
/** Enough of the end of the file to hold its last entry (entries are cut well below this). */
const TAIL_PEEK_BYTES = 512 * 1024;
const HEAD = /^\{"seq":(\d+),"time":"([^"]+)"/;

export type AppendResult = TimelineEntry | 'dropped';

export class TranscriptFile {
  private fd: number | null = null;
  private size = 0;
  private seq = 0;
  private full = false;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
  ) {}

  append(body: TimelineBody, bulk: boolean): AppendResult {
    if (this.full) return 'dropped';
    this.open();
    const entry = { seq: this.seq + 1, time: new Date().toISOString(), ...body } as TimelineEntry;
    const line = JSON.stringify(entry) + '\n';
    const bytes = Buffer.byteLength(line);
    if (bulk && this.size + bytes > this.maxBytes) return 'dropped';
    if (this.size + bytes > this.maxBytes + RESERVE_BYTES - LAST_WORD_BYTES) {
      this.full = true;
      this.write({ seq: this.seq + 1, time: entry.time, type: 'truncated', cmd: null, reason: `the transcript reached its cap (${this.maxBytes} bytes, brig serve --transcript-max): nothing after this was recorded` });
      return 'dropped';
    }
    this.write(entry);
    return entry;
  }

  /** Entries matching the query, oldest first. */
  read(query: TimelineQuery): TimelineEntry[] {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return [];
    }
    const picked: string[] = [];
    for (const line of text.split('\n')) {
      const head = HEAD.exec(line);
      if (!head) continue;
      if (query.after !== undefined && Number(head[1]) <= query.after) continue;
      if (query.since !== undefined && (head[2] ?? '') < query.since) continue;
      picked.push(line);
    }
    const chosen = query.tail !== undefined ? picked.slice(-Math.min(query.tail, query.limit)) : picked.slice(0, query.limit);
    return chosen.map((line) => JSON.parse(line) as TimelineEntry);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private write(entry: TimelineEntry): void {
    const line = JSON.stringify(entry) + '\n';
    try {
      writeSync(this.fd ?? -1, line);
    } catch {
      // A full disk loses the entry, never the command it is about.
      return;
    }
    this.size += Buffer.byteLength(line);
    this.seq = entry.seq;
  }

  /** Opened on first use; after a restart the file goes on from its last seq. */
  private open(): void {
    if (this.fd !== null) return;
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
    this.seq = this.size > 0 ? lastSeq(this.path, this.size) : 0;
    this.full = this.size >= this.maxBytes + RESERVE_BYTES - LAST_WORD_BYTES;
  }
}

function lastSeq(path: string, size: number): number {
  const length = Math.min(size, TAIL_PEEK_BYTES);
  const buffer = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buffer, 0, length, size - length);
  } finally {
    closeSync(fd);
  }
  const lines = buffer.toString('utf8').split('\n');
  for (let index = lines.length - 1; index >= 0; index--) {
    const head = HEAD.exec(lines[index] ?? '');
    if (head) return Number(head[1]);
  }
  return 0;
}
