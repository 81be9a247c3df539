import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, linkSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import brigSpawn from 'brig-spawn';
import { commitDirectory, extractLayer, layerTar, openImageStore } from '../../src/images/index.ts';

const asRoot = process.geteuid?.() === 0;

function scratch(t: { after: (fn: () => void) => void }): string {
  const base = mkdtempSync(join(tmpdir(), 'brig-layertar-'));
  t.after(() => {
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  return base;
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every entry under dir, with what a layer must keep of it: type, mode, owner, mtime, content or target, opaque. */
function describe(dir: string): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (at: string, prefix: string): void => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      const info = lstatSync(path);
      const common = `${prefix}${name} ${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid}`;
      if (info.isDirectory()) {
        out.push(`${common} dir t=${Math.floor(info.mtimeMs / 1000)}${brigSpawn.isOpaque(path) ? ' opaque' : ''}`);
        walk(path, `${prefix}${name}/`);
      } else if (info.isSymbolicLink()) out.push(`${common} -> ${readlinkSync(path)} t=${Math.floor(info.mtimeMs / 1000)}`);
      else if (info.isCharacterDevice()) out.push(`${prefix}${name} whiteout ${info.rdev}`);
      else {
        const first = inodes.get(info.ino);
        if (first === undefined) inodes.set(info.ino, `${prefix}${name}`);
        out.push(`${common} file t=${Math.floor(info.mtimeMs / 1000)} ${first === undefined ? readFileSync(path, 'utf8').slice(0, 40) : `same as ${first}`}`);
      }
    }
  };
  walk(dir, '');
  return out;
}

/** A tree with everything a layer holds: owners, modes, times, long names, links, a whiteout, an opaque directory. */
function makeTree(root: string): void {
  const longDir = `${'d'.repeat(90)}/${'e'.repeat(90)}/${'f'.repeat(90)}`;
  mkdirSync(join(root, 'home/user/.cache'), { recursive: true });
  mkdirSync(join(root, longDir), { recursive: true });
  writeFileSync(join(root, 'home/user/notes'), 'notes\n');
  writeFileSync(join(root, longDir, `${'g'.repeat(200)}`), 'deep');
  writeFileSync(join(root, 'empty'), '');
  writeFileSync(join(root, 'big'), Buffer.alloc(1 << 21, 'b'));
  chmodSync(join(root, 'big'), 0o751);
  linkSync(join(root, 'home/user/notes'), join(root, 'hard-notes'));
  symlinkSync('/etc/passwd', join(root, 'abs-link'));
  symlinkSync('t'.repeat(150), join(root, 'long-link'));
  brigSpawn.makeWhiteout(join(root, 'home/user/gone'));
  brigSpawn.setOpaque(join(root, 'home/user/.cache'));
  for (const path of ['home/user', 'home/user/notes', 'home/user/.cache']) lchownSync(join(root, path), 1000, 1000);
  lchownSync(join(root, 'abs-link'), 1000, 100);
  chmodSync(join(root, 'home/user'), 0o750);
  mkdirSync(join(root, 'tmp'));
  chmodSync(join(root, 'tmp'), 0o1777);
  for (const path of ['home/user/notes', 'big', 'empty', 'home/user/.cache', 'home/user', 'home', longDir, `${'d'.repeat(90)}/${'e'.repeat(90)}`, `${'d'.repeat(90)}`]) {
    utimesSync(join(root, path), 1_600_000_000, 1_600_000_000);
  }
}

