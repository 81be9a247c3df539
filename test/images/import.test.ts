import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import brigSpawn from 'brig-spawn';
import { commitDirectory, exportOci, layerTar, openImageStore, type ImageStore } from '../../src/images/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';
import { tar } from '../helpers/tar.ts';

const asRoot = process.geteuid?.() === 0;

// ---- archives built here: raw entries for hostile layers, layerTar (src/images/layer-tar.ts) for the outer archives ----

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Writes { path: content } under dir, making parents. */
function writeTree(dir: string, files: Record<string, string | Buffer>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
}

/** A directory packed as a tar by layerTar: how these tests make their outer archives. */
async function packDir(dir: string, out: string): Promise<string> {
  writeFileSync(out, await bytesOf(layerTar(dir)));
  return out;
}

const CONFIG = {
  Env: ['PATH=/usr/bin:/bin', 'GREETING=hi there'],
  WorkingDir: '/srv',
  User: '1000:1000',
  Cmd: ['serve', '--port', '80'],
  Entrypoint: ['/bin/app'],
  Labels: { 'org.example.team': 'infra' },
};

function imageConfig(diffIds: string[], config: object = CONFIG): Buffer {
  return Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: diffIds } }));
}

/** A docker save archive (Docker before 25: <id>/layer.tar, <hex>.json, manifest.json) as a directory. */
function dockerSaveDir(dir: string, layers: Buffer[], repoTags: string[] | null, config?: Buffer): void {
  const names = layers.map((layer) => sha256(layer).slice(7));
  const configBytes = config ?? imageConfig(layers.map(sha256));
  const configName = `${sha256(configBytes).slice(7)}.json`;
  writeTree(dir, Object.fromEntries([[configName, configBytes], ...layers.map((layer, index) => [`${names[index]}/layer.tar`, layer])]));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: names.map((name) => `${name}/layer.tar`) }]));
}

/** An OCI image layout as a directory; `gzip` compresses the layer blobs. */
function ociDir(dir: string, layers: Buffer[], options: { gzip?: boolean; name?: string; editManifest?: (manifest: { layers: Array<{ digest: string; size: number }> }) => void } = {}): void {
  const blob = (bytes: Buffer): { digest: string; size: number } => {
    writeTree(dir, { [`blobs/sha256/${sha256(bytes).slice(7)}`]: bytes });
    return { digest: sha256(bytes), size: bytes.length };
  };
  const layerBlobs = layers.map((layer) => ({ mediaType: `application/vnd.oci.image.layer.v1.tar${options.gzip ? '+gzip' : ''}`, ...blob(options.gzip ? gzipSync(layer) : layer) }));
  const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...blob(imageConfig(layers.map(sha256))) }, layers: layerBlobs };
  options.editManifest?.(manifest);
  const manifestBlob = blob(Buffer.from(JSON.stringify(manifest)));
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifestBlob, annotations: { 'org.opencontainers.image.ref.name': options.name ?? 'oci/app:v2' } }],
  }));
}

function scratch(t: { after: (fn: () => void) => void }): { base: string; sentinel: string } {
  const base = mkdtempSync(join(tmpdir(), 'brig-import-'));
  t.after(() => {
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  const sentinel = join(base, 'sentinel');
  mkdirSync(sentinel);
  return { base, sentinel };
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isBrigError(error), String(error));
    return `${error.code}: ${error.message}`;
  }
  return 'no error';
}

/** The store holds no layers, no images and nothing in tmp/. */
async function assertEmpty(store: ImageStore, dir: string): Promise<void> {
  assert.deepEqual(await store.listImages(), []);
  assert.deepEqual(readdirSync(join(dir, 'layers')), []);
  assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
}

/** A layer with everything hostile in it: traversal, absolute name, device node, setuid file, a symlink leading out and an entry through it. */
function hostileLayer(sentinel: string): Buffer {
  return tar([
    { name: 'etc/', type: '5', mode: 0o755 },
    { name: 'etc/ok', data: 'fine' },
    { name: '../../escape', data: 'out' },
    { name: `${sentinel}/abs`, data: 'abs' },
    { name: 'dev/sda', type: '4' },
    { name: 'dev/null', type: '3' },
    { name: 'usr/bin/su', mode: 0o4755, data: 'suid' },
    { name: 'out', type: '2', linkname: sentinel },
    { name: 'out/planted', data: 'through the link' },
    { name: 'hard', type: '1', linkname: '/etc/shadow' },
  ]);
}

// ---- tests ----

