import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseAccel, knownAccel, kvmPresent } from '../../../src/drivers/vm/accel.ts';

/**
 * KVM or TCG. A KVM that boots a kernel cannot exist on these machines, so
 * QEMU is stood in for by scripts that end as QEMU does in each case: a
 * kernel panic then exit 0 (KVM works), an abort (a nested KVM refusing the
 * CPU model, as here). The probe runs only where /dev/kvm opens.
 */
describe('choosing KVM or TCG', () => {
  let state: string;
  let saved: string | undefined;
  before(() => {
    saved = process.env.BRIG_VM_ACCEL;
    delete process.env.BRIG_VM_ACCEL;
  });
  after(() => {
    if (saved === undefined) delete process.env.BRIG_VM_ACCEL;
    else process.env.BRIG_VM_ACCEL = saved;
  });

  function fakeQemu(body: string): string {
    state = mkdtempSync(join(tmpdir(), 'brig-accel-'));
    mkdirSync(join(state, 'vm'));
    const path = join(state, 'qemu');
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  }

  test('BRIG_VM_ACCEL wins, without a probe', async () => {
    const qemu = fakeQemu('touch "$(dirname "$0")/probed"; exit 1');
    try {
      process.env.BRIG_VM_ACCEL = 'tcg';
      assert.deepEqual(knownAccel(state), { accel: 'tcg', detail: 'BRIG_VM_ACCEL=tcg' });
      assert.equal(await chooseAccel(state, qemu, '/nonexistent', () => assert.fail('nothing to say')), 'tcg');
      process.env.BRIG_VM_ACCEL = 'kvm';
      assert.equal(await chooseAccel(state, qemu, '/nonexistent', () => {}), 'kvm');
      assert.throws(() => readFileSync(join(state, 'probed')), { code: 'ENOENT' });
    } finally {
      delete process.env.BRIG_VM_ACCEL;
      rmSync(state, { recursive: true, force: true });
    }
  });

  const probeSkip = kvmPresent() ? false : 'no /dev/kvm here: the probe is not run, TCG is chosen at once';
  test('a KVM that boots the kernel to its panic is used, and the verdict is kept', { skip: probeSkip }, async () => {
    const qemu = fakeQemu('echo "Kernel panic - not syncing: VFS: Unable to mount root fs"; exit 0');
    try {
      assert.equal(knownAccel(state), null, 'nothing known before the first VM');
      assert.equal(await chooseAccel(state, qemu, '/boot/vmlinuz', () => assert.fail('nothing to say')), 'kvm');
      assert.equal(knownAccel(state)?.accel, 'kvm');
      writeFileSync(qemu, '#!/bin/sh\nexit 1\n');
      assert.equal(await chooseAccel(state, qemu, '/boot/vmlinuz', () => {}), 'kvm', 'the kept verdict, no second probe');
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });

  test('a KVM that refuses the CPU model falls back to TCG, saying why once', { skip: probeSkip }, async () => {
    const qemu = fakeQemu('echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$');
    try {
      const said: string[] = [];
      assert.equal(await chooseAccel(state, qemu, '/boot/vmlinuz', (line) => said.push(line)), 'tcg');
      assert.equal(said.length, 1);
      assert.match(said[0] as string, /does not boot the guest kernel \(qemu-system-x86_64: error: failed to set MSR/);
      assert.equal(await chooseAccel(state, qemu, '/boot/vmlinuz', (line) => said.push(line)), 'tcg');
      assert.equal(said.length, 1, 'said once');
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});
