import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { buildInitramfs } from '../../../src/drivers/vm/initramfs.ts';
import type { GuestKernel } from '../../../src/drivers/vm/kernel.ts';
import { isBrigError } from '../../../src/protocol/index.ts';
import { readNewc } from './cpio-reader.ts';
import { BRIG_INIT, writeFakeModules } from './fixtures.ts';

const scratch = mkdtempSync(join(tmpdir(), 'brig-initramfs-'));
test.after(() => rmSync(scratch, { recursive: true, force: true }));

/** A kernel as guestKernel returns it, with stand-in modules (this file tests the archive, not the kernel). */
const modulesDir = join(scratch, 'modules');
writeFakeModules(modulesDir, { 'virtio_ring.ko': '', 'virtio.ko': 'virtio_ring', 'virtio-mmio.ko': 'virtio,virtio_ring' });
const kernel: GuestKernel = { version: '9.9.9-test', vmlinuz: join(scratch, 'vmlinuz'), modules: ['virtio_ring.ko', 'virtio.ko', 'virtio-mmio.ko'].map((name) => join(modulesDir, name)) };

test('the initramfs holds /init, the modules, /modules.order in load order and the empty mount points, and is named by its sha256', async () => {
  const cacheDir = join(scratch, 'cache');
  const path = await buildInitramfs(cacheDir, kernel, BRIG_INIT);
  const bytes = readFileSync(path);
  assert.equal(path, join(cacheDir, 'initramfs', `${createHash('sha256').update(bytes).digest('hex')}.cpio`));
  assert.deepEqual(readdirSync(join(cacheDir, 'initramfs')), [basename(path)], 'no temporary file is left');
  const entries = readNewc(bytes);
  const byName = new Map(entries.map((entry) => [entry.name, entry]));
  assert.deepEqual(
    entries.map((entry) => `${entry.mode.toString(8)} ${entry.name}`),
    ['40755 dev', '40755 proc', '40755 sys', '40755 newroot', '41777 tmp', '100755 init', '40755 lib', '40755 lib/modules', '100644 lib/modules/virtio_ring.ko', '100644 lib/modules/virtio.ko', '100644 lib/modules/virtio-mmio.ko', '100644 modules.order'],
  );
  assert.ok(byName.get('init')?.data.equals(readFileSync(BRIG_INIT)), '/init is the given binary');
  for (const file of kernel.modules) assert.ok(byName.get(`lib/modules/${basename(file)}`)?.data.equals(readFileSync(file)), `${basename(file)} as it was`);
  assert.equal(byName.get('modules.order')?.data.toString(), 'virtio_ring.ko\nvirtio.ko\nvirtio-mmio.ko\n');
});

test('the same init and modules make the same bytes under the same name; a second build writes nothing', async () => {
  const first = await buildInitramfs(join(scratch, 'one'), kernel, BRIG_INIT);
  const second = await buildInitramfs(join(scratch, 'two'), kernel, BRIG_INIT);
  assert.equal(basename(first), basename(second));
  assert.ok(readFileSync(first).equals(readFileSync(second)));
  const before = statSync(first);
  assert.equal(await buildInitramfs(join(scratch, 'one'), kernel, BRIG_INIT), first);
  const after = statSync(first);
  assert.deepEqual([after.ino, after.mtimeMs], [before.ino, before.mtimeMs], 'the file is not rewritten');
});

test('another init makes another file beside the first', async () => {
  const cacheDir = join(scratch, 'other-init');
  const first = await buildInitramfs(cacheDir, kernel, BRIG_INIT);
  const init = join(scratch, 'init-copy');
  copyFileSync(BRIG_INIT, init);
  writeFileSync(init, Buffer.from('one byte more'), { flag: 'a' });
  const second = await buildInitramfs(cacheDir, kernel, init);
  assert.notEqual(second, first);
  assert.deepEqual(readdirSync(join(cacheDir, 'initramfs')).sort(), [basename(first), basename(second)].sort());
});

test('a missing init is BRIG_VM_INIT_MISSING, and nothing is written', async () => {
  const cacheDir = join(scratch, 'no-init');
  await assert.rejects(buildInitramfs(cacheDir, kernel, join(scratch, 'not-built')), (error: unknown) => isBrigError(error) && error.code === 'BRIG_VM_INIT_MISSING' && error.message.includes('not-built') && error.hint.includes('npm run setup'));
  assert.throws(() => readdirSync(join(cacheDir, 'initramfs')), /ENOENT/);
});
