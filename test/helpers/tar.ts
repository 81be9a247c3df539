/**
 * Tar archives written byte by byte, so a test can hold what no directory
 * can: traversal, devices, lying sizes, raw mtime fields.
 */
export interface Entry {
  name: string;
  type?: string;
  mode?: number;
  data?: string | Buffer;
  /** The size written in the header, when it should lie. */
  size?: number;
  linkname?: string;
  /** Raw bytes for the 12-byte mtime field. */
  mtime?: Buffer;
  uid?: number;
  gid?: number;
}

function octal(value: number, length: number): string {
  return value.toString(8).padStart(length - 1, '0') + '\0';
}

function header(entry: Entry): Buffer {
  const block = Buffer.alloc(512);
  const data = Buffer.from(entry.data ?? '');
  block.write(entry.name, 0, 100, 'utf8');
  block.write(octal(entry.mode ?? 0o644, 8), 100, 'latin1');
  block.write(octal(entry.uid ?? 0, 8), 108, 'latin1');
  block.write(octal(entry.gid ?? 0, 8), 116, 'latin1');
  block.write(octal(entry.size ?? data.length, 12), 124, 'latin1');
  block.write(octal(1_700_000_000, 12), 136, 'latin1');
  entry.mtime?.copy(block, 136);
  block.write('        ', 148, 'latin1');
  block.write(entry.type ?? '0', 156, 'latin1');
  block.write(entry.linkname ?? '', 157, 100, 'utf8');
  block.write('ustar\0' + '00', 257, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 'latin1');
  return block;
}

export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return `${length}${body}`;
}

export function tar(entries: Entry[], { end = true }: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    parts.push(header(entry), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
