import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon } from '../helpers/daemon.ts';
import { driverFor, tierNames } from '../../src/drivers/index.ts';

describe('brig tiers and --tier: one door into every tier', () => {
  test('brig tiers lists every tier of the registry, whether it runs here, and why not', async () => {
    const listed = await runBrig(['tiers', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const tiers = JSON.parse(listed.stdout) as Array<{ tier: string; available: boolean; detail: string; summary: string; fix?: string }>;
    assert.deepEqual(tiers.map((entry) => entry.tier), tierNames());
    const jail = tiers.find((entry) => entry.tier === 'jail');
    assert.equal(jail?.available, true);
    assert.match(jail?.detail ?? '', /bwrap/);
    for (const entry of tiers) if (!entry.available) assert.ok(entry.fix, `${entry.tier} says what fixes it`);
    const text = await runBrig(['tiers']);
    assert.match(text.stdout, /^jail\s+available\s+namespaces/m);
  });

  test('brig tiers prepare readies what a tier needs, says what is ready, and refuses what it does not know', async () => {
    const jail = await runBrig(['tiers', 'prepare', 'jail']);
    assert.equal(jail.code, 0, jail.stderr);
    assert.equal(jail.stdout, 'jail: nothing to prepare\n');
    const unknown = await runBrig(['tiers', 'frobnicate']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /unknown action 'frobnicate' \[BRIG_USAGE\]/);
    const vm = driverFor('vm').status();
    if (!vm.available) return;
    const prepared = await runBrig(['tiers', 'prepare', 'vm']);
    assert.equal(prepared.code, 0, prepared.stderr);
    const [kernel, initramfs, accel] = prepared.stdout.trim().split('\n');
    const kernelPath = /^vm: guest kernel [^:]+: (\S+) \(/.exec(kernel ?? '')?.[1];
    const initramfsPath = /^vm: initramfs: (\S+) \(/.exec(initramfs ?? '')?.[1];
    assert.ok(kernelPath && existsSync(kernelPath), prepared.stdout);
    assert.ok(initramfsPath && existsSync(initramfsPath), prepared.stdout);
    assert.match(accel ?? '', /^vm: acceleration: (KVM|TCG) \(/);
  });

  test('brig run --tier names a tier; an unknown one is refused with the list, before anything starts', async () => {
    const work = tempWorkspace('brig-tier-');
    try {
      const ran = await runBrig(['run', '--tier', 'jail', '--', 'sh', '-c', 'echo in-jail'], { cwd: work.dir });
      assert.equal(ran.code, 0, ran.stderr);
      assert.equal(ran.stdout, 'in-jail\n');
      const unknown = await runBrig(['run', '--tier', 'firecracker', '--', 'true'], { cwd: work.dir });
      assert.equal(unknown.code, 125);
      assert.match(unknown.stderr, /no tier 'firecracker' \[BRIG_TIER_UNKNOWN\]/);
      assert.match(unknown.stderr, new RegExp(`hint: use one of: ${tierNames().join(', ')}`));
      const dry = await runBrig(['run', '--tier', 'jail', '--dry-run', '--json', '--', 'true'], { cwd: work.dir });
      assert.equal((JSON.parse(dry.stdout) as { tier: string }).tier, 'jail');
    } finally {
      work.remove();
    }
  });

  test("a policy file's tier is checked like every other field", async () => {
    const work = tempWorkspace('brig-tier-');
    try {
      writeFileSync(`${work.dir}/bad.json`, JSON.stringify({ tier: 'Not A Tier' }));
      const bad = await runBrig(['run', '--policy', 'bad.json', '--', 'true'], { cwd: work.dir });
      assert.equal(bad.code, 125);
      assert.match(bad.stderr, /tier: must be a tier name/);
      assert.match(bad.stderr, /BRIG_POLICY_INVALID/);
      writeFileSync(`${work.dir}/good.json`, JSON.stringify({ tier: 'jail' }));
      const good = await runBrig(['run', '--policy', 'good.json', '--dry-run', '--json', '--', 'true'], { cwd: work.dir });
      assert.equal((JSON.parse(good.stdout) as { tier: string }).tier, 'jail');
    } finally {
      work.remove();
    }
  });

  test('brig serve --tier with an unknown tier does not start; a create naming one is a 400 that lists them', async () => {
    const state = tempWorkspace('brig-tier-state-');
    try {
      await assert.rejects(serveDaemon(state.dir, { apiKey: 'k', args: ['--tier', 'nope'] }), /BRIG_TIER_UNKNOWN/);
      const daemon = await serveDaemon(state.dir, { apiKey: 'k' });
      try {
        const response = await fetch(`${daemon.url}/sandboxes`, { method: 'POST', headers: { 'X-API-KEY': 'k', 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'base', tier: 'nope' }) });
        assert.equal(response.status, 400);
        const body = (await response.json()) as { code: string; hint: string };
        assert.equal(body.code, 'BRIG_TIER_UNKNOWN');
        assert.match(body.hint, /jail/);
        const listed = (await (await fetch(`${daemon.url}/v1/sandboxes`, { headers: { 'X-API-KEY': 'k' } })).json()) as unknown[];
        assert.deepEqual(listed, [], 'nothing was left of the refused create');
      } finally {
        await daemon.stop();
      }
    } finally {
      state.remove();
    }
  });
});
