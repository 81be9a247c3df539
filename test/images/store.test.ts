import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { openImageStore } from '../../src/images/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';

function scratch(t: { after: (fn: () => void) => void }): string {
  const base = mkdtempSync(join(tmpdir(), 'brig-store-'));
  t.after(() => {
    // layer roots are 0555; as a non-root user rm needs them writable again
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  return base;
}

/** A tar made by the system's tar from files { path: content } under a fresh directory. */
function systemTar(base: string, label: string, files: Record<string, string>): string {
  const root = join(base, `src-${label}`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const out = join(base, `${label}.tar`);
  execFileSync('tar', ['-cf', out, '-C', root, '.']);
  return out;
}

function sha256sum(path: string): string {
  return `sha256:${execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0]}`;
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isBrigError(error), String(error));
    return error.code;
  }
  return 'no error';
}

test('a layer\'s digest is the sha256 of its uncompressed tar, as sha256sum gives it, and its root is read-only', async (t) => {
  const base = scratch(t);
  const archive = systemTar(base, 'one', { 'etc/hello': 'hello\n', 'bin/tool': 'x'.repeat(5000) });
  const store = await openImageStore(join(base, 'store'));
  assert.equal(statSync(join(base, 'store')).mode & 0o777, 0o700);
  const layer = await store.importLayer(archive);
  assert.equal(layer.digest, sha256sum(archive));
  assert.equal(layer.bytes, 5006);
  assert.equal(layer.existed, false);
  const dir = store.layerPath(layer.digest);
  assert.equal(statSync(dir).mode & 0o777, 0o555);
  assert.equal(readFileSync(join(dir, 'etc/hello'), 'utf8'), 'hello\n');
  assert.equal((await store.layer(layer.digest))?.tarBytes, statSync(archive).size);
});

test('the same tar imported twice, once gzipped and from a stream, is one layer', async (t) => {
  const base = scratch(t);
  const archive = systemTar(base, 'one', { 'a/b': 'content' });
  const store = await openImageStore(join(base, 'store'));
  const first = await store.importLayer(archive);
  const second = await store.importLayer(Readable.from([gzipSync(readFileSync(archive))]));
  assert.equal(second.digest, first.digest);
  assert.equal(second.existed, true);
  assert.deepEqual(readdirSync(join(base, 'store/layers')).sort(), [first.digest.slice(7), `${first.digest.slice(7)}.json`].sort());
  assert.deepEqual(readdirSync(join(base, 'store/tmp')), []);
});

test('a large layer streamed in small chunks, gzipped, hashes to sha256sum of its tar', async (t) => {
  const base = scratch(t);
  const archive = systemTar(base, 'large', { 'blob': randomBytes(3 << 20).toString('base64'), 'small': 's' });
  const store = await openImageStore(join(base, 'store'));
  const gz = gzipSync(readFileSync(archive));
  const pieces = Array.from({ length: Math.ceil(gz.length / 1000) }, (_, index) => gz.subarray(index * 1000, (index + 1) * 1000));
  const layer = await store.importLayer(Readable.from(pieces));
  assert.equal(layer.digest, sha256sum(archive));
  assert.equal(readFileSync(join(store.layerPath(layer.digest), 'small'), 'utf8'), 's');
});

test('images sharing a layer: list shows sizes and shared bytes; remove one and prune frees only its own layer', async (t) => {
  const base = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const common = await store.importLayer(systemTar(base, 'common', { 'usr/lib/big': 'c'.repeat(1000) }));
  const onlyA = await store.importLayer(systemTar(base, 'a', { 'app/a': 'a'.repeat(100) }));
  const onlyB = await store.importLayer(systemTar(base, 'b', { 'app/b': 'b'.repeat(10) }));
  const a = await store.tagImage('team/app-a', 'v1', { layers: [common.digest, onlyA.digest], config: { env: ['A=1'], cmd: ['run'] } });
  assert.deepEqual(a.config, { env: ['A=1'], workdir: '/', user: 'root', cmd: ['run'], entrypoint: null, labels: {} });
  await store.tagImage('app-b', 'latest', { layers: [common.digest, onlyB.digest] });
  const list = await store.listImages();
  assert.deepEqual(list.map(({ name, tag, size, shared }) => ({ name, tag, size, shared })), [
    { name: 'app-b', tag: 'latest', size: 1010, shared: 1000 },
    { name: 'team/app-a', tag: 'v1', size: 1100, shared: 1000 },
  ]);
  assert.deepEqual((await store.getImage('app-b')).layers, [common.digest, onlyB.digest]);
  assert.equal((await store.getImage('team/app-a:v1')).name, 'team/app-a');
  // The names alone (what a daemon reads on every create) are the list's, in the index's order.
  assert.deepEqual(await store.imageNames(), [{ name: 'team/app-a', tag: 'v1' }, { name: 'app-b', tag: 'latest' }]);

  await store.removeImage('team/app-a:v1');
  const pruned = await store.prune();
  assert.deepEqual(pruned, { layers: [onlyA.digest], bytes: 100 });
  assert.equal(existsSync(store.layerPath(onlyA.digest)), false);
  assert.equal(existsSync(store.layerPath(common.digest)), true);
  assert.deepEqual((await store.listImages()).map((image) => [image.name, image.size, image.shared]), [['app-b', 1010, 0]]);
  assert.deepEqual(await store.prune(), { layers: [], bytes: 0 });

  // the index survives a reopen
  const again = await openImageStore(join(base, 'store'));
  assert.equal((await again.getImage('app-b:latest')).layers.length, 2);
});

test('a hostile archive\'s dropped entries and whiteouts come back, and again when it is a duplicate', async (t) => {
  const base = scratch(t);
  const root = join(base, 'hostile');
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/ok'), 'ok');
  writeFileSync(join(root, 'etc/.wh.gone'), '');
  writeFileSync(join(root, 'suid'), 'x');
  execFileSync('chmod', ['4755', join(root, 'suid')]);
  const archive = join(base, 'hostile.tar');
  execFileSync('tar', ['-cf', archive, '-C', root, '.', '-P', '--transform=s,^\\./etc/ok$,../../escape,']);
  const store = await openImageStore(join(base, 'store'));
  for (const expectExisted of [false, true]) {
    const layer = await store.importLayer(archive);
    assert.equal(layer.existed, expectExisted);
    assert.deepEqual(layer.dropped.map((one) => one.why).sort(), ['".." in name', 'set-id bits cleared']);
    assert.deepEqual(layer.whiteouts, ['etc/gone']);
    assert.deepEqual((await store.layer(layer.digest))?.whiteouts, ['etc/gone']);
  }
  assert.equal(existsSync(join(base, 'escape')), false);
});

test('a truncated tar leaves nothing under layers/, and the next open clears tmp/', async (t) => {
  const base = scratch(t);
  const archive = systemTar(base, 'cut', { 'big': 'z'.repeat(20_000) });
  truncateSync(archive, 4096);
  const store = await openImageStore(join(base, 'store'));
  assert.equal(await code(store.importLayer(archive)), 'BRIG_ARCHIVE_INVALID');
  assert.deepEqual(readdirSync(join(base, 'store/layers')), []);
  assert.deepEqual(readdirSync(join(base, 'store/tmp')), []);

  // a crash mid-extraction and mid-publish: a half tmp dir, a layer dir without its .json
  mkdirSync(join(base, 'store/tmp/abandoned/deep'), { recursive: true, mode: 0o700 });
  execFileSync('chmod', ['0555', join(base, 'store/tmp/abandoned')]);
  mkdirSync(join(base, 'store/layers', 'f'.repeat(64)));
  await openImageStore(join(base, 'store'));
  assert.deepEqual(readdirSync(join(base, 'store/tmp')), []);
  assert.deepEqual(readdirSync(join(base, 'store/layers')), []);
});

test("an open clears tmp/ of a dead process's work but never of a live one's: a build's steps are not pulled from under it", async (t) => {
  const base = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const mine = store.tempPath('build');
  mkdirSync(join(mine, 'upper/var/lib/dpkg'), { recursive: true });
  // Another live process's (a build in `brig image build` while `brig image ls` opens the store), and a dead one's.
  const other = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.after(() => other.kill());
  const live = join(base, `store/tmp/${other.pid}-build-x`);
  mkdirSync(live);
  const dead = spawn('true', { stdio: 'ignore' });
  await once(dead, 'exit');
  const gone = join(base, `store/tmp/${dead.pid}-build-y`);
  mkdirSync(gone);
  mkdirSync(join(base, 'store/tmp/no-owner'));
  await openImageStore(join(base, 'store'));
  assert.ok(existsSync(join(mine, 'upper/var/lib/dpkg')), "this process's own");
  assert.ok(existsSync(live), "a live process's");
  assert.ok(!existsSync(gone), "a dead process's goes");
  assert.ok(!existsSync(join(base, 'store/tmp/no-owner')), "one without an owner goes");
});

test('more than 16 MiB after the end-of-archive block is refused, with nothing kept', async (t) => {
  const base = scratch(t);
  const archive = systemTar(base, 'tail', { 'f': 'f' });
  const store = await openImageStore(join(base, 'store'));
  const padded = gzipSync(Buffer.concat([readFileSync(archive), Buffer.alloc(17 << 20)]));
  assert.equal(await code(store.importLayer(Readable.from([padded]))), 'BRIG_ARCHIVE_INVALID');
  assert.deepEqual(readdirSync(join(base, 'store/layers')), []);
  assert.deepEqual(readdirSync(join(base, 'store/tmp')), []);
});

test('bad names, tags and references are BRIG_IMAGE_INVALID; unknown images BRIG_IMAGE_NOT_FOUND with the names that exist', async (t) => {
  const base = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const layer = await store.importLayer(systemTar(base, 'x', { 'f': 'f' }));
  for (const name of ['Upper', '-dash', 'a/../b', 'a//b', '/abs', '', 'a'.repeat(256), 'sp ace']) {
    assert.equal(await code(store.tagImage(name, 'latest', { layers: [layer.digest] })), 'BRIG_IMAGE_INVALID', name);
  }
  for (const tag of ['', '.dot', '-dash', 'a'.repeat(129), 'a/b', 'a:b']) {
    assert.equal(await code(store.tagImage('ok', tag, { layers: [layer.digest] })), 'BRIG_IMAGE_INVALID', tag);
  }
  assert.equal(await code(store.tagImage('ok', 'v1', { layers: [`sha256:${'0'.repeat(64)}`] })), 'BRIG_IMAGE_INVALID');
  assert.equal(await code(store.getImage('Bad:ref')), 'BRIG_IMAGE_INVALID');
  assert.equal(await code(store.getImage('ok:')), 'BRIG_IMAGE_INVALID');

  await store.tagImage('ok', 'v1', { layers: [layer.digest] });
  await store.tagImage('registry.local/team/ok_2', 'latest', { layers: [] });
  try {
    await store.getImage('ok');
    assert.fail('ok:latest does not exist');
  } catch (error) {
    assert.ok(isBrigError(error));
    assert.equal(error.code, 'BRIG_IMAGE_NOT_FOUND');
    assert.equal(error.exitCode, 125);
    assert.match(error.hint, /ok:v1, registry\.local\/team\/ok_2:latest/);
  }
  assert.equal(await code(store.removeImage('nothing:here')), 'BRIG_IMAGE_NOT_FOUND');
});

test('layerDir is the absolute directory of a layer the store holds; BRIG_IMAGE_NOT_FOUND for one it does not', async (t) => {
  const base = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const layer = await store.importLayer(systemTar(base, 'x', { 'etc/f': 'f' }));
  const dir = await store.layerDir(layer.digest);
  assert.equal(dir, join(base, 'store/layers', layer.digest.slice(7)));
  assert.ok(dir.startsWith('/'));
  assert.equal(readFileSync(join(dir, 'etc/f'), 'utf8'), 'f');
  assert.equal(await code(store.layerDir(`sha256:${'0'.repeat(64)}`)), 'BRIG_IMAGE_NOT_FOUND');
  assert.equal(await code(store.layerDir('sha256:../../etc')), 'BRIG_IMAGE_NOT_FOUND');
});

test('a write waits while another process holds the store lock, and an open leaves that process\'s tmp/ alone', async (t) => {
  const base = scratch(t);
  const storeDir = join(base, 'store');
  const store = await openImageStore(storeDir);
  const layer = await store.importLayer(systemTar(base, 'x', { 'f': 'f' }));
  // another writer: flock(1) holds <store>/lock until its stdin closes
  const holder = spawn('flock', [join(storeDir, 'lock'), '-c', 'echo locked; cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => holder.kill());
  await once(holder.stdout, 'data');
  mkdirSync(join(storeDir, 'tmp/in-use'));
  await openImageStore(storeDir);
  assert.deepEqual(readdirSync(join(storeDir, 'tmp')), ['in-use'], 'the other writer\'s extraction is not cleared');

  let tagged = false;
  const tagging = store.tagImage('waits', 'latest', { layers: [layer.digest] }).then(() => (tagged = true));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(tagged, false, 'the tag waits for the lock');
  assert.equal(await code(store.getImage('waits')), 'BRIG_IMAGE_NOT_FOUND', 'readers do not wait');
  holder.stdin.end();
  await tagging;
  assert.equal((await store.getImage('waits')).layers[0], layer.digest);
  await openImageStore(storeDir);
  assert.deepEqual(readdirSync(join(storeDir, 'tmp')), [], 'once idle, an open clears tmp/');
});

test('prune keeps leased layers: a sandbox\'s until released, a process\'s until that process is gone', async (t) => {
  const base = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const used = await store.importLayer(systemTar(base, 'used', { 'etc/x': 'x' }));
  const byDead = await store.importLayer(systemTar(base, 'dead', { 'etc/y': 'y' }));
  const loose = await store.importLayer(systemTar(base, 'loose', { 'etc/z': 'z' }));
  await store.lease('isandbox1', [used.digest]);
  // A pid that cannot be running: above the kernel's pid_max.
  await store.lease('pid-4194305-run-aa', [byDead.digest]);
  assert.deepEqual((await store.prune()).layers.sort(), [byDead.digest, loose.digest].sort());
  assert.ok(existsSync(store.layerPath(used.digest)));
  assert.deepEqual(await store.leaseHolders(), ['isandbox1']);
  await store.release('isandbox1');
  assert.deepEqual((await store.prune()).layers, [used.digest]);
  await assert.rejects(store.lease('../escape', []), /lease holder/);
});
