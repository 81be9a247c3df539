import { HttpError } from './http-error.ts';

/**
 * A streaming multipart/form-data reader (RFC 7578), small because /files
 * needs little of it: parts one after another, each part's body as chunks
 * that are handed on as they arrive. It holds at most one input chunk plus
 * a delimiter's length, so a 100 MiB part never sits in memory.
 *
 * Part bodies must be read in order; asking for the next part skips what is
 * left of the current one.
 */

export interface Part {
  /** The form field name (`file` for uploads). */
  name: string | null;
  /** The part's filename; for /files the path of the file when several are sent. */
  filename: string | null;
  body: AsyncIterable<Buffer>;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
/** A part's headers beyond this are refused, not buffered. */
const MAX_HEADER_BYTES = 16 * 1024;

export function malformed(detail: string): HttpError {
  return new HttpError(400, `malformed multipart body: ${detail}`);
}

/** The boundary from a `multipart/form-data; boundary=…` content type. */
export function boundaryOf(contentType: string): string {
  const match = /;\s*boundary=(?:"([^"]{1,200})"|([^;\s]{1,200}))/i.exec(contentType);
  const boundary = match?.[1] ?? match?.[2];
  if (!boundary) throw malformed('the content type has no boundary');
  return boundary;
}

export class MultipartReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private readonly delimiter: Buffer;
  // A leading CRLF lets the first boundary, at the very start, match the same delimiter as the others.
  private buffer: Buffer = CRLF;
  private state: 'preamble' | 'between' | 'body' | 'done' = 'preamble';
  private current: AsyncGenerator<Buffer> | null = null;
  private ended = false;

  constructor(source: AsyncIterable<Buffer>, boundary: string) {
    this.iterator = source[Symbol.asyncIterator]();
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  /** The next part, or null after the closing boundary. */
  async next(): Promise<Part | null> {
    if (this.state === 'body' && this.current) for await (const _chunk of this.current); // skip the unread rest
    if (this.state === 'body') throw new Error('a multipart part was abandoned half-read; the rest of the body cannot be found');
    if (this.state === 'preamble') await this.skipPreamble();
    if (this.state === 'done') return null;
    await this.fill(2, 'the body ended right after a boundary');
    if (this.buffer[0] === 0x2d && this.buffer[1] === 0x2d) {
      this.state = 'done'; // "--": the closing boundary; an epilogue after it is ignored
      return null;
    }
    const headers = await this.readHeaders();
    const disposition = parseDisposition(headers.get('content-disposition') ?? '');
    this.state = 'body';
    this.current = this.partBody();
    return { name: disposition.name, filename: disposition.filename, body: this.current };
  }

  private async skipPreamble(): Promise<void> {
    for (;;) {
      const at = this.buffer.indexOf(this.delimiter);
      if (at !== -1) {
        this.buffer = this.buffer.subarray(at + this.delimiter.length);
        this.state = 'between';
        return;
      }
      this.buffer = this.buffer.subarray(Math.max(0, this.buffer.length - this.delimiter.length + 1));
      if (!(await this.pull())) throw malformed('no boundary found');
    }
  }

  /** The rest of the boundary line (transport padding allowed), then header lines up to the blank line. */
  private async readHeaders(): Promise<Map<string, string>> {
    let end = this.buffer.indexOf(HEADER_END);
    while (end === -1) {
      if (this.buffer.length > MAX_HEADER_BYTES) throw malformed(`a part's headers are longer than ${MAX_HEADER_BYTES} bytes`);
      if (!(await this.pull())) throw malformed('the body ended inside a part\'s headers');
      end = this.buffer.indexOf(HEADER_END);
    }
    if (end > MAX_HEADER_BYTES) throw malformed(`a part's headers are longer than ${MAX_HEADER_BYTES} bytes`);
    // The blank line ending the headers may directly follow the boundary line, so keep its CRLF in the search.
    const [boundaryRest = '', ...lines] = this.buffer.subarray(0, end).toString('utf8').split('\r\n');
    if (boundaryRest.trim() !== '') throw malformed('unexpected text after a boundary');
    this.buffer = this.buffer.subarray(end + HEADER_END.length);
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw malformed(`a part header is not "Name: value": ${JSON.stringify(line.slice(0, 100))}`);
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    return headers;
  }

  /** Chunks up to the next delimiter; a tail that could begin one is held back until more arrives. */
  private async *partBody(): AsyncGenerator<Buffer> {
    for (;;) {
      const at = this.buffer.indexOf(this.delimiter);
      if (at !== -1) {
        const last = this.buffer.subarray(0, at);
        this.buffer = this.buffer.subarray(at + this.delimiter.length);
        this.state = 'between';
        if (last.length > 0) yield last;
        return;
      }
      const safe = this.buffer.length - this.delimiter.length + 1;
      if (safe > 0) {
        const chunk = this.buffer.subarray(0, safe);
        this.buffer = this.buffer.subarray(safe);
        yield chunk;
      }
      if (!(await this.pull())) throw malformed('the body ended inside a part, before the closing boundary');
    }
  }

  private async fill(bytes: number, whenShort: string): Promise<void> {
    while (this.buffer.length < bytes) if (!(await this.pull())) throw malformed(whenShort);
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const result = await this.iterator.next();
    if (result.done) {
      this.ended = true;
      return false;
    }
    const chunk = result.value;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    return true;
  }
}

/** `form-data; name="file"; filename="dir/a.txt"` (and RFC 5987's `filename*=UTF-8''…`, preferred when present). */
export function parseDisposition(value: string): { name: string | null; filename: string | null } {
  const params = new Map<string, string>();
  const pattern = /;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  for (let match = pattern.exec(value); match; match = pattern.exec(value)) {
    const key = (match[1] ?? '').toLowerCase();
    const quoted = match[2];
    if (!params.has(key)) params.set(key, quoted !== undefined ? quoted.replace(/\\(["\\])/g, '$1') : (match[3] ?? '').trim());
  }
  return { name: params.get('name') ?? null, filename: extendedValue(params.get('filename*')) ?? params.get('filename') ?? null };
}

function extendedValue(value: string | undefined): string | null {
  const match = value ? /^utf-8'[^']*'(.*)$/i.exec(value) : null;
  if (!match) return null;
  try {
    return decodeURIComponent(match[1] ?? '');
  } catch {
    return null;
  }
}
