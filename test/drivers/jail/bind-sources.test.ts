import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { runBrig, tempWorkspace } from '../../helpers/brig.ts';
import { openSource } from '../../../src/drivers/host/sources.ts';
import { planJail } from '../../helpers/plan.ts';
import { buildPolicy, hide, readOnly, resolvePolicy, tools } from '../../../src/policy/index.ts';
import { locateAgent, type AgentSpec } from '../../../src/agents/index.ts';
import type { BrigError } from '../../../src/protocol/index.ts';

// Issue 10, item 1: a jail plants a symlink in its workspace and waits for a later
// `brig run --rw ./cache` (or --ro, or a policy entry) to bind what the link points
// at. Each attack runs the real CLI with the link in place and looks, from inside
// the jail, for a marker planted in the host directory the link names.
describe('brig run: bind sources are not redirected by links a jail planted', () => {
  let workspace: { dir: string; remove: () => void };
  const markers: string[] = [];
  // The jail would print every marker it can reach; none may appear.
  const probe = 'ls -A ./cache /root /tmp /etc/ssh 2>/dev/null; cat ./cache/* 2>/dev/null; echo RAN';

  before(() => {
    workspace = tempWorkspace();
    mkdirSync(`${workspace.dir}/real-cache`);
    writeFileSync(`${workspace.dir}/real-cache/kept`, 'mine\n');
  });
  after(() => {
    workspace.remove();
    for (const marker of markers) rmSync(marker, { force: true });
  });

  /** A marker file in a host directory, and a link `name` in the workspace leading there through ../../.. */
  function plant(hostDir: string, name: string): string {
    const marker = `${hostDir}/brig-bind-marker-${process.pid}-${name}`;
    writeFileSync(marker, 'HOST-SECRET\n');
    markers.push(marker);
    rmSync(`${workspace.dir}/${name}`, { force: true });
    symlinkSync(`../../..${hostDir}`, `${workspace.dir}/${name}`);
    return marker;
  }

  function assertRefused(result: { code: number | null; stdout: string; stderr: string }, path: string): void {
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, /BRIG_PATH_SYMLINK/);
    assert.ok(result.stderr.includes(path), `the error names ${path}: ${result.stderr}`);
    assert.doesNotMatch(result.stdout, /RAN|brig-bind-marker|HOST-SECRET/, 'the jail never started, so nothing of the host was bound');
  }

  test('--rw ./cache -> ../../../root is refused, the host /root is never bound', async () => {
    plant(homedir(), 'cache');
    const result = await runBrig(['run', '--rw', './cache', '--', '/bin/sh', '-c', probe], { cwd: workspace.dir });
    assertRefused(result, `${workspace.dir}/cache`);
  });

  test('--ro ./cache -> ../../../tmp is refused, the host /tmp (and its sockets) never bound', async () => {
    plant('/tmp', 'cache');
    const result = await runBrig(['run', '--ro', './cache', '--', '/bin/sh', '-c', probe], { cwd: workspace.dir });
    assertRefused(result, `${workspace.dir}/cache`);
  });

  test('a policy file entry ./cache -> ../../../etc/ssh is refused, the masked /etc/ssh stays masked', async () => {
    rmSync(`${workspace.dir}/cache`, { force: true });
    symlinkSync('../../../etc/ssh', `${workspace.dir}/cache`);
    writeFileSync(`${workspace.dir}/policy.json`, JSON.stringify({ filesystem: { readOnly: ['./cache'] } }));
    const result = await runBrig(['run', '--policy', './policy.json', '--', '/bin/sh', '-c', 'ls -A ./cache /etc/ssh; echo RAN'], { cwd: workspace.dir });
    assertRefused(result, `${workspace.dir}/cache`);
  });

  test('a link in the middle of the path is refused too (./via/keys, via -> /etc)', async () => {
    rmSync(`${workspace.dir}/via`, { force: true });
    symlinkSync('/etc', `${workspace.dir}/via`);
    const result = await runBrig(['run', '--ro', './via/ssh', '--', '/bin/sh', '-c', probe], { cwd: workspace.dir });
    assertRefused(result, `${workspace.dir}/via/ssh`);
    assert.match(result.stderr, /via -> \/etc/, 'the error says which component is the link');
  });

  test('a workspace given through a link is refused', async () => {
    rmSync(`${workspace.dir}/ws-link`, { force: true });
    symlinkSync('/etc', `${workspace.dir}/ws-link`);
    const result = await runBrig(['run', '--workspace', './ws-link', '--', '/bin/sh', '-c', 'ls -A; echo RAN'], { cwd: workspace.dir });
    assertRefused(result, `${workspace.dir}/ws-link`);
  });

  test('the same directory named without a link is bound as asked', async () => {
    const result = await runBrig(['run', '--ro', './real-cache', '--', '/bin/sh', '-c', 'cat ./real-cache/kept'], { cwd: workspace.dir });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'mine\n');
  });

  test('a bind that would land on a mask, /proc or the private home is refused, naming the path', async () => {
    for (const [flag, path] of [['--ro', '/etc/ssh'], ['--rw', '/proc/self'], ['--rw', homedir()]] as const) {
      const result = await runBrig(['run', flag, path, '--', '/bin/sh', '-c', 'echo RAN'], { cwd: workspace.dir });
      assert.equal(result.code, 125, `${flag} ${path}: ${result.stderr}`);
      assert.match(result.stderr, /BRIG_BIND_MASKED/, `${flag} ${path}`);
      assert.ok(result.stderr.includes(path), `the error names ${path}`);
      assert.doesNotMatch(result.stdout, /RAN/);
    }
  });
});

