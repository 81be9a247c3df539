import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { extractLayer } from '../../src/images/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';

// ---- a tiny tar writer, so the hostile archives are built here byte by byte ----

interface Entry {
  name: string;
  type?: string;
  mode?: number;
  data?: string | Buffer;
  /** The size written in the header, when it should lie. */
  size?: number;
  linkname?: string;
  /** Raw bytes for the 12-byte mtime field. */
  mtime?: Buffer;
}

function octal(value: number, length: number): string {
  return value.toString(8).padStart(length - 1, '0') + '\0';
}

function header(entry: Entry): Buffer {
  const block = Buffer.alloc(512);
  const data = Buffer.from(entry.data ?? '');
  block.write(entry.name, 0, 100, 'utf8');
  block.write(octal(entry.mode ?? 0o644, 8), 100, 'latin1');
  block.write(octal(0, 8), 108, 'latin1');
  block.write(octal(0, 8), 116, 'latin1');
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

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return `${length}${body}`;
}

function tar(entries: Entry[], { end = true }: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    parts.push(header(entry), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// ---- fixtures ----

function scratch(t: { after: (fn: () => void) => void }): { base: string; dest: string; sentinel: string } {
  const base = mkdtempSync(join(tmpdir(), 'brig-archive-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const sentinel = join(base, 'sentinel');
  mkdirSync(sentinel);
  return { base, dest: join(base, 'layer'), sentinel };
}

function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string, prefix: string): void => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      out.push(prefix + name);
      if (lstatSync(path).isDirectory()) walk(path, `${prefix}${name}/`);
    }
  };
  walk(dir, '');
  return out;
}

async function rejects(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isBrigError(error), `a BrigError, not ${String(error)}`);
    assert.equal(error.code, 'BRIG_ARCHIVE_INVALID');
    assert.match(error.message, pattern);
    return true;
  });
}

// ---- tests ----