test('layerTar round-trips a layer: same tree, owners, modes, times, whiteouts, opaque dirs, hard links; the same bytes again', { skip: !asRoot && 'owners, whiteouts and trusted xattrs need root' }, async (t) => {
  const base = scratch(t);
  const src = join(base, 'src');
  mkdirSync(src);
  makeTree(src);
  const first = await bytesOf(layerTar(src));
  const once = join(base, 'once');
  const result = await extractLayer(Readable.from([first]), once);
  assert.deepEqual(result.dropped, []);
  assert.deepEqual(result.whiteouts.sort(), ['home/user/.cache/', 'home/user/gone']);
  assert.deepEqual(describe(once), describe(src));
  assert.ok(describe(src).some((line) => line.startsWith('home/user/.cache 755 1000:1000 dir') && line.endsWith(' opaque')));
  assert.ok(describe(once).includes('home/user/notes 644 1000:1000 file t=1600000000 same as hard-notes'));
  assert.ok(describe(once).some((line) => line.startsWith('tmp 1777 0:0 dir')), 'a sticky directory stays sticky');
  assert.equal(lstatSync(join(once, 'hard-notes')).ino, lstatSync(join(once, 'home/user/notes')).ino);

  const second = await bytesOf(layerTar(once));
  assert.ok(second.equals(first), 'extracting and writing again gives the same bytes (so the same digest)');
  // GNU tar reads it too, long names and pax records included
  const listing = execFileSync('tar', ['-tvf', '-'], { input: first, encoding: 'utf8' });
  assert.match(listing, /home\/user\/\.wh\.gone/);
  assert.match(listing, /home\/user\/\.cache\/\.wh\.\.wh\.\.opq/);
  assert.match(listing, new RegExp(`${'g'.repeat(200)}`));
  assert.match(listing, /long-link -> t{150}/);
  assert.match(listing, /home\/user\/notes link to hard-notes/);
});

test('a symlink is written as a symlink, never followed, even to a directory outside', async (t) => {
  const base = scratch(t);
  const src = join(base, 'src');
  const outside = join(base, 'outside');
  mkdirSync(src);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'host secret');
  symlinkSync(outside, join(src, 'to-dir'));
  symlinkSync(join(outside, 'secret'), join(src, 'to-file'));
  symlinkSync('..', join(src, 'up'));
  const bytes = await bytesOf(layerTar(src));
  assert.equal(bytes.includes(Buffer.from('host secret')), false);
  const listing = execFileSync('tar', ['-tvf', '-'], { input: bytes, encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listing.map((line) => line.replace(/^.* (to-dir|to-file|up) -> /, '$1 -> ')), [`to-dir -> ${outside}`, `to-file -> ${join(outside, 'secret')}`, 'up -> ..']);
});

test('owners come out minus idOffset; an id outside the sandbox\'s range becomes 65534; commitDirectory makes the layer', { skip: !asRoot && 'chown needs root' }, async (t) => {
  const base = scratch(t);
  const upper = join(base, 'upper');
  const offset = 100_000;
  mkdirSync(join(upper, 'home/user'), { recursive: true });
  writeFileSync(join(upper, 'home/user/made-by-user'), 'u');
  writeFileSync(join(upper, 'made-by-root'), 'r');
  writeFileSync(join(upper, 'foreign'), 'f');
  lchownSync(join(upper, 'home/user'), offset + 1000, offset + 1000);
  lchownSync(join(upper, 'home/user/made-by-user'), offset + 1000, offset + 1000);
  lchownSync(join(upper, 'made-by-root'), offset, offset);
  lchownSync(join(upper, 'foreign'), 5, 5);
  brigSpawn.makeWhiteout(join(upper, 'deleted'));
  const store = await openImageStore(join(base, 'store'));
  const layer = await commitDirectory(store, upper, offset);
  assert.deepEqual(layer.whiteouts, ['deleted']);
  const dir = await store.layerDir(layer.digest);
  const owner = (path: string): string => `${lstatSync(join(dir, path)).uid}:${lstatSync(join(dir, path)).gid}`;
  assert.equal(owner('home/user/made-by-user'), '1000:1000');
  assert.equal(owner('home/user'), '1000:1000');
  assert.equal(owner('made-by-root'), '0:0');
  assert.equal(owner('foreign'), '65534:65534');
  assert.ok(lstatSync(join(dir, 'deleted')).isCharacterDevice());
  // the same directory committed twice is one layer
  assert.equal((await commitDirectory(store, upper, offset)).existed, true);
});
