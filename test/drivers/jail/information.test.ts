import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Sandbox, type SandboxOpts } from 'e2b';
import { runBrig, tempWorkspace } from '../../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../../helpers/daemon.ts';

// Issue 10, item 4: what a jail learns about the host. Daemon sandboxes used to see
// brig's whole install (.git, sources, tests); the host's PATH and hostname leaked in.
const REPO = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');
const HOST_NAME = hostname();
/** A directory on the caller's PATH that no jail sees (under the hidden home). */
const PATH_MARKER = `${homedir()}/.brig-path-marker-${process.pid}/bin`;

/** The names a jail may show in its identity files: its own and localhost's, never the host's (unless the host is called that too). */
function assertOwnIdentity(stdout: string): void {
  assert.match(stdout, /^hostname: brig$/m);
  assert.match(stdout, /^etc-hostname: brig$/m);
  if (!['brig', 'localhost'].includes(HOST_NAME)) {
    assert.ok(!stdout.includes(HOST_NAME), `the host's name (${HOST_NAME}) appears:\n${stdout}`);
  }
  assert.match(stdout, /127\.0\.1\.1\s+brig/, '/etc/hosts names the jail');
}

const IDENTITY = 'echo "hostname: $(hostname)"; echo "etc-hostname: $(cat /etc/hostname)"; cat /etc/hosts; uname -n';

describe('brig run: the jail has its own name and PATH', () => {
  let workspace: { dir: string; remove: () => void };
  before(() => {
    workspace = tempWorkspace();
    mkdirSync(PATH_MARKER, { recursive: true });
  });
  after(() => {
    workspace.remove();
    rmSync(PATH_MARKER.replace(/\/bin$/, ''), { recursive: true, force: true });
  });

  test('hostname, /etc/hostname and /etc/hosts name the jail', async () => {
    const result = await runBrig(['run', '--', '/bin/sh', '-c', IDENTITY], { cwd: workspace.dir });
    assert.equal(result.code, 0, result.stderr);
    assertOwnIdentity(result.stdout);
  });

  test('a forwarded or set PATH keeps only the directories the jail sees', async () => {
    const env = { ...process.env, PATH: `${PATH_MARKER}:/usr/bin:/bin` };
    const result = await runBrig(['run', '--', '/bin/sh', '-c', 'echo "$PATH"'], { cwd: workspace.dir, env });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '/usr/bin:/bin\n');
    // A PATH the policy sets keeps what can exist inside (the workspace, the jail's home), not host-only places.
    const set = await runBrig(['run', '--env', `PATH=/opt/brig-path-marker-${process.pid}/bin:/usr/bin:${workspace.dir}/bin:${homedir()}/.local/bin`, '--', '/bin/sh', '-c', 'echo "$PATH"'], { cwd: workspace.dir });
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, `/usr/bin:${workspace.dir}/bin:${homedir()}/.local/bin\n`);
  });
});

describe('daemon sandboxes: only envd, their own name and PATH', () => {
  const API_KEY = 'brig_information_key';
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let sandbox: Sandbox;
  const opts = (): SandboxOpts => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  before(async () => {
    state = tempWorkspace('brig-information-state-');
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, env: { PATH: `${PATH_MARKER}:${process.env.PATH ?? '/usr/bin:/bin'}` } });
    sandbox = await Sandbox.create(opts());
  });
  after(async () => {
    await sandbox.kill().catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test("brig's install (its .git, sources and tests) is not visible; envd's runtime is", async () => {
    const result = await sandbox.commands.run(`for p in ${REPO} ${REPO}/.git ${REPO}/src ${REPO}/test ${REPO}/package.json; do test -e $p && echo "VISIBLE $p"; done; ls /run/brig/envd; true`);
    assert.doesNotMatch(result.stdout, /VISIBLE/);
    assert.match(result.stdout, /^bin\nenvd\nlib\n$/m);
    const mounts = await sandbox.commands.run('cut -d" " -f5 /proc/self/mountinfo');
    assert.ok(!mounts.stdout.split('\n').some((point) => point === REPO || point.startsWith(`${REPO}/`)), `nothing is mounted at brig's install:\n${mounts.stdout}`);
  });

  test('hostname, /etc/hostname and /etc/hosts name the sandbox', async () => {
    assertOwnIdentity((await sandbox.commands.run(IDENTITY)).stdout);
  });

  test("no process in the sandbox has the daemon's PATH", async () => {
    const result = await sandbox.commands.run('for p in /proc/[0-9]*; do tr "\\0" "\\n" < $p/environ | grep "^PATH="; done; true');
    assert.match(result.stdout, /^PATH=/m, 'the PATHs were read');
    assert.ok(!result.stdout.includes(PATH_MARKER), `a process has the daemon's PATH:\n${result.stdout}`);
  });
});