test('a normal tree made by the system tar round-trips: files, directories, modes, symlinks, hard links', async (t) => {
  const { base, dest } = scratch(t);
  const src = join(base, 'src');
  mkdirSync(join(src, 'bin'), { recursive: true });
  mkdirSync(join(src, 'etc'));
  writeFileSync(join(src, 'bin', 'tool'), '#!/bin/sh\necho hi\n');
  chmodSync(join(src, 'bin', 'tool'), 0o755);
  writeFileSync(join(src, 'etc', 'secret'), 'only me');
  chmodSync(join(src, 'etc', 'secret'), 0o600);
  writeFileSync(join(src, 'big'), Buffer.alloc(3 * 1024 * 1024 + 7, 'x'));
  symlinkSync('../bin/tool', join(src, 'etc', 'tool-link'));
  symlinkSync('/etc/passwd', join(src, 'abs-link'));
  linkSync(join(src, 'bin', 'tool'), join(src, 'tool-hard'));
  chmodSync(join(src, 'etc'), 0o750);
  const archive = join(base, 'tree.tar');
  execFileSync('tar', ['-cf', archive, '-C', src, '.']);

  const result = await extractLayer(archive, dest);
  assert.deepEqual(result.dropped, []);
  assert.deepEqual(result.whiteouts, []);
  assert.deepEqual(tree(dest), tree(src));
  assert.equal(result.files, 8);
  assert.equal(result.bytes, 18 + 7 + 3 * 1024 * 1024 + 7);
  assert.equal(readFileSync(join(dest, 'bin', 'tool'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.equal(statSync(join(dest, 'bin', 'tool')).mode & 0o7777, 0o755);
  assert.equal(statSync(join(dest, 'etc', 'secret')).mode & 0o7777, 0o600);
  assert.equal(statSync(join(dest, 'etc')).mode & 0o7777, 0o750);
  assert.equal(readFileSync(join(dest, 'big')).length, 3 * 1024 * 1024 + 7);
  assert.equal(readlinkSync(join(dest, 'etc', 'tool-link')), '../bin/tool');
  assert.equal(readlinkSync(join(dest, 'abs-link')), '/etc/passwd');
  assert.equal(statSync(join(dest, 'tool-hard')).ino, statSync(join(dest, 'bin', 'tool')).ino);
});

test('gzip input is detected by its magic bytes, from a stream as from a path', async (t) => {
  const { base, dest } = scratch(t);
  const gz = gzipSync(tar([{ name: 'dir/', type: '5', mode: 0o755 }, { name: 'dir/a.txt', data: 'hello' }]));
  const result = await extractLayer(Readable.from([gz.subarray(0, 1), gz.subarray(1)]), dest);
  assert.equal(result.files, 2);
  assert.equal(readFileSync(join(dest, 'dir', 'a.txt'), 'utf8'), 'hello');
  const path = join(base, 'layer.tar.gz');
  writeFileSync(path, gz);
  await extractLayer(path, join(base, 'again'));
  assert.equal(readFileSync(join(base, 'again', 'dir', 'a.txt'), 'utf8'), 'hello');
});

test('traversal with ".." is dropped and nothing lands beside destDir', async (t) => {
  const { base, dest, sentinel } = scratch(t);
  const archive = tar([
    { name: '../../etc/x', data: 'pwned' },
    { name: 'a/../../x', data: 'pwned' },
    { name: '../sentinel/y', data: 'pwned' },
    { name: 'ok', data: 'fine' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.dropped.map((entry) => entry.path), ['../../etc/x', 'a/../../x', '../sentinel/y']);
  assert.deepEqual(readdirSync(sentinel), []);
  assert.deepEqual(readdirSync(base).sort(), ['layer', 'sentinel']);
  assert.deepEqual(tree(dest), ['ok']);
});

test('an absolute name lands inside destDir', async (t) => {
  const { dest } = scratch(t);
  await extractLayer(Readable.from([tar([{ name: '/etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n' }])]), dest);
  assert.equal(readFileSync(join(dest, 'etc', 'passwd'), 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
});

test('an entry under a symlink the archive planted is dropped, nothing is written through it', async (t) => {
  const { base, dest } = scratch(t);
  const outside = join(base, 'outside');
  mkdirSync(outside);
  const archive = tar([
    { name: 'link', type: '2', linkname: outside },
    { name: 'link/file', data: 'pwned' },
    { name: 'link/deeper/file', data: 'pwned' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(readdirSync(outside), []);
  assert.deepEqual(result.dropped.map((entry) => entry.path), ['link/file', 'link/deeper/file']);
  assert.match(result.dropped[0]?.why ?? '', /symlink/);
  assert.equal(readlinkSync(join(dest, 'link')), outside);
});

test('a regular file after a symlink of the same name replaces the link, never writes through it', async (t) => {
  const { base, dest } = scratch(t);
  const victim = join(base, 'victim');
  writeFileSync(victim, 'original');
  const archive = tar([
    { name: 'x', type: '2', linkname: victim },
    { name: 'x', data: 'pwned' },
  ]);
  await extractLayer(Readable.from([archive]), dest);
  assert.equal(readFileSync(victim, 'utf8'), 'original');
  assert.ok(lstatSync(join(dest, 'x')).isFile());
  assert.equal(readFileSync(join(dest, 'x'), 'utf8'), 'pwned');
});

test('hard links out of the layer, or to what the archive did not write, are dropped', async (t) => {
  const { base, dest } = scratch(t);
  writeFileSync(join(base, 'x'), 'outside');
  const archive = tar([
    { name: 'shadow', type: '1', linkname: '/etc/shadow' },
    { name: 'up', type: '1', linkname: '../x' },
    { name: 'real', data: 'inside' },
    { name: 'sym', type: '2', linkname: '/etc/hostname' },
    { name: 'via-sym', type: '1', linkname: 'sym' },
    { name: 'good', type: '1', linkname: './real' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.dropped.map((entry) => entry.path), ['shadow', 'up', 'via-sym']);
  assert.deepEqual(tree(dest), ['good', 'real', 'sym']);
  assert.equal(statSync(join(dest, 'good')).ino, statSync(join(dest, 'real')).ino);
  assert.equal(readFileSync(join(base, 'x'), 'utf8'), 'outside');
});

test('device nodes and fifos are dropped and listed; set-id bits are cleared and listed', async (t) => {
  const { dest } = scratch(t);
  const archive = tar([
    { name: 'dev/sda', type: '4', mode: 0o660 },
    { name: 'dev/null', type: '3', mode: 0o666 },
    { name: 'pipe', type: '6' },
    { name: 'bin/su', mode: 0o4755, data: 'elf' },
    { name: 'tmp/', type: '5', mode: 0o1777 },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.dropped, [
    { path: 'dev/sda', why: 'block device not allowed in a layer' },
    { path: 'dev/null', why: 'character device not allowed in a layer' },
    { path: 'pipe', why: 'fifo not allowed in a layer' },
    { path: 'bin/su', why: 'set-id bits cleared' },
    { path: 'tmp', why: 'set-id bits cleared' },
  ]);
  assert.equal(statSync(join(dest, 'bin', 'su')).mode & 0o7777, 0o755);
  assert.equal(statSync(join(dest, 'tmp')).mode & 0o7777, 0o777);
  assert.deepEqual(tree(dest), ['bin', 'bin/su', 'tmp']);
});

test('whiteouts are recorded, not created', async (t) => {
  const { dest } = scratch(t);
  const archive = tar([
    { name: 'etc/', type: '5', mode: 0o755 },
    { name: 'etc/.wh.motd' },
    { name: '.wh.root-file' },
    { name: 'var/cache/.wh..wh..opq' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.whiteouts, ['etc/motd', 'root-file', 'var/cache/']);
  assert.deepEqual(tree(dest), ['etc']);
});

test('pax path, linkpath and size, and GNU long names, are honoured', async (t) => {
  const { dest } = scratch(t);
  const long = `${'d'.repeat(120)}/${'f'.repeat(120)}`;
  const pax = paxRecord('path', long) + paxRecord('size', '3');
  const archive = tar([
    { name: 'PaxHeader', type: 'x', data: pax },
    { name: 'short', data: 'abc', size: 999 },
    { name: 'PaxHeader', type: 'x', data: paxRecord('linkpath', 'z'.repeat(150)) },
    { name: 'plink', type: '2' },
    { name: '././@LongLink', type: 'L', data: `gnu/${'g'.repeat(200)}\0` },
    { name: 'trunc', data: 'gnu' },
    { name: '././@LongLink', type: 'K', data: `${'k'.repeat(200)}\0` },
    { name: 'glink', type: '2' },
  ]);
  // the 'short' entry's header lies (999); pax size 3 wins, so the writer's padding for 3 bytes is right
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.dropped, []);
  assert.equal(readFileSync(join(dest, long), 'utf8'), 'abc');
  assert.equal(readlinkSync(join(dest, 'plink')), 'z'.repeat(150));
  assert.equal(readFileSync(join(dest, 'gnu', 'g'.repeat(200)), 'utf8'), 'gnu');
  assert.equal(readlinkSync(join(dest, 'glink')), 'k'.repeat(200));
});

test('bombs are refused whole and destDir is removed: a huge declared size, too many entries, a huge pax header', async (t) => {
  const { base } = scratch(t);
  const huge = tar([{ name: 'ok', data: 'x' }, { name: 'bomb', size: 2 ** 33 - 1 }], { end: false });
  await rejects(extractLayer(Readable.from([huge]), join(base, 'a'), { maxEntryBytes: 2 ** 30 }), /maxEntryBytes/);
  assert.equal(existsSync(join(base, 'a')), false);
  const many = tar(Array.from({ length: 20 }, (_, index) => ({ name: `f${index}`, data: '' })));
  await rejects(extractLayer(Readable.from([many]), join(base, 'b'), { maxEntries: 10 }), /maxEntries/);
  assert.equal(existsSync(join(base, 'b')), false);
  const total = tar([{ name: 'a', data: 'x'.repeat(600) }, { name: 'b', data: 'x'.repeat(600) }]);
  await rejects(extractLayer(Readable.from([total]), join(base, 'c'), { maxTotalBytes: 1000 }), /maxTotalBytes/);
  assert.equal(existsSync(join(base, 'c')), false);
  const pax = tar([{ name: 'PaxHeader', type: 'x', size: 2 ** 21 }], { end: false });
  await rejects(extractLayer(Readable.from([pax]), join(base, 'd')), /maxPaxBytes/);
  const longPath = tar([{ name: 'PaxHeader', type: 'x', data: paxRecord('path', 'p/'.repeat(3000)) }, { name: 'x' }]);
  await rejects(extractLayer(Readable.from([longPath]), join(base, 'e')), /maxPathBytes/);
  assert.deepEqual(readdirSync(base), ['sentinel']);
});

test('a declared size beyond the stream, a truncated archive and a bad checksum are BRIG_ARCHIVE_INVALID, with nothing kept', async (t) => {
  const { base } = scratch(t);
  const lying = tar([{ name: 'ok', data: 'fine' }, { name: 'liar', data: 'short', size: 10_000 }]);
  await rejects(extractLayer(Readable.from([lying]), join(base, 'a')), /truncated/);
  const whole = tar([{ name: 'ok', data: 'y'.repeat(5000) }]);
  await rejects(extractLayer(Readable.from([whole.subarray(0, 3000)]), join(base, 'b')), /truncated/);
  await rejects(extractLayer(Readable.from([whole.subarray(0, 512 + 5120)]), join(base, 'c')), /truncated/);
  const corrupt = Buffer.from(whole);
  corrupt[10] = 0x41;
  await rejects(extractLayer(Readable.from([corrupt]), join(base, 'd')), /checksum/);
  const gz = gzipSync(whole);
  await rejects(extractLayer(Readable.from([gz.subarray(0, gz.length - 20)]), join(base, 'e')), /gzip|truncated/);
  const badGz = Buffer.from(gz);
  badGz.fill(0xaa, 10, 30);
  await rejects(extractLayer(Readable.from([badGz]), join(base, 'g')), /gzip stream is corrupt/);
  await rejects(extractLayer(Readable.from([Buffer.from('not a tar archive at all')]), join(base, 'f')), /truncated|checksum|octal/);
  assert.deepEqual(readdirSync(base), ['sentinel']);
});

test('destDir must be new or empty; NUL and empty names are dropped', async (t) => {
  const { base, dest } = scratch(t);
  mkdirSync(dest);
  writeFileSync(join(dest, 'keep'), 'mine');
  await assert.rejects(extractLayer(Readable.from([tar([])]), dest), /not an empty directory/);
  assert.equal(readFileSync(join(dest, 'keep'), 'utf8'), 'mine');
  const empty = join(base, 'empty');
  mkdirSync(empty);
  const pax = paxRecord('path', 'a\0b');
  const result = await extractLayer(Readable.from([tar([{ name: 'PaxHeader', type: 'x', data: pax }, { name: 'x' }, { name: './', type: '5' }, { name: '/' }])]), empty);
  assert.deepEqual(result.dropped, [{ path: 'a\0b', why: 'NUL byte in name' }, { path: '/', why: 'empty name' }]);
  assert.deepEqual(readdirSync(empty), []);
  const tooLong = tar([{ name: 'PaxHeader', type: 'x', data: paxRecord('path', `d/${'n'.repeat(300)}`) }, { name: 'x', data: 'data' }, { name: 'after', data: 'ok' }]);
  const farFuture = Buffer.from([0x80, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  await extractLayer(Readable.from([tar([{ name: 'future', data: 'f', mtime: farFuture }])]), join(base, 'future'));
  assert.equal(readFileSync(join(base, 'future', 'future'), 'utf8'), 'f');
  const long = await extractLayer(Readable.from([tooLong]), join(base, 'long'));
  assert.deepEqual(long.dropped.map((entry) => entry.why), ['a name component is longer than the filesystem allows']);
  assert.equal(readFileSync(join(base, 'long', 'after'), 'utf8'), 'ok');
});
