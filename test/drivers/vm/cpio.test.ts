import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpioArchive, type CpioEntry } from '../../../src/drivers/vm/cpio.ts';
import { findExecutable } from '../../../src/drivers/plan/index.ts';
import { isBrigError } from '../../../src/protocol/index.ts';
import { readNewc } from './cpio-reader.ts';

/** Names and data of every length modulo 4, so each padding case is written and read. */
const ENTRIES: CpioEntry[] = [
  { kind: 'directory', path: 'd', mode: 0o755 },
  { kind: 'directory', path: 'd/sub', mode: 0o700 },
  { kind: 'directory', path: 'tmp', mode: 0o1777 },
  { kind: 'file', path: 'empty', mode: 0o644, data: Buffer.alloc(0) },
  { kind: 'file', path: 'd/one', mode: 0o600, data: Buffer.from('1') },
  { kind: 'file', path: 'd/two2', mode: 0o644, data: Buffer.from('22') },
  { kind: 'file', path: 'd/three', mode: 0o755, data: Buffer.from('333') },
  { kind: 'file', path: 'd/sub/four', mode: 0o640, data: Buffer.from('4444') },
  { kind: 'file', path: 'd/sub/five5', mode: 0o644, data: Buffer.from('55555') },
  { kind: 'file', path: 'binary', mode: 0o644, data: Buffer.from(Array.from({ length: 70_001 }, (_, index) => (index * 31) % 256)) },
  { kind: 'symlink', path: 'link', target: 'd/sub/four' },
  { kind: 'symlink', path: 'd/abs', target: '/lib/modules' },
];

test('newc: every entry reads back with its name, mode, data and the fixed fields (mtime, ids, devices 0; inodes counted)', () => {
  const read = readNewc(cpioArchive(ENTRIES));
  assert.deepEqual(
    read.map((entry) => entry.name),
    ENTRIES.map((entry) => entry.path),
  );
  read.forEach((entry, index) => {
    const want = ENTRIES[index] as CpioEntry;
    assert.equal(entry.inode, index + 1, `${entry.name}: inode`);
    assert.deepEqual([entry.uid, entry.gid, entry.mtime, entry.devmajor, entry.devminor, entry.rdevmajor, entry.rdevminor, entry.check], [0, 0, 0, 0, 0, 0, 0, 0], `${entry.name}: fixed fields`);
    if (want.kind === 'directory') {
      assert.equal(entry.mode, 0o040000 | want.mode);
      assert.equal(entry.nlink, 2);
      assert.equal(entry.data.length, 0);
    } else if (want.kind === 'file') {
      assert.equal(entry.mode, 0o100000 | want.mode);
      assert.equal(entry.nlink, 1);
      assert.ok(entry.data.equals(want.data), `${entry.name}: data`);
    } else {
      assert.equal(entry.mode, 0o120777);
      assert.equal(entry.data.toString(), want.target);
    }
  });
});

test('newc: the bytes of a small archive are exactly the format\'s, trailer and padding included', () => {
  const archive = cpioArchive([
    { kind: 'directory', path: 'a', mode: 0o755 },
    { kind: 'file', path: 'a/b', mode: 0o644, data: Buffer.from('hi') },
  ]);
  const expected =
    // "a": 110-byte header + "a\0" = 112, aligned already; no data
    '070701' + '00000001' + '000041ed' + '00000000' + '00000000' + '00000002' + '00000000' + '00000000' + '00000000' + '00000000' + '00000000' + '00000000' + '00000002' + '00000000' + 'a\0' +
    // "a/b": header + "a/b\0" = 114, two bytes of padding; "hi" and two more
    '070701' + '00000002' + '000081a4' + '00000000' + '00000000' + '00000001' + '00000000' + '00000002' + '00000000' + '00000000' + '00000000' + '00000000' + '00000004' + '00000000' + 'a/b\0' + '\0\0' + 'hi' + '\0\0' +
    // the trailer: header + "TRAILER!!!\0" = 121, three bytes of padding
    '070701' + '00000000' + '00000000' + '00000000' + '00000000' + '00000001' + '00000000' + '00000000' + '00000000' + '00000000' + '00000000' + '00000000' + '0000000b' + '00000000' + 'TRAILER!!!\0' + '\0\0\0';
  assert.equal(archive.toString('latin1'), expected);
});

test('newc: the same entries make the same bytes', () => {
  assert.ok(cpioArchive(ENTRIES).equals(cpioArchive(ENTRIES)));
});

/** GNU cpio, if this host has it (tests never install it). */
const CPIO = findExecutable('cpio', process.env.PATH);

test('newc: GNU cpio extracts the archive to the same files, modes and links', { skip: CPIO === null ? 'no cpio on PATH (the strict reader above checks the format alone)' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'brig-cpio-'));
  try {
    execFileSync(CPIO as string, ['-idm', '--quiet', '--no-absolute-filenames'], { cwd: dir, input: cpioArchive(ENTRIES) });
    for (const entry of ENTRIES) {
      const path = join(dir, entry.path);
      const info = lstatSync(path);
      if (entry.kind === 'directory') assert.ok(info.isDirectory() && (info.mode & 0o7777) === entry.mode, `${entry.path}: directory ${entry.mode.toString(8)}`);
      else if (entry.kind === 'file') {
        assert.equal(info.mode & 0o7777, entry.mode, `${entry.path}: mode`);
        assert.ok(readFileSync(path).equals(entry.data), `${entry.path}: data`);
        assert.equal(info.mtimeMs, 0, `${entry.path}: mtime`);
      } else assert.equal(readlinkSync(path), entry.target);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('newc: a path that is absolute, has . or .., repeats, or comes before its directory is refused', () => {
  const refused = (entries: CpioEntry[], pattern: RegExp): void => {
    assert.throws(
      () => cpioArchive(entries),
      (error: unknown) => isBrigError(error) && error.code === 'BRIG_INTERNAL' && pattern.test(error.message),
    );
  };
  const file = (path: string): CpioEntry => ({ kind: 'file', path, mode: 0o644, data: Buffer.from('x') });
  refused([file('/init')], /not a relative path/);
  refused([file('a/../init')], /not a relative path/);
  refused([file('./init')], /not a relative path/);
  refused([file('a//b')], /not a relative path/);
  refused([file('TRAILER!!!')], /not a relative path/);
  refused([file('init'), file('init')], /twice/);
  refused([file('lib/modules/fuse.ko')], /before its directory lib\/modules/);
  refused([{ kind: 'directory', path: 'lib', mode: 0o755 }, file('lib/modules/fuse.ko')], /before its directory lib\/modules/);
  // a file is not a directory to put things in
  refused([file('lib'), file('lib/x')], /before its directory lib/);
});
