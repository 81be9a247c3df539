import assert from 'node:assert/strict';

/** One newc entry as it sits in the archive: every header field, the name and the data. */
export interface NewcEntry {
  inode: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devmajor: number;
  devminor: number;
  rdevmajor: number;
  rdevminor: number;
  check: number;
  name: string;
  data: Buffer;
  /** Where its header starts. */
  offset: number;
}

const FIELDS = ['inode', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'] as const;

/**
 * A strict reader of the newc cpio format, written from the format's
 * description (not from the writer): magic 070701, thirteen 8-digit hex
 * fields, the name with its NUL padded to a multiple of 4 counted from the
 * header's start, the data padded to a multiple of 4, and padding that is
 * zeros. Returns the entries before TRAILER!!!, and fails on anything after it.
 */
export function readNewc(archive: Buffer): NewcEntry[] {
  const entries: NewcEntry[] = [];
  let at = 0;
  for (;;) {
    assert.ok(at + 110 <= archive.length, `a header at ${at} runs past the end`);
    assert.equal(at % 4, 0, `the header at ${at} is not 4-aligned`);
    assert.equal(archive.toString('ascii', at, at + 6), '070701', `magic at ${at}`);
    const field: Record<string, number> = {};
    FIELDS.forEach((name, index) => {
      const text = archive.toString('ascii', at + 6 + index * 8, at + 14 + index * 8);
      assert.match(text, /^[0-9a-f]{8}$/, `${name} at ${at} is 8 lowercase hex digits`);
      field[name] = Number.parseInt(text, 16);
    });
    const nameStart = at + 110;
    const nameEnd = nameStart + (field.namesize as number);
    assert.equal(archive[nameEnd - 1], 0, `the name at ${nameStart} ends with NUL`);
    const name = archive.toString('utf8', nameStart, nameEnd - 1);
    assert.ok(!name.includes('\0'), `the name at ${nameStart} has no NUL inside`);
    const dataStart = align(nameEnd);
    assertZeros(archive, nameEnd, dataStart);
    const dataEnd = dataStart + (field.filesize as number);
    const next = align(dataEnd);
    assert.ok(next <= archive.length, `${name}'s data runs past the end`);
    assertZeros(archive, dataEnd, next);
    if (name === 'TRAILER!!!') {
      assert.equal(next, archive.length, 'nothing follows the trailer');
      return entries;
    }
    const { filesize: _size, namesize: _namesize, ...header } = field;
    entries.push({ ...(header as Omit<NewcEntry, 'name' | 'data' | 'offset'>), name, data: archive.subarray(dataStart, dataEnd), offset: at });
    at = next;
  }
}

function align(offset: number): number {
  return (offset + 3) & ~3;
}

function assertZeros(archive: Buffer, from: number, to: number): void {
  for (let at = from; at < to; at++) assert.equal(archive[at], 0, `padding at ${at} is zero`);
}