test('a docker save archive: layers unpacked in order with their whiteouts, config mapped, RepoTags tagged; a hostile layer writes nothing outside the store', async (t) => {
  const { base, sentinel } = scratch(t);
  const lower = tar([{ name: 'etc/', type: '5', mode: 0o755 }, { name: 'etc/motd', data: 'old' }, { name: 'srv/', type: '5', mode: 0o755, uid: 1000 }]);
  const upper = Buffer.concat([hostileLayer(sentinel).subarray(0, -1024), tar([{ name: 'etc/.wh.motd' }])]);
  const saved = join(base, 'saved');
  dockerSaveDir(saved, [lower, upper], ['team/app:1.0', 'docker.io/library/app:latest', 'reg.example:5000/bad:x']);
  const archive = await packDir(saved, join(base, 'saved.tar'));
  const store = await openImageStore(join(base, 'store'));
  const result = await store.importArchive(archive);

  assert.equal(result.format, 'docker-save');
  assert.deepEqual(result.images.map((image) => `${image.name}:${image.tag}`), ['team/app:1.0', 'app:latest']);
  const image = await store.getImage('team/app:1.0');
  assert.deepEqual(image.layers, [sha256(lower), sha256(upper)]);
  assert.deepEqual(image.config, { env: CONFIG.Env, workdir: '/srv', user: '1000:1000', cmd: CONFIG.Cmd, entrypoint: CONFIG.Entrypoint, labels: CONFIG.Labels });
  const top = await store.layerDir(sha256(upper));
  assert.equal(readFileSync(join(top, 'etc/ok'), 'utf8'), 'fine');
  assert.equal(readFileSync(join(top, sentinel, 'abs'), 'utf8'), 'abs', 'an absolute name lands inside the layer');
  if (asRoot) {
    assert.ok(lstatSync(join(top, 'etc/motd')).isCharacterDevice(), 'the whiteout is an overlay whiteout');
    assert.equal(lstatSync(join(await store.layerDir(sha256(lower)), 'srv')).uid, 1000);
  }
  assert.equal(lstatSync(join(top, 'usr/bin/su')).mode & 0o7777, 0o755);
  assert.equal(existsSync(join(top, 'dev/sda')), false);
  assert.deepEqual(readdirSync(sentinel), [], 'nothing through the symlink, nothing at the absolute path');
  assert.equal(existsSync(join(base, 'escape')), false);
  assert.equal(existsSync(join(base, 'store', 'escape')), false);
  assert.deepEqual(result.dropped.map((one) => `${one.layer === sha256(upper) ? 'upper' : one.layer} ${one.path}: ${one.why}`), [
    'upper ../../escape: ".." in name',
    'upper dev/sda: block device not allowed in a layer',
    'upper dev/null: character device not allowed in a layer',
    'upper usr/bin/su: set-id bits cleared',
    'upper out/planted: a parent (out) is a symlink',
    'upper hard: hard link to "/etc/shadow", which is not a file this archive wrote before it',
  ]);
  assert.deepEqual(readdirSync(join(base, 'store/tmp')), [], 'the unpacked archive is gone');
});

test('an OCI layout, as a directory and as a tar, gzip layers or not; blobs and diff_ids verified; named from its annotation or -t', async (t) => {
  const { base } = scratch(t);
  const layer = tar([{ name: 'bin/', type: '5', mode: 0o755 }, { name: 'bin/tool', mode: 0o755, data: '#!/bin/sh\n' }]);
  ociDir(join(base, 'plain'), [layer]);
  ociDir(join(base, 'gz'), [layer], { gzip: true, name: 'latest' });
  const store = await openImageStore(join(base, 'store'));

  const fromDir = await store.importArchive(join(base, 'plain'));
  assert.equal(fromDir.format, 'oci');
  assert.deepEqual(fromDir.images.map((image) => `${image.name}:${image.tag}`), ['oci/app:v2']);
  assert.deepEqual(fromDir.images[0]?.layers, [sha256(layer)]);
  assert.equal(fromDir.images[0]?.config.user, '1000:1000');

  // a bare ref.name is a tag: the name must come from -t
  assert.match(await code(store.importArchive(join(base, 'gz'))), /^BRIG_IMAGE_INVALID: .*does not know what to call it/);
  const fromTar = await store.importArchive(await packDir(join(base, 'gz'), join(base, 'gz.tar')), { ref: 'named/by-t' });
  assert.deepEqual(fromTar.images.map((image) => `${image.name}:${image.tag}`), ['named/by-t:latest']);
  assert.deepEqual(fromTar.images[0]?.layers, [sha256(layer)], 'gzip or not, the layer is its uncompressed digest');
  assert.equal(fromTar.layers[0]?.existed, true);
});

