import { after, describe, test } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { renderOci, type OciMount } from '../../../src/drivers/gvisor/oci.ts';
import { fixturePlan, tempWorkspace, USER_UID } from './plan-fixture.ts';

/**
 * The plan rendered as an OCI spec, without runsc: runs on any host (the
 * suites that start sandboxes skip where gVisor cannot run).
 */
describe('a SandboxPlan rendered as an OCI spec', () => {
  const work = tempWorkspace();
  const plan = fixturePlan(work.dir, ['true']);
  const render = renderOci(plan);
  const config = render.config as { root: { path: string; readonly: boolean }; mounts: OciMount[]; process: Record<string, unknown>; linux: { namespaces: Array<{ type: string }> } };
  const mount = (destination: string): OciMount | undefined => config.mounts.find((entry) => entry.destination === destination);
  after(() => work.remove());

  test('the root is the bundle\'s read-only skeleton, holding the plan\'s links and the mount points', () => {
    assert.deepEqual(config.root, { path: 'rootfs', readonly: true });
    for (const step of plan.mounts) if (step.kind === 'symlink') assert.ok(render.skeleton.some((entry) => entry.kind === 'symlink' && entry.path === step.target && entry.linkTo === step.linkTo), step.target);
    assert.ok(render.skeleton.some((entry) => entry.kind === 'dir' && entry.path === '/usr'));
  });

  test('binds are read-only unless writable; the workspace is the one writable bind', () => {
    assert.deepEqual(mount('/usr')?.options.slice(0, 2), ['rbind', 'ro']);
    assert.deepEqual(mount(work.dir)?.options.slice(0, 2), ['rbind', 'rw']);
    const writable = config.mounts.filter((entry) => entry.type === 'bind' && entry.options.includes('rw'));
    assert.deepEqual(writable.map((entry) => entry.destination), [work.dir]);
  });

  test("masks and files inside a read-only host directory only root may change are folded: the staging wrapper mounts them, not runsc", () => {
    const fold = (target: string) => render.folds.find((entry) => entry.target === target);
    const etc = render.sources.findIndex((source) => source.path === '/etc');
    assert.deepEqual(fold('/etc/shadow'), { source: etc, path: 'shadow', kind: 'file', file: 'empty', target: '/etc/shadow' });
    assert.equal(render.files.find((file) => file.name === 'empty')?.data, '');
    assert.deepEqual(fold('/etc/ssh'), { source: etc, path: 'ssh', kind: 'dir', target: '/etc/ssh' });
    // Folded means not also a mount of runsc's.
    assert.equal(mount('/etc/shadow'), undefined);
    assert.equal(mount('/etc/ssh'), undefined);
    assert.equal(render.files.find((file) => file.name === fold('/etc/passwd')?.file)?.data, plan.identity.passwd);
  });

  test("a mask in a directory someone other than root may change stays runsc's (an empty bundle file or a read-only tmpfs); /proc masks are the Sentry's business", () => {
    const theirs = tempWorkspace();
    try {
      // Owned by USER_UID: a host user who could swap a directory for a link between the check and the mount.
      mkdirSync(join(theirs.dir, 'keys'));
      writeFileSync(join(theirs.dir, 'secret'), 'x');
      const masked = { ...plan, mounts: [...plan.mounts, { kind: 'bind' as const, source: theirs.dir, target: '/theirs', writable: false, field: 'test' }, { kind: 'mask' as const, target: '/theirs/secret', type: 'file' as const, proc: false }, { kind: 'mask' as const, target: '/theirs/keys', type: 'dir' as const, proc: false }] };
      const rendered = renderOci(masked);
      const mounted = (target: string) => (rendered.config.mounts as OciMount[]).find((entry) => entry.destination === target);
      assert.equal(mounted('/theirs/secret')?.source, 'bundle:empty');
      assert.equal(mounted('/theirs/keys')?.type, 'tmpfs');
      assert.ok(mounted('/theirs/keys')?.options.includes('ro'));
      assert.equal(rendered.folds.some((entry) => entry.target.startsWith('/theirs')), false);
    } finally {
      theirs.remove();
    }
    assert.equal(mount('/proc/keys'), undefined);
    assert.equal(mount('/proc/sys'), undefined);
    assert.equal(mount('/proc')?.type, 'proc');
  });

  test('tmpfs belong to the sandbox user', () => {
    assert.ok(mount('/tmp')?.options.includes(`uid=${USER_UID}`));
  });

  test('the process: the plan\'s user, env, cwd, rlimits, no capabilities, no new privileges; its own namespaces', () => {
    const processSpec = config.process as { user: { uid: number }; cwd: string; noNewPrivileges: boolean; capabilities: { bounding: string[] }; rlimits: Array<{ type: string }>; env: string[] };
    assert.equal(processSpec.user.uid, USER_UID);
    assert.equal(processSpec.cwd, plan.cwd);
    assert.equal(processSpec.noNewPrivileges, true);
    assert.deepEqual(processSpec.capabilities.bounding, []);
    assert.ok(processSpec.rlimits.some((limit) => limit.type === 'RLIMIT_NOFILE'));
    assert.ok(processSpec.env.includes(`HOME=${plan.env.HOME}`));
    assert.deepEqual(config.linux.namespaces.map((entry) => entry.type).sort(), ['ipc', 'mount', 'network', 'pid', 'uts']);
  });

  test('the setuid and setgid rule is always in linux.seccomp (a file root makes is uid 0 on the host); logOnly denies nothing', () => {
    const seccomp = (config.linux as unknown as { seccomp: { syscalls: Array<{ names: string[]; args?: Array<{ index: number; value: number; valueTwo: number; op: string }> }> } }).seccomp;
    assert.equal(render.seccomp, true);
    const chmod = seccomp.syscalls.filter((rule) => rule.names.includes('chmod'));
    assert.deepEqual(chmod.map((rule) => rule.args?.[0]?.valueTwo).sort(), [0o2000, 0o4000, 0o6000]);
    assert.ok(chmod.every((rule) => rule.args?.[0]?.index === 1 && rule.args[0].value === 0o6000 && rule.args[0].op === 'SCMP_CMP_MASKED_EQ'));
    assert.ok(seccomp.syscalls.some((rule) => rule.names.includes('openat2') && !rule.args));
    const logOnly = renderOci({ ...plan, syscalls: { extraDeny: ['ptrace'], logOnly: true } });
    assert.equal(logOnly.seccomp, false);
  });

  test("an image's root: writable, no skeleton, its layers named for the staging wrapper; its workspace a plain bind when the user owns it", () => {
    const layer = tempWorkspace();
    try {
      const root = { ...plan, identity: { ...plan.identity, uid: USER_UID, hostUid: USER_UID }, mounts: plan.mounts.filter((step) => step.kind !== 'symlink').map((step) => (step.kind === 'bind' && step.target === work.dir ? { kind: 'mapped-bind' as const, source: step.source, target: step.target, field: step.field } : step)) };
      const image = renderOci({ ...root, image: { layers: [layer.dir], dir: '/unused', rwDir: '/rw', idBase: 0, idCount: 65_536 } });
      assert.deepEqual((image.config as { root: unknown }).root, { path: 'rootfs', readonly: false });
      assert.deepEqual(image.skeleton, []);
      assert.deepEqual(image.image?.layers, [layer.dir]);
      assert.deepEqual((image.config.mounts as OciMount[]).find((entry) => entry.destination === work.dir)?.options.slice(0, 2), ['rbind', 'rw']);
      // gVisor maps no ids: a range is a caller's bug, and a workspace of another owner cannot be written as its owner.
      assert.throws(() => renderOci({ ...root, image: { layers: [layer.dir], dir: '/unused', rwDir: '/rw', idBase: 2 ** 20, idCount: 65_536 } }), { code: 'BRIG_INTERNAL' });
      const stranger = { ...root, identity: { ...root.identity, uid: 4242, hostUid: 4242 } };
      assert.throws(() => renderOci({ ...stranger, image: { layers: [layer.dir], dir: '/unused', rwDir: '/rw', idBase: 0, idCount: 65_536 } }), { code: 'BRIG_GVISOR_UNSUPPORTED', message: /belongs to/ });
    } finally {
      layer.remove();
    }
  });

  test('what gVisor cannot honour is refused, not approximated', () => {
    const stranger = { ...plan, identity: { ...plan.identity, uid: 4242 } };
    assert.throws(() => renderOci(stranger), { code: 'BRIG_GVISOR_UNSUPPORTED' });
  });
});
