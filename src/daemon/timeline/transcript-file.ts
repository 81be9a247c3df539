import { closeSync, existsSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
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

const RESERVE_BYTES = 256 * 1024;
/** Room for the last entry, the one saying that nothing more is recorded. */
const LAST_WORD_BYTES = 512;
/** Enough of the end of the file to hold its last entry (entries are cut well below this). */
const TAIL_PEEK_BYTES = 512 * 1024;
const HEAD = /^\{"seq":(\d+),"time":"([^"]+)"/;

export type AppendResult = TimelineEntry | 'dropped';

/** Every this many entries, where one starts is remembered: a page is read from near it, not from the top. */
const CHECKPOINT_EVERY = 256;
const READ_CHUNK_BYTES = 1024 * 1024;

export class TranscriptFile {
  private fd: number | null = null;
  private size = 0;
  private seq = 0;
  private full = false;
  /** Offsets of entries 1, 1 + CHECKPOINT_EVERY, …; built by the first read that needs it, then kept by the writes. */
  private checkpoints: number[] | null = null;
  private lastSeqRead = 0;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
    /** Told each entry once it is on disk (the last word of a full transcript too). */
    private readonly written: (entry: TimelineEntry) => void,
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
    return this.write(entry) ? entry : 'dropped';
  }

  /** Entries matching the query, oldest first: read from the checkpoint before the first that can match, and no further than the page. */
  read(query: TimelineQuery): TimelineEntry[] {
    const checkpoints = this.index();
    if (checkpoints === null) return [];
    const last = Math.max(this.seq, this.lastSeqRead);
    const from = query.tail !== undefined ? Math.max(query.after ?? 0, last - Math.min(query.tail, query.limit)) : (query.after ?? 0);
    const checkpoint = Math.min(Math.floor(from / CHECKPOINT_EVERY), checkpoints.length - 1);
    const picked: string[] = [];
    const enough = query.tail === undefined ? query.limit : Number.POSITIVE_INFINITY;
    eachLine(this.path, checkpoint >= 0 ? (checkpoints[checkpoint] ?? 0) : 0, (line) => {
      const head = HEAD.exec(line);
      if (!head) return true;
      if (Number(head[1]) <= from) return true;
      if (query.since !== undefined && (head[2] ?? '') < query.since) return true;
      picked.push(line);
      return picked.length < enough;
    });
    const chosen = query.tail !== undefined ? picked.slice(-Math.min(query.tail, query.limit)) : picked;
    return chosen.flatMap((line) => {
      try {
        return [JSON.parse(line) as TimelineEntry];
      } catch {
        // A line a daemon killed mid-write left unfinished: skipped, never a failed read.
        return [];
      }
    });
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private write(entry: TimelineEntry): boolean {
    const line = JSON.stringify(entry) + '\n';
    try {
      writeSync(this.fd ?? -1, line);
    } catch {
      // A full disk loses the entry, never the command it is about.
      return false;
    }
    if (this.checkpoints !== null && (entry.seq - 1) % CHECKPOINT_EVERY === 0) this.checkpoints.push(this.size);
    this.size += Buffer.byteLength(line);
    this.seq = entry.seq;
    this.written(entry);
    return true;
  }

  /** The checkpoints, from one pass over the file the first time; null when there is no file. */
  private index(): number[] | null {
    if (this.checkpoints !== null) return this.checkpoints;
    if (!existsSync(this.path)) return null;
    const checkpoints: number[] = [];
    let offset = 0;
    eachLine(this.path, 0, (line, bytes) => {
      const head = HEAD.exec(line);
      if (head) {
        const seq = Number(head[1]);
        if ((seq - 1) % CHECKPOINT_EVERY === 0) checkpoints[(seq - 1) / CHECKPOINT_EVERY] = offset;
        this.lastSeqRead = seq;
      }
      offset += bytes;
      return true;
    });
    // Only a file this object writes stays indexed; one it does not (yet) write is read again next time.
    if (this.fd !== null) this.checkpoints = checkpoints;
    return checkpoints;
  }

  /** Opened on first use; after a restart the file goes on from its last seq. */
  private open(): void {
    if (this.fd !== null) return;
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
    this.seq = this.size > 0 ? lastSeq(this.path, this.size) : 0;
    // A daemon killed mid-write left its last line unfinished: end it, so the next entry starts a line of its own.
    if (this.size > 0 && !endsWithNewline(this.path, this.size)) {
      writeSync(this.fd, '\n');
      this.size += 1;
    }
    this.full = this.size >= this.maxBytes + RESERVE_BYTES - LAST_WORD_BYTES;
    this.checkpoints = null;
  }
}

/** Each whole line of the file from `offset`, with its length in bytes (newline included), until `line` returns false. */
function eachLine(path: string, offset: number, line: (text: string, bytes: number) => boolean): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return;
  }
  try {
    const buffer = Buffer.alloc(READ_CHUNK_BYTES);
    let position = offset;
    let carry = Buffer.alloc(0);
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, position);
      if (read === 0) return;
      position += read;
      const chunk = carry.length > 0 ? Buffer.concat([carry, buffer.subarray(0, read)]) : buffer.subarray(0, read);
      let start = 0;
      for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
        if (!line(chunk.toString('utf8', start, newline), newline - start + 1)) return;
        start = newline + 1;
      }
      carry = Buffer.from(chunk.subarray(start));
    }
  } finally {
    closeSync(fd);
  }
}

function endsWithNewline(path: string, size: number): boolean {
  const last = Buffer.alloc(1);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, last, 0, 1, size - 1);
  } finally {
    closeSync(fd);
  }
  return last[0] === 10;
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
