import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyPolicyInput, buildPolicy, DEFAULT_POLICY, hide, readOnly, readWrite, resolvePolicy, tools, workspace } from '../../src/policy/index.ts';
import { brigErrorFrom, isDeeplyFrozen } from './helpers.ts';

const context = { cwd: '/work/project', home: '/home/ada' };

describe('resolvePolicy', () => {
  it('makes every path absolute and normal: "." against cwd, "~" against home', () => {
    const policy = applyPolicyInput(DEFAULT_POLICY, {
      filesystem: {
        workspace: './app/',
        readOnly: ['~', '~/.cache/pip/', '../shared', '/usr//lib/./x/..'],
        readWrite: ['.'],
        tmpfs: ['/tmp/'],
        hidden: ['~/.ssh', './app/.env'],
      },
      tools: ['git', '/opt/node/bin/../bin/node'],
    });
    const resolved = resolvePolicy(policy, context);
    assert.deepEqual(resolved.filesystem, {
      ...policy.filesystem,
      workspace: '/work/project/app',
      readOnly: ['/home/ada', '/home/ada/.cache/pip', '/work/shared', '/usr/lib'],
      readWrite: ['/work/project'],
      tmpfs: ['/tmp'],
      hidden: ['/home/ada/.ssh', '/work/project/app/.env'],
    });
    assert.deepEqual(resolved.tools, ['git', '/opt/node/bin/node']);
  });

  it('resolves the default workspace "." to cwd and keeps null', () => {
    assert.equal(resolvePolicy(DEFAULT_POLICY, context).filesystem.workspace, '/work/project');
    assert.equal(resolvePolicy(buildPolicy(workspace(null)), context).filesystem.workspace, null);
  });

  it('removes duplicates, also those that only appear after resolution', () => {
    const policy = buildPolicy(readOnly('~/x', '/home/ada/x/', '/a', '/a'), tools('git', 'git'));
    const resolved = resolvePolicy(applyPolicyInput(policy, { environment: { forward: ['PATH', 'PATH'] }, syscalls: { extraDeny: ['ptrace', 'ptrace'] } }), context);
    assert.deepEqual(resolved.filesystem.readOnly, ['/home/ada/x', '/a']);
    assert.deepEqual(resolved.tools, ['git']);
    assert.deepEqual(resolved.environment.forward, ['PATH']);
    assert.deepEqual(resolved.syscalls.extraDeny, ['ptrace']);
  });

  it('refuses the same path in two lists, after resolution', () => {
    const error = brigErrorFrom(() => resolvePolicy(buildPolicy(readOnly('~/data'), readWrite('/home/ada/data'), hide('.')), context), 'BRIG_POLICY_INVALID');
    assert.equal(error.message, 'policy "default": /home/ada/data is in both filesystem.readOnly and filesystem.readWrite; /work/project is in both filesystem.workspace and filesystem.hidden');
  });

  it('returns a new deeply frozen policy and is pure', () => {
    const policy = buildPolicy(readOnly('./x'));
    const resolved = resolvePolicy(policy, context);
    assert.notEqual(resolved, policy);
    assert.ok(isDeeplyFrozen(resolved));
    assert.deepEqual(policy.filesystem.readOnly, ['./x']);
    // Nothing here exists on this machine; resolution never looks.
    assert.deepEqual(resolvePolicy(policy, { cwd: '/no/such/dir', home: '/nobody' }).filesystem.readOnly, ['/no/such/dir/x']);
  });

  it('refuses a relative cwd or home', () => {
    brigErrorFrom(() => resolvePolicy(DEFAULT_POLICY, { cwd: 'relative', home: '/home/ada' }), 'BRIG_USAGE');
    brigErrorFrom(() => resolvePolicy(DEFAULT_POLICY, { cwd: '/w', home: '~' }), 'BRIG_USAGE');
  });
});
