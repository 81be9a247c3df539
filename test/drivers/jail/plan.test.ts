import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { applyPolicyInput, buildPolicy, hide, hostNetwork, readOnly, readWrite, resolvePolicy, setEnv, forwardEnv, memory, runAs, user, workspace, workspaceAt, type Policy } from '../../../src/policy/index.ts';
import type { HostContext } from '../../../src/drivers/index.ts';
import { FD, type JailPlan } from '../../../src/drivers/jail/index.ts';
import { planJail } from '../../helpers/plan.ts';

// Policy → plan, without starting anything. The golden files pin the whole bwrap argv on
// the reference machine (Debian 12, as CI); rerun with UPDATE_GOLDEN=1 after a deliberate change.
const ROOT = '/tmp/brig-golden';
const HOME = `${ROOT}/home/alice`;
// The usual layout: the project inside the home, which the jail must not see.
const WORKSPACE = `${HOME}/project`;
const host: HostContext = { uid: 1000, gid: 1000, home: HOME, cwd: WORKSPACE, env: { PATH: '/usr/bin:/bin', TERM: 'xterm', LANG: 'C.UTF-8', AWS_SECRET_ACCESS_KEY: 'leak', HOME } };

function plan(policy: Policy, command = ['bash'], tty = false): JailPlan {
  return planJail(resolvePolicy(policy, { cwd: WORKSPACE, home: HOME }), command, host, { tty });
}

function golden(name: string, plan: JailPlan): void {
  const file = new URL(`../../golden/${name}.json`, import.meta.url);
  const actual = JSON.stringify({ argv: plan.argv.slice(1), fds: plan.fds, env: plan.env, cwd: plan.cwd, passwd: plan.identity.passwd }, null, 2) + '\n';
  if (process.env.UPDATE_GOLDEN) writeFileSync(file, actual);
  assert.equal(actual, readFileSync(file, 'utf8'), `plan differs from test/golden/${name}.json`);
}

function after_(argv: string[], flag: string, value: string): number {
  return argv.findIndex((word, index) => word === flag && argv[index + 1] === value);
}

/** Where `flag` (--bind-fd, --ro-bind-fd) binds the host path `source`: bind sources go by fd number (plan.fds). */
function bindOf(result: JailPlan, flag: string, source: string): number {
  const index = result.fds.findIndex((entry) => entry.kind === 'path' && entry.path === source);
  return index < 0 ? -1 : after_(result.argv, flag, String(FD.bindSources + index));
}

