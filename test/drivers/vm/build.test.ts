import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { vmArtefacts } from '../../../src/drivers/vm/build.ts';
import { GUEST_MODULES } from '../../../src/drivers/vm/kernel.ts';
import { BRIG_INIT, testCacheDir } from './fixtures.ts';

/**
 * vmArtefacts over the tests' shared cache (<BRIG_TEST_CACHE>/vm, the state
 * directory being BRIG_TEST_CACHE itself): the kernel is downloaded once per
 * machine or CI run, here or by the boot test, whichever runs first.
 */
test('vmArtefacts builds the kernel and initramfs in <stateDir>/vm (0700) on first use, then finds them without apt', async (t) => {
  const stateDir = testCacheDir();
  const lines: string[] = [];
  let started = Date.now();
  const first = await vmArtefacts(stateDir, BRIG_INIT, (line) => lines.push(line));
  t.diagnostic(`first call: ${Date.now() - started} ms${lines.length > 0 ? ` (${lines.join(' | ')})` : ' (cached before this run)'}`);
  assert.equal(statSync(`${stateDir}/vm`).mode & 0o777, 0o700);
  assert.ok(first.kernel.vmlinuz.startsWith(`${stateDir}/vm/kernel/`) && existsSync(first.kernel.vmlinuz));
  assert.ok(first.initramfs.startsWith(`${stateDir}/vm/initramfs/`) && existsSync(first.initramfs));
  assert.ok(first.kernel.modules.length >= GUEST_MODULES.length);

  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  const again: string[] = [];
  try {
    started = Date.now();
    assert.deepEqual(await vmArtefacts(stateDir, BRIG_INIT, (line) => again.push(line)), first);
    t.diagnostic(`cached: ${Date.now() - started} ms`);
  } finally {
    process.env.PATH = saved;
  }
  assert.deepEqual(again, [], 'a cache hit reports nothing');
});
