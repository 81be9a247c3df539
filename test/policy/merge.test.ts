import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyPolicyInput, DEFAULT_POLICY, type Policy } from '../../src/policy/index.ts';
import { brigErrorFrom, isDeeplyFrozen, problemsOf } from './helpers.ts';

describe('applyPolicyInput: objects merge field by field, everything else replaces', () => {
  const merged = applyPolicyInput(DEFAULT_POLICY, {
    filesystem: { readOnly: ['/opt/sdk'], tmpfs: [] },
    environment: { set: { A: '1' } },
    resources: { memoryMiB: 512, openFiles: { soft: 1000 } },
    identity: { uid: 0 },
  });

  it('keeps the fields the input does not mention', () => {
    assert.deepEqual(merged.filesystem.system, DEFAULT_POLICY.filesystem.system);
    assert.equal(merged.filesystem.workspace, '.');
    assert.equal(merged.resources.cpus, DEFAULT_POLICY.resources.cpus);
    assert.deepEqual(merged.network, DEFAULT_POLICY.network);
    assert.equal(merged.identity.hostname, 'brig');
  });

  it('replaces lists whole, including with an empty list', () => {
    assert.deepEqual(merged.filesystem.readOnly, ['/opt/sdk']);
    assert.deepEqual(merged.filesystem.tmpfs, []);
    const again = applyPolicyInput(merged, { filesystem: { readOnly: ['/other'] } });
    assert.deepEqual(again.filesystem.readOnly, ['/other']);
  });

  it('replaces scalars, null included, and merges nested objects such as openFiles and environment.set', () => {
    assert.equal(merged.resources.memoryMiB, 512);
    assert.deepEqual(merged.resources.openFiles, { soft: 1000, hard: 1024 });
    assert.equal(merged.identity.uid, 0);
    assert.equal(applyPolicyInput(merged, { identity: { uid: null } }).identity.uid, null);
    const more = applyPolicyInput(merged, { environment: { set: { B: '2', A: 'changed' } } });
    assert.deepEqual(more.environment.set, { A: 'changed', B: '2' });
    assert.equal(applyPolicyInput(DEFAULT_POLICY, { filesystem: { workspace: null } }).filesystem.workspace, null);
  });

  it('returns a new deeply frozen policy and never modifies base or input', () => {
    const input = { filesystem: { readOnly: ['/opt/sdk'] } };
    const before = structuredClone(DEFAULT_POLICY);
    const result = applyPolicyInput(DEFAULT_POLICY, input);
    assert.ok(isDeeplyFrozen(result));
    assert.deepEqual(DEFAULT_POLICY, before);
    input.filesystem.readOnly.push('/later');
    assert.deepEqual(result.filesystem.readOnly, ['/opt/sdk']);
    assert.equal(applyPolicyInput(DEFAULT_POLICY, {}).name, 'default');
  });

  it('judges the merged result as a whole: soft given alone must not exceed the hard it meets', () => {
    const error = brigErrorFrom(() => applyPolicyInput(DEFAULT_POLICY, { resources: { processes: { soft: 4000 } } }, 'team.yaml'), 'BRIG_POLICY_INVALID');
    assert.deepEqual(problemsOf(error, 'team.yaml'), ['resources.processes: soft (4000) must not exceed hard (512)']);
  });

  it('refuses a base that is not a complete, valid policy', () => {
    const broken = { ...DEFAULT_POLICY, resources: { ...DEFAULT_POLICY.resources, memoryMiB: 1 } } as Policy;
    const error = brigErrorFrom(() => applyPolicyInput(broken, { name: 'x' }), 'BRIG_POLICY_INVALID');
    assert.match(error.message, /^policy: resources\.memoryMiB: must be an integer from 16 to 1073741824, got 1$/);
  });
});
