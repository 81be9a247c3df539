/**
 * A small tar reader for hostile input: ustar headers, pax extended headers
 * (path, linkpath, size, uid, gid) and GNU long names ('L', 'K'), read from a byte
 * stream that may be gzip-compressed (detected by its magic bytes). It only
 * parses; archive.ts decides what to write.
 */
import { PassThrough, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BrigError } from '../protocol/index.ts';

export const BLOCK = 512;

export function invalid(message: string, hint = 'the archive is refused whole and nothing of it is kept; check that the file is complete and really a tar (or tar.gz) archive'): BrigError {
  return new BrigError('BRIG_ARCHIVE_INVALID', message, hint);
}

/** Reads exact byte counts from an async stream of chunks; a short read is a truncated archive. */
export class ByteReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private ended = false;

  constructor(private readonly source: AsyncIterator<Buffer | string>) {}

  private async fill(wanted: number): Promise<void> {
    while (this.length < wanted && !this.ended) {
      const next = await this.source.next();
      if (next.done === true) {
        this.ended = true;
        break;
      }
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
  }

  /** Exactly `count` bytes, or null when the stream ended cleanly before any of them. */
  async take(count: number): Promise<Buffer | null> {
    await this.fill(count);
    if (this.length === 0 && count > 0) return null;
    if (this.length < count) throw invalid(`the archive is truncated: ${count} bytes expected, ${this.length} left`);
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const rest = all.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return all.subarray(0, count);
  }

  /** Exactly `count` bytes; the end of the stream here is truncation. */
  async need(count: number): Promise<Buffer> {
    const bytes = await this.take(count);
    if (bytes === null) throw invalid(`the archive is truncated: ${count} bytes expected, none left`);
    return bytes;
  }

  /** Between 1 and `max` bytes, for streaming an entry's data. */
  async some(max: number): Promise<Buffer> {
    await this.fill(1);
    const first = this.chunks[0];
    if (first === undefined) throw invalid('the archive is truncated in the middle of an entry\'s data');
    const piece = first.subarray(0, Math.min(max, first.length));
    if (piece.length === first.length) this.chunks.shift();
    else this.chunks[0] = first.subarray(piece.length);
    this.length -= piece.length;
    return piece;
  }

  async skip(count: number): Promise<void> {
    let left = count;
    while (left > 0) left -= (await this.some(Math.min(left, 1 << 20))).length;
  }
}

/** The archive's bytes, gunzipped when they start with gzip's magic (1f 8b). */
export async function openArchive(source: Readable): Promise<AsyncIterator<Buffer | string>> {
  const raw = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const head: Buffer[] = [];
  let headLength = 0;
  while (headLength < 2) {
    const next = await raw.next();
    if (next.done === true) break;
    const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    head.push(chunk);
    headLength += chunk.length;
  }
  const prefix = Buffer.concat(head);
  async function* whole(): AsyncGenerator<Buffer | string> {
    if (prefix.length > 0) yield prefix;
    for (let next = await raw.next(); next.done !== true; next = await raw.next()) yield next.value;
  }
  if (prefix[0] !== 0x1f || prefix[1] !== 0x8b) return whole();
  const gunzip = createGunzip();
  const feed = new PassThrough();
  feed.pipe(gunzip);
  feed.on('error', (error) => gunzip.destroy(error));
  void (async () => {
    try {
      for await (const chunk of whole()) if (!feed.write(chunk)) await new Promise((resolve) => feed.once('drain', resolve));
      feed.end();
    } catch (error) {
      gunzip.destroy(error as Error);
    }
  })();
  const inner = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return {
    next: async () => {
      try {
        return await inner.next();
      } catch (error) {
        // zlib's own errors (Z_DATA_ERROR, Z_BUF_ERROR for a cut stream) are the archive's fault; a read error of the source is not
        if (String((error as NodeJS.ErrnoException).code).startsWith('Z_')) throw invalid(`the gzip stream is corrupt or cut short: ${(error as Error).message}`);
        throw error;
      }
    },
    return: async () => {
      gunzip.destroy();
      source.destroy();
      return { done: true, value: undefined };
    },
  };
}

/** One header block, decoded; sizes and names before pax or GNU overrides. */
export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: string;
  linkname: string;
}

function text(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString('utf8');
}

/** An octal field (ASCII, padded with spaces or NULs) or GNU base-256 (high bit set). */
export function numeric(block: Buffer, start: number, length: number, what: string): number {
  const field = block.subarray(start, start + length);
  if (((field[0] ?? 0) & 0x80) !== 0) {
    if (field[0] === 0xff) throw invalid(`a header's ${what} is negative`);
    let value = (field[0] ?? 0) & 0x7f;
    for (const byte of field.subarray(1)) {
      value = value * 256 + byte;
      if (value > Number.MAX_SAFE_INTEGER) throw invalid(`a header's ${what} is too large`);
    }
    return value;
  }
  const digits = field.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '');
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits)) throw invalid(`a header's ${what} is not an octal number: ${JSON.stringify(digits)}`);
  return parseInt(digits, 8);
}

/** null for an all-zero block (the end of the archive). */
export function parseHeader(block: Buffer): RawHeader | null {
  if (block.every((byte) => byte === 0)) return null;
  const stored = numeric(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let index = 0; index < BLOCK; index++) {
    const byte = index >= 148 && index < 156 ? 0x20 : (block[index] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) throw invalid(`a header's checksum is wrong (stored ${stored}, computed ${unsigned}): the archive is corrupt or not a tar`);
  let name = text(block, 0, 100);
  const magic = block.subarray(257, 262).toString('latin1');
  if (magic === 'ustar') {
    const prefix = text(block, 345, 155);
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  const typeByte = block[156] ?? 0;
  return {
    name,
    mode: numeric(block, 100, 8, 'mode'),
    uid: numeric(block, 108, 8, 'uid'),
    gid: numeric(block, 116, 8, 'gid'),
    size: numeric(block, 124, 12, 'size'),
    mtime: numeric(block, 136, 12, 'mtime'),
    type: typeByte === 0 ? '0' : String.fromCharCode(typeByte),
    linkname: text(block, 157, 100),
  };
}

/** The records of a pax extended header ("LEN key=value\n" each). */
export function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break;
    const space = data.indexOf(0x20, at);
    const length = space === -1 ? NaN : Number(data.subarray(at, space).toString('latin1'));
    if (!Number.isInteger(length) || length <= space - at || at + length > data.length || data[at + length - 1] !== 0x0a) throw invalid('a pax extended header has a malformed record');
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals <= 0) throw invalid('a pax extended header has a record without key=value');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    at += length;
  }
  return records;
}

/** The padding after `size` bytes of data, up to the next block. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}
