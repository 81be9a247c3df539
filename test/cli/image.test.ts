import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';

/** brig image, as users run it (bin/brig, the built bundles), against a state directory of its own. */

function scratch(t: { after: (fn: () => void) => void }): { dir: string; state: string } {
  const workspace = tempWorkspace('brig-image-cli-');
  t.after(() => {
    execFileSync('chmod', ['-R', 'u+rwx', workspace.dir]);
    workspace.remove();
  });
  return { dir: workspace.dir, state: join(workspace.dir, 'state') };
}

/** A root filesystem tarball made by the system's tar: `files` bytes of data, a setuid file, a device-free tree. */
function rootfs(dir: string, name: string, files: Record<string, string>): string {
  const root = join(dir, `${name}-root`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const out = join(dir, `${name}.tar.gz`);
  execFileSync('tar', ['-czf', out, '-C', root, '.']);
  return out;
}

async function brig(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runBrig(['image', ...args]);
}

test('brig image import, ls, inspect, export, rm and prune against a --state directory', async (t) => {
  const { dir, state } = scratch(t);
  const base = rootfs(dir, 'base', { 'etc/os-release': 'ID=tiny\n', 'usr/lib/big': 'b'.repeat(4096) });
  const suid = join(dir, 'suid-root');
  mkdirSync(join(suid, 'bin'), { recursive: true });
  writeFileSync(join(suid, 'bin/su'), 'x');
  execFileSync('chmod', ['4755', join(suid, 'bin/su')]);
  execFileSync('tar', ['-cf', join(dir, 'suid.tar'), '-C', suid, '.']);

  const noName = await brig(['import', base, '--state', state]);
  assert.equal(noName.code, 125);
  assert.match(noName.stderr, /root filesystem tarball, which names no image \[BRIG_IMAGE_INVALID\]\n {2}hint: give it a name: brig image import FILE -t NAME\[:TAG\]/);

  const imported = await brig(['import', base, '-t', 'tiny:1', '--state', state]);
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /^imported tiny:1 \(rootfs, 1 layer\)\n1 new layer, 4\.0KiB; 0 already in the store\n$/);
  const warned = await brig(['--state', state, 'import', join(dir, 'suid.tar'), '-t', 'suid']);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(warned.stderr, /brig: warning: 1 entry dropped or changed .*\n {2}[0-9a-f]{12} {2}bin\/su: set-id bits cleared\n/);

  const listed = await brig(['ls', '--state', state]);
  assert.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trim().split('\n');
  assert.match(lines[0] ?? '', /^IMAGE\s+LAYERS\s+SIZE\s+SHARED\s+CREATED$/);
  assert.match(lines[1] ?? '', /^suid:latest\s+1\s+1B\s+0B\s+\d+s ago$/);
  assert.match(lines[2] ?? '', /^tiny:1\s+1\s+4\.0KiB\s+0B\s+\d+s ago$/);

  const exported = join(dir, 'tiny-oci.tar');
  const exportRun = await brig(['export', 'tiny:1', exported, '--gzip', '--state', state]);
  assert.equal(exportRun.code, 0, exportRun.stderr);
  assert.match(exportRun.stdout, /^exported tiny:1 to .*tiny-oci\.tar \(OCI image layout, 1 layer, /);
  const again = await brig(['import', exported, '--state', state, '--json']);
  assert.equal(again.code, 0, again.stderr);
  const report = JSON.parse(again.stdout) as { format: string; images: Array<{ name: string; tag: string }> };
  assert.equal(report.format, 'oci');
  assert.deepEqual(report.images.map((image) => `${image.name}:${image.tag}`), ['tiny:1']);

  const inspected = await brig(['inspect', 'tiny:1', '--state', state]);
  assert.equal(inspected.code, 0, inspected.stderr);
  assert.match(inspected.stdout, /^Image {7}tiny:1\n/m);
  assert.match(inspected.stdout, /^User {8}root$/m);
  assert.match(inspected.stdout, /^ {2}sha256:[0-9a-f]{64} {2}4\.0KiB, 5 files$/m);
  const inspectedJson = JSON.parse((await brig(['inspect', 'tiny:1', '--json', '--state', state])).stdout) as { layers: Array<{ digest: string }> };
  assert.equal(inspectedJson.layers.length, 1);

  const removed = await brig(['rm', 'tiny:1', 'suid', '--state', state]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /removed tiny:1\nremoved suid:latest\n/);
  const missing = await brig(['rm', 'tiny:1', '--state', state]);
  assert.equal(missing.code, 125);
  assert.match(missing.stderr, /no image tiny:1 in the store \[BRIG_IMAGE_NOT_FOUND\]/);
  const pruned = JSON.parse((await brig(['prune', '--json', '--state', state])).stdout) as { layers: string[]; bytes: number };
  // three: GNU tar's layer of tiny:1, brig's own (layerTar) tar of it that the export carried and re-import made tiny:1's, and suid's
  assert.equal(pruned.layers.length, 3);
  assert.equal(pruned.bytes, 2 * (4096 + 8) + 1);
  assert.deepEqual(readdirSync(join(state, 'images/layers')), []);
  assert.equal((await brig(['ls', '--json', '--state', state])).stdout, '[]\n');
});

test('brig image refuses a hostile archive with a code and a hint, and bad usage with BRIG_USAGE', async (t) => {
  const { dir, state } = scratch(t);
  const broken = join(dir, 'broken.tar');
  writeFileSync(broken, Buffer.alloc(700, 'x'));
  const result = await brig(['import', broken, '-t', 'x', '--state', state]);
  assert.equal(result.code, 125);
  assert.match(result.stderr, /\[BRIG_ARCHIVE_INVALID\]\n {2}hint: /);
  assert.doesNotMatch(result.stderr, /internal error|\n\s+at /);
  assert.deepEqual(readdirSync(join(state, 'images/layers')), []);
  for (const args of [['export', 'only-ref'], ['inspect'], ['ls', 'extra'], ['import', broken, '--bogus']]) {
    const usage = await brig([...args, '--state', state]);
    assert.equal(usage.code, 125, args.join(' '));
    assert.match(usage.stderr, /\[BRIG_USAGE\]/, args.join(' '));
  }
});