test('a blob path "../x", a symlinked blob, a digest that lies, diff_ids that lie: refused whole, nothing kept', async (t) => {
  const { base } = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const layer = tar([{ name: 'f', data: 'data' }]);
  const other = tar([{ name: 'g', data: 'else' }]);

  // docker save naming a member outside its directory
  const traversal = join(base, 'traversal');
  dockerSaveDir(traversal, [layer], ['x:1']);
  writeFileSync(join(traversal, 'manifest.json'), JSON.stringify([{ Config: readdirSync(traversal).find((name) => name.endsWith('.json') && name !== 'manifest.json'), RepoTags: ['x:1'], Layers: ['../x'] }]));
  writeFileSync(join(base, 'x'), layer);
  assert.match(await code(store.importArchive(traversal)), /^BRIG_ARCHIVE_INVALID: .*"\.\.\/x" is not a docker save member name/);

  // OCI: a descriptor digest that is a path
  const pathDigest = join(base, 'path-digest');
  ociDir(pathDigest, [layer], { editManifest: (manifest) => { (manifest.layers[0] as { digest: string }).digest = 'sha256:../../x'; } });
  assert.match(await code(store.importArchive(pathDigest)), /^BRIG_ARCHIVE_INVALID: .*is not sha256: and 64 lowercase hex digits/);

  // OCI: a manifest whose layer digest names another blob's content
  const lying = join(base, 'lying');
  ociDir(lying, [layer], { editManifest: (manifest) => { (manifest.layers[0] as { digest: string }).digest = sha256(other); } });
  writeFileSync(join(lying, 'blobs/sha256', sha256(other).slice(7)), layer);
  assert.match(await code(store.importArchive(lying)), /^BRIG_ARCHIVE_INVALID: .*does not match its descriptor/);

  // OCI: a blob that is a symlink to a host file
  const linked = join(base, 'linked');
  ociDir(linked, [layer]);
  rmSync(join(linked, 'blobs/sha256', sha256(layer).slice(7)));
  writeFileSync(join(base, 'host-file'), layer);
  symlinkSync(join(base, 'host-file'), join(linked, 'blobs/sha256', sha256(layer).slice(7)));
  assert.match(await code(store.importArchive(linked)), /^BRIG_ARCHIVE_INVALID: .*is a symlink, which is never followed/);

  // docker save: a config whose diff_ids name other layers (the layer itself is unpacked, then removed)
  const wrongDiff = join(base, 'wrong-diff');
  dockerSaveDir(wrongDiff, [layer], ['y:1'], imageConfig([sha256(other)]));
  assert.match(await code(store.importArchive(await packDir(wrongDiff, join(base, 'wrong-diff.tar')))), /^BRIG_ARCHIVE_INVALID: .*unpacks to .* but the image config says/);

  // docker save: JSON of the wrong shape
  const badJson = join(base, 'bad-json');
  dockerSaveDir(badJson, [layer], ['z:1'], imageConfig([sha256(layer)], { Env: 'PATH=/bin' }));
  assert.match(await code(store.importArchive(badJson)), /^BRIG_ARCHIVE_INVALID: config\.Env is not an array of strings/);
  await assertEmpty(store, join(base, 'store'));
});

test('a plain root filesystem tarball is one layer with the default config; it needs -t', async (t) => {
  const { base } = scratch(t);
  const rootfs = join(base, 'rootfs.tar.gz');
  writeFileSync(rootfs, gzipSync(tar([{ name: 'etc/', type: '5', mode: 0o755 }, { name: 'etc/os-release', data: 'ID=test\n' }, { name: 'manifest.json/', type: '5' }])));
  const store = await openImageStore(join(base, 'store'));
  assert.match(await code(store.importArchive(rootfs)), /^BRIG_IMAGE_INVALID: .*root filesystem tarball/);
  await assertEmpty(store, join(base, 'store'));
  const result = await store.importArchive(rootfs, { ref: 'mini:1' });
  assert.equal(result.format, 'rootfs');
  assert.deepEqual(result.images[0]?.config, { env: [], workdir: '/', user: 'root', cmd: null, entrypoint: null, labels: {} });
  assert.equal(readFileSync(join(await store.layerDir(result.images[0]?.layers[0] ?? ''), 'etc/os-release'), 'utf8'), 'ID=test\n');
});