describe('openSource: the walk that checks and opens in one step', () => {
  let dir: { dir: string; remove: () => void };
  before(() => {
    dir = tempWorkspace('brig-sources-');
    mkdirSync(`${dir.dir}/a/b`, { recursive: true });
    symlinkSync('a', `${dir.dir}/link`);
  });
  after(() => dir.remove());

  test('a plain path opens; a link anywhere in it, a missing path and a relative path do not', () => {
    closeSync(openSource(`${dir.dir}/a/b`, 'test'));
    assert.throws(() => openSource(`${dir.dir}/link/b`, 'test'), { code: 'BRIG_PATH_SYMLINK' });
    assert.throws(() => openSource(`${dir.dir}/link`, 'test'), { code: 'BRIG_PATH_SYMLINK' });
    assert.throws(() => openSource(`${dir.dir}/a/missing`, 'test'), { code: 'BRIG_PATH_MISSING' });
    assert.throws(() => openSource(`${dir.dir}/a/../a`, 'test'), { code: 'BRIG_POLICY_INVALID' });
  });
});

describe('planJail: tools and binds the plan refuses before anything starts', () => {
  let dir: { dir: string; remove: () => void };
  const host = (cwd: string) => ({ uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: homedir(), cwd, env: { PATH: '/usr/bin:/bin' } });
  before(() => {
    dir = tempWorkspace();
    mkdirSync(`${dir.dir}/bin`);
    symlinkSync('/usr/bin/id', `${dir.dir}/bin/tool`);
  });
  after(() => dir.remove());

  test('a tool reached through a link in the workspace (where jails write) is refused', () => {
    const policy = resolvePolicy(buildPolicy(tools(`${dir.dir}/bin/tool`)), { cwd: dir.dir, home: homedir() });
    assert.throws(() => planJail(policy, ['true'], host(dir.dir), { tty: false }), (error: BrigError) => error.code === 'BRIG_PATH_SYMLINK' && error.message.includes(`${dir.dir}/bin/tool`));
  });

  test('a tool whose host link leads into the workspace (as `npm link` makes) is refused at the link planted there', () => {
    const linkDir = tempWorkspace('brig-npm-link-');
    try {
      symlinkSync(`${dir.dir}/bin/tool`, `${linkDir.dir}/tool`);
      const policy = resolvePolicy(buildPolicy(tools(`${linkDir.dir}/tool`)), { cwd: dir.dir, home: homedir() });
      assert.throws(() => planJail(policy, ['true'], host(dir.dir), { tty: false }), (error: BrigError) => error.code === 'BRIG_PATH_SYMLINK' && error.message.includes(`the symbolic link ${dir.dir}/bin/tool`));
    } finally {
      linkDir.remove();
    }
  });

  test('a bind under a hidden path is refused: it would unmask part of it', () => {
    mkdirSync(`${dir.dir}/secret/inner`, { recursive: true });
    const policy = resolvePolicy(buildPolicy(hide(`${dir.dir}/secret`), readOnly(`${dir.dir}/secret/inner`)), { cwd: dir.dir, home: homedir() });
    assert.throws(() => planJail(policy, ['true'], host(dir.dir), { tty: false }), { code: 'BRIG_BIND_MASKED' });
  });
});

describe('locateAgent: an agent CLI whose link leads out of the project through a planted link', () => {
  let project: { dir: string; remove: () => void };
  let linkDir: { dir: string; remove: () => void };
  before(() => {
    project = tempWorkspace();
    linkDir = tempWorkspace('brig-npm-link-');
    // `npm link` leaves a host link into the project; a jail then swaps the CLI for a link to a host file.
    symlinkSync('/etc/hostname', `${project.dir}/cli.js`);
    symlinkSync(`${project.dir}/cli.js`, `${linkDir.dir}/agent`);
  });
  after(() => {
    project.remove();
    linkDir.remove();
  });

  test('is refused, naming the link in the project', () => {
    const spec: AgentSpec = { name: 'linked', description: 'an npm-linked CLI', command: `${linkDir.dir}/agent`, configPaths: [], providers: [] };
    const context = { cwd: project.dir, home: homedir(), env: { PATH: '/usr/bin:/bin' }, visible: ['/usr'] };
    assert.throws(() => locateAgent(spec, context), (error: BrigError) => error.code === 'BRIG_PATH_SYMLINK' && error.message.includes(`${project.dir}/cli.js`));
  });
});
