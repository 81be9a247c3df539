import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import brigSpawn from 'brig-spawn';
import { extractLayer } from '../../src/images/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';
import { paxRecord, tar } from '../helpers/tar.ts';

// ---- a tiny tar writer, so the hostile archives are built here byte by byte ----

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
    { name: 'var/mail/', type: '5', mode: 0o2775 },
    { name: 'sticky-file', mode: 0o1644 },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.dropped, [
    { path: 'dev/sda', why: 'block device not allowed in a layer' },
    { path: 'dev/null', why: 'character device not allowed in a layer' },
    { path: 'pipe', why: 'fifo not allowed in a layer' },
    { path: 'bin/su', why: 'set-id bits cleared' },
    { path: 'var/mail', why: 'set-id bits cleared' },
    { path: 'sticky-file', why: 'set-id bits cleared' },
  ]);
  assert.equal(statSync(join(dest, 'bin', 'su')).mode & 0o7777, 0o755);
  assert.equal(statSync(join(dest, 'tmp')).mode & 0o7777, 0o1777, 'a directory keeps its sticky bit');
  assert.equal(statSync(join(dest, 'var/mail')).mode & 0o7777, 0o775);
  assert.equal(statSync(join(dest, 'sticky-file')).mode & 0o7777, 0o644);
  assert.deepEqual(tree(dest), ['bin', 'bin/su', 'sticky-file', 'tmp', 'var', 'var/mail']);
});

const asRoot = process.geteuid?.() === 0;

function isWhiteout(path: string): boolean {
  const info = lstatSync(path);
  return info.isCharacterDevice() && info.rdev === 0;
}

test('whiteouts become overlay whiteouts (char 0/0) and an opaque marker the trusted.overlay.opaque xattr', { skip: !asRoot && 'trusted xattrs need root' }, async (t) => {
  const { dest } = scratch(t);
  const archive = tar([
    { name: 'etc/', type: '5', mode: 0o755 },
    { name: 'etc/.wh.motd' },
    { name: '.wh.root-file' },
    { name: 'var/cache/.wh..wh..opq' },
    { name: 'var/cache/kept', data: 'k' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.whiteouts, ['etc/motd', 'root-file', 'var/cache/']);
  assert.deepEqual(result.dropped, []);
  assert.deepEqual(tree(dest), ['etc', 'etc/motd', 'root-file', 'var', 'var/cache', 'var/cache/kept']);
  assert.ok(isWhiteout(join(dest, 'etc/motd')));
  assert.ok(isWhiteout(join(dest, 'root-file')));
  assert.equal(result.files, 2, 'whiteouts are not counted as files');
  assert.equal(brigSpawn.isOpaque(join(dest, 'var/cache')), true);
  assert.equal(brigSpawn.isOpaque(join(dest, 'var')), false);
  assert.equal(brigSpawn.isOpaque(join(dest, 'etc')), false);
  // the xattr is the kernel's own, as another reader (Python's os.getxattr) sees it
  const script = 'import os, sys; sys.stdout.write(os.getxattr(sys.argv[1], "trusted.overlay.opaque").decode())';
  assert.equal(execFileSync('python3', ['-c', script, join(dest, 'var/cache')], { encoding: 'utf8' }), 'y');
});

test('a whiteout named "..", ".", aufs metadata, at an existing entry or through a symlinked parent is dropped; nothing lands outside', async (t) => {
  const { dest, sentinel } = scratch(t);
  const archive = tar([
    { name: '.wh...' },
    { name: 'a/.wh..' },
    { name: '.wh..wh.plnk' },
    { name: '.wh..wh..opq' },
    { name: 'link', type: '2', linkname: sentinel },
    { name: 'link/.wh.victim' },
    { name: 'link/.wh..wh..opq' },
    { name: 'file', data: 'x' },
    { name: '.wh.file' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  assert.deepEqual(result.dropped.map((one) => one.path), ['.wh...', 'a/.wh..', '.wh..wh.plnk', '.wh..wh..opq', 'link/.wh.victim', 'link/.wh..wh..opq', '.wh.file']);
  assert.deepEqual(result.whiteouts, []);
  assert.deepEqual(readdirSync(sentinel), []);
  if (asRoot) assert.equal(brigSpawn.isOpaque(sentinel), false);
  assert.equal(readFileSync(join(dest, 'file'), 'utf8'), 'x');
  assert.deepEqual(tree(dest), ['file', 'link']);
});

test('entries keep the tar\'s uid and gid; an id past 65535 becomes 65534 and is listed', { skip: !asRoot && 'chown needs root' }, async (t) => {
  const { dest } = scratch(t);
  const archive = tar([
    { name: 'home/user/', type: '5', mode: 0o750, uid: 1000, gid: 1000 },
    { name: 'home/user/notes', data: 'n', uid: 1000, gid: 100 },
    { name: 'home/user/link', type: '2', linkname: 'notes', uid: 1000, gid: 1000 },
    { name: 'home/user/hard', type: '1', linkname: 'home/user/notes', uid: 7, gid: 7 },
    { name: 'big-ids', data: 'b', uid: 70000, gid: 2_000_000 },
    { name: 'root-file', data: 'r' },
  ]);
  const result = await extractLayer(Readable.from([archive]), dest);
  const owner = (path: string): string => {
    const info = lstatSync(join(dest, path));
    return `${info.uid}:${info.gid}`;
  };
  assert.equal(owner('home/user'), '1000:1000');
  assert.equal(owner('home/user/notes'), '1000:100');
  assert.equal(owner('home/user/link'), '1000:1000');
  assert.equal(owner('home/user/hard'), '1000:100', 'a hard link is the same file: its own header\'s ids do not apply');
  assert.equal(owner('big-ids'), '65534:65534');
  assert.equal(owner('root-file'), '0:0');
  assert.equal(owner('home'), '0:0', 'a parent the archive never named is root\'s');
  assert.equal(statSync(join(dest, 'home/user')).mode & 0o7777, 0o750);
  assert.deepEqual(result.dropped, [
    { path: 'big-ids', why: 'uid 70000 is past 65535: made 65534 (nobody)' },
    { path: 'big-ids', why: 'gid 2000000 is past 65535: made 65534 (nobody)' },
  ]);
});

test('a pax uid and gid override the header\'s', { skip: !asRoot && 'chown needs root' }, async (t) => {
  const { dest } = scratch(t);
  const archive = tar([
    { name: 'PaxHeader', type: 'x', data: paxRecord('uid', '4242') + paxRecord('gid', '4343') },
    { name: 'owned', data: 'o', uid: 1, gid: 1 },
  ]);
  await extractLayer(Readable.from([archive]), dest);
  assert.equal(statSync(join(dest, 'owned')).uid, 4242);
  assert.equal(statSync(join(dest, 'owned')).gid, 4343);
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