test('exportOci writes an OCI layout (dir or .tar, gzip or not) that importArchive reads back with the same layer digests and config', async (t) => {
  const { base } = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const tree = join(base, 'tree');
  writeTree(tree, { 'app/main.py': 'print(1)\n', 'etc/motd': 'hello\n' });
  symlinkSync('/etc/passwd', join(tree, 'app/passwd-link'));
  if (asRoot) brigSpawn.makeWhiteout(join(tree, 'etc/removed'));
  const lower = await commitDirectory(store, tree, 0);
  writeTree(join(base, 'tree2'), { 'app/extra': 'x' });
  const upper = await commitDirectory(store, join(base, 'tree2'), 0);
  await store.tagImage('exported', 'v1', { layers: [lower.digest, upper.digest], config: { env: ['A=1'], workdir: '/app', user: 'user', cmd: ['python3', 'main.py'], labels: { k: 'v' } } });

  for (const [out, gzip] of [[join(base, 'out-dir'), false], [join(base, 'out.tar'), true]] as const) {
    const exported = await exportOci(store, 'exported:v1', out, { gzip });
    assert.deepEqual(exported.layers.map((layer) => layer.diffId), [lower.digest, upper.digest]);
    const other = await openImageStore(join(base, `store-${gzip}`));
    const back = await other.importArchive(out);
    assert.equal(back.format, 'oci');
    const image = await other.getImage('exported:v1');
    assert.deepEqual(image.layers, [lower.digest, upper.digest]);
    assert.deepEqual(image.config, (await store.getImage('exported:v1')).config);
    assert.deepEqual(back.dropped, []);
  }
  const index = JSON.parse(readFileSync(join(base, 'out-dir/index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> };
  assert.equal(index.manifests[0]?.annotations['io.containerd.image.name'], 'exported:v1');
  assert.match(await code(exportOci(store, 'exported:v1', join(base, 'out-dir'))), /^BRIG_USAGE: .* exists/);
  assert.match(await code(exportOci(store, 'nope', join(base, 'x'))), /^BRIG_IMAGE_NOT_FOUND/);
  assert.deepEqual(readdirSync(base).filter((name) => name.includes('partial')), []);
});

test('an OCI layout tar with hostile members of its own and a hostile gzip layer: the image imports, nothing lands outside, every drop is listed', async (t) => {
  const { base, sentinel } = scratch(t);
  const layer = hostileLayer(sentinel);
  ociDir(join(base, 'oci'), [layer], { gzip: true });
  const inner = await bytesOf(layerTar(join(base, 'oci')));
  const outer = Buffer.concat([inner.subarray(0, -1024), tar([
    { name: '../../outer-escape', data: 'x' },
    { name: 'blobs/disk', type: '4' },
    { name: 'run-me', mode: 0o6755, data: 'x' },
    { name: 'up', type: '2', linkname: sentinel },
    { name: 'up/planted', data: 'x' },
  ])]);
  writeFileSync(join(base, 'oci.tar'), outer);
  const store = await openImageStore(join(base, 'store'));
  const result = await store.importArchive(join(base, 'oci.tar'));
  assert.deepEqual(result.images.map((image) => `${image.name}:${image.tag}`), ['oci/app:v2']);
  assert.deepEqual(result.images[0]?.layers, [sha256(layer)]);
  assert.deepEqual(result.dropped.filter((one) => one.layer === 'archive').map((one) => one.path), ['../../outer-escape', 'blobs/disk', 'run-me', 'up/planted']);
  assert.equal(result.dropped.filter((one) => one.layer === sha256(layer)).length, 6);
  assert.deepEqual(readdirSync(sentinel), []);
  assert.equal(existsSync(join(base, 'outer-escape')), false);
  assert.equal(existsSync(join(base, 'store/outer-escape')), false);
  assert.deepEqual(readdirSync(join(base, 'store/tmp')), []);
});

test('docker save\'s own dedupe link (<id>/layer.tar -> ../<other>/layer.tar) is followed once; a layer.tar linking anywhere else is refused', async (t) => {
  const { base } = scratch(t);
  const store = await openImageStore(join(base, 'store'));
  const layer = tar([{ name: 'same', data: 'same content' }]);
  const saved = join(base, 'saved');
  dockerSaveDir(saved, [layer], ['dedup:1'], imageConfig([sha256(layer), sha256(layer)]));
  const manifest = JSON.parse(readFileSync(join(saved, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
  const first = manifest[0]?.Layers[0] ?? '';
  const second = `${'e'.repeat(64)}/layer.tar`;
  mkdirSync(join(saved, 'e'.repeat(64)));
  symlinkSync(`../${first}`, join(saved, second));
  (manifest[0] as { Layers: string[] }).Layers.push(second);
  writeFileSync(join(saved, 'manifest.json'), JSON.stringify(manifest));
  const result = await store.importArchive(await packDir(saved, join(base, 'saved.tar')));
  assert.deepEqual(result.images[0]?.layers, [sha256(layer), sha256(layer)]);

  rmSync(join(saved, second));
  writeFileSync(join(base, 'host-layer.tar'), layer);
  symlinkSync(join(base, 'host-layer.tar'), join(saved, second));
  assert.match(await code(store.importArchive(saved)), /^BRIG_ARCHIVE_INVALID: .*is a symlink to ".*host-layer\.tar", not to another layer of the archive/);
});