describe('policy → plan', () => {
  before(() => {
    mkdirSync(`${WORKSPACE}/.git`, { recursive: true });
    mkdirSync(`${ROOT}/shared`, { recursive: true });
    writeFileSync(`${WORKSPACE}/.env`, 'SECRET=1\n');
  });
  after(() => rmSync(ROOT, { recursive: true, force: true }));

  test('the default policy (golden)', () => golden('default-plan', plan(buildPolicy())));

  test('a widened policy (golden)', () =>
    golden('widened-plan', plan(buildPolicy(readOnly(`${ROOT}/shared`), readWrite(`${WORKSPACE}/.git`), hide(`${WORKSPACE}/.env`), hostNetwork(), forwardEnv('AWS_SECRET_ACCESS_KEY'), setEnv('CI', '1'), memory(512)))));

  test('every namespace, no capabilities, no nested user namespaces, dies with brig', () => {
    const { argv } = plan(buildPolicy());
    for (const flag of ['--unshare-user', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup', '--unshare-net', '--disable-userns', '--die-with-parent', '--new-session']) {
      assert.ok(argv.includes(flag), `${flag} is set`);
    }
    assert.ok(after_(argv, '--cap-drop', 'ALL') > 0);
    assert.ok(after_(argv, '--seccomp', '3') > 0);
    assert.ok(after_(argv, '--json-status-fd', '4') > 0);
    assert.ok(after_(argv, '--hostname', 'brig') > 0);
  });

  test('--net host keeps the host network namespace', () => {
    assert.ok(!plan(buildPolicy(hostNetwork())).argv.includes('--unshare-net'));
  });

  test('the home is a private tmpfs, mounted before the workspace and before anything under it', () => {
    const result = plan(buildPolicy(hide(`${WORKSPACE}/.env`)));
    const { argv } = result;
    const home = after_(argv, '--tmpfs', HOME);
    const workspace = bindOf(result, '--bind-fd', WORKSPACE);
    const hidden = after_(argv, '--ro-bind', '/dev/null');
    assert.ok(home > 0 && workspace > home, 'home tmpfs, then workspace');
    assert.ok(argv.lastIndexOf(`${WORKSPACE}/.env`) > workspace, 'the hidden file is masked after the workspace is bound');
    assert.ok(hidden > 0);
  });

  test('/proc/sys is read-only and the credential files are masked', () => {
    const { argv } = plan(buildPolicy());
    assert.ok(after_(argv, '--ro-bind', '/proc/sys') > after_(argv, '--proc', '/proc'));
    assert.equal(argv[argv.indexOf('/etc/shadow') - 2], '--ro-bind', '/etc/shadow is covered');
    assert.equal(argv[argv.indexOf('/etc/shadow') - 1], '/dev/null');
    const result = plan(buildPolicy());
    const passwd = result.fds.findIndex((entry) => entry.kind === 'data' && entry.data === result.identity.passwd);
    const etc = result.fds.findIndex((entry) => entry.kind === 'path' && entry.path === '/etc');
    assert.ok(after_(argv, '--ro-bind-data', String(FD.bindSources + passwd)) > after_(argv, '--ro-bind-fd', String(FD.bindSources + etc)), "the jail's passwd replaces the host's");
  });

  test('the environment is built from nothing', () => {
    const { env } = plan(buildPolicy());
    assert.equal(env.AWS_SECRET_ACCESS_KEY, undefined);
    assert.deepEqual(Object.keys(env).sort(), ['HOME', 'LANG', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER']);
    assert.equal(plan(buildPolicy(forwardEnv('AWS_SECRET_ACCESS_KEY'))).env.AWS_SECRET_ACCESS_KEY, 'leak', 'forwarded only on request');
  });

  test('with a terminal, the command gets its own session and controlling tty instead of --new-session', () => {
    const { argv } = plan(buildPolicy(), ['bash'], true);
    assert.ok(!argv.includes('--new-session'));
    assert.deepEqual(argv.slice(-3), ['/usr/bin/setsid', '--ctty', 'bash']);
  });

  test('limits: rlimits through brig-exec, cgroup limits as files', () => {
    const result = plan(buildPolicy(memory(512)));
    assert.deepEqual(result.argv.slice(1, 9), ['--rlimit', 'NOFILE=1024:1024', '--rlimit', 'NPROC=512:512', '--rlimit', 'CORE=0:0', '--rlimit', `FSIZE=${16384 * 1024 * 1024}:${16384 * 1024 * 1024}`]);
    assert.deepEqual(result.argv.slice(9, 11), ['--keep-fds', String(FD.bindSources + result.fds.length - 1)], 'brig-exec keeps exactly the fds brig hands over');
    const limit = result.limits.cgroup.writes.find(([file]) => file.endsWith('memory.limit_in_bytes') || file.endsWith('memory.max'));
    assert.equal(limit?.[1], String(512 * 1024 * 1024));
  });

  test('a workspace quota (resources.diskMiB) is refused in the foreground: brig run binds the caller\'s own directory', () => {
    const quota = applyPolicyInput(buildPolicy(), { resources: { diskMiB: 64 } }, 'test');
    assert.throws(() => plan(quota), { code: 'BRIG_POLICY_INVALID', message: /diskMiB/ });
  });

  test('a workspace that contains the home is refused', () => {
    assert.throws(() => planJail(resolvePolicy(buildPolicy(), { cwd: `${ROOT}/home`, home: HOME }), ['bash'], { ...host, cwd: `${ROOT}/home` }, { tty: false }), { code: 'BRIG_POLICY_INVALID' });
    assert.throws(() => planJail(resolvePolicy(buildPolicy(), { cwd: '/', home: HOME }), ['bash'], { ...host, cwd: '/' }, { tty: false }), { code: 'BRIG_POLICY_INVALID' });
  });
});

describe('policy → plan: the workspace elsewhere inside, as an E2B sandbox lays it out', () => {
  const HOST_WS = '/tmp/brig-golden-e2b/ws';
  before(() => mkdirSync(HOST_WS, { recursive: true }));
  after(() => rmSync('/tmp/brig-golden-e2b', { recursive: true, force: true }));

  test('the workspace is bound at /home/user, which is the home: no tmpfs over it, the command starts there', () => {
    const policy = resolvePolicy(buildPolicy(workspace(HOST_WS), workspaceAt('/home/user'), user('user', '/home/user'), runAs(1000, 1000)), { cwd: HOST_WS, home: HOME });
    const result = planJail(policy, ['bash'], host, { tty: false });
    assert.ok(bindOf(result, '--bind-fd', HOST_WS) > 0);
    assert.equal(result.argv[bindOf(result, '--bind-fd', HOST_WS) + 2], '/home/user');
    assert.equal(after_(result.argv, '--tmpfs', '/home/user'), -1, 'the home is the workspace, not a tmpfs');
    assert.equal(result.argv[result.argv.indexOf('--chdir') + 1], '/home/user');
    assert.equal(result.cwd, '/home/user');
    assert.equal(result.env.HOME, '/home/user');
    assert.equal(result.env.USER, 'user');
    assert.match(result.identity.passwd, /^user:x:1000:1000:user:\/home\/user:/m);
  });

  test('a relative command is looked for in the host workspace', () => {
    writeFileSync(`${HOST_WS}/run.sh`, '#!/bin/sh\n');
    const policy = resolvePolicy(buildPolicy(workspace(HOST_WS), workspaceAt('/home/user'), user('user', '/home/user')), { cwd: HOST_WS, home: HOME });
    assert.throws(() => planJail(policy, ['./run.sh'], host, { tty: false }), { code: 'BRIG_COMMAND_NOT_EXECUTABLE' }, 'found (in the host workspace), just not executable');
    assert.throws(() => planJail(policy, ['./missing.sh'], host, { tty: false }), { code: 'BRIG_COMMAND_NOT_FOUND' });
  });
});

describe('an image jail (policy → plan)', () => {
  const layer = '/tmp/brig-golden-layer';
  before(() => {
    mkdirSync(`${layer}/etc`, { recursive: true });
    writeFileSync(`${layer}/etc/passwd`, 'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n');
  });
  after(() => rmSync(layer, { recursive: true, force: true }));
  const image = { layers: [layer], dir: '/tmp/brig-golden-image', rwDir: '/tmp/brig-golden-rw', idBase: 1 << 20, idCount: 65_536 };
  const rootHost: HostContext = { ...host, uid: 0, gid: 0 };

  test('joins the namespace brig-exec makes, binds its root as /, and keeps no host file, account or $TMPDIR', () => {
    const planned = planJail(resolvePolicy(buildPolicy(workspace(null), runAs(0, 0)), { cwd: WORKSPACE, home: HOME }), ['bash'], rootHost, { tty: false, image });
    const { argv } = planned;
    const bwrapAt = argv.findIndex((arg) => arg.endsWith('bwrap'));
    const exec = argv.slice(0, bwrapAt);
    const bwrap = argv.slice(bwrapAt);
    // Every mount point bubblewrap makes inside the image's root is checked for links first (brig-exec --no-link-at).
    const noLinks = [...new Set(planned.mounts.map((step) => step.target))].flatMap((target) => ['--no-link-at', target]);
    assert.ok(noLinks.includes('/etc/hosts') && noLinks.includes('/tmp'));
    assert.deepEqual(exec.slice(exec.indexOf('--image-dir')), ['--image-dir', image.dir, '--rw-dir', image.rwDir, '--layer', layer, '--idmap', `${1 << 20}:65536`, '--owner', `${1 << 20}:${1 << 20}`, ...noLinks, '--userns-fd', String(FD.bindSources), '--root-fd', String(FD.bindSources + 1), '--']);
    assert.deepEqual(bwrap.slice(bwrap.indexOf('--userns'), bwrap.indexOf('--userns') + 2), ['--userns', String(FD.bindSources)]);
    assert.ok(!bwrap.includes('--unshare-user') && !bwrap.includes('--disable-userns'));
    assert.deepEqual(bwrap.slice(bwrap.indexOf('--bind-fd'), bwrap.indexOf('--bind-fd') + 3), ['--bind-fd', String(FD.bindSources + 1), '/']);
    assert.ok(!bwrap.includes('/usr') && !bwrap.includes('/etc/passwd') && !bwrap.includes('/etc/shadow'), 'no host system directory or account file');
    assert.ok(bwrap.includes('CAP_CHOWN') && !bwrap.includes('CAP_SYS_ADMIN'));
    assert.equal(planned.identity.hostUid, 1 << 20);
  });

  test('a user of the image runs as its ids, without capabilities; ids past the range are refused', () => {
    const planned = planJail(resolvePolicy(buildPolicy(workspace(null), user('user', null)), { cwd: WORKSPACE, home: HOME }), ['bash'], rootHost, { tty: false, image });
    assert.deepEqual([planned.identity.uid, planned.identity.gid, planned.identity.home, planned.identity.hostUid], [1000, 1000, '/home/user', (1 << 20) + 1000]);
    assert.ok(!planned.argv.includes('--cap-add'));
    assert.throws(() => planJail(resolvePolicy(buildPolicy(workspace(null), runAs(70_000, 70_000)), { cwd: WORKSPACE, home: HOME }), ['bash'], rootHost, { tty: false, image }), /outside the image jail's ids/);
    assert.throws(() => planJail(resolvePolicy(buildPolicy(workspace(null)), { cwd: WORKSPACE, home: HOME }), ['bash'], host, { tty: false, image }), /needs brig to run as root/);
  });
});
