import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { BRIG, collect, tempWorkspace } from '../../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../../helpers/daemon.ts';

// Issue 10, item 3: an fd brig's caller left open without close-on-exec (a shell's
// `20<file`) used to be usable inside the jail, and daemon sandboxes inherited the
// daemon's own. The attack: hold a host file open on fd 20 (and on 7 and 9, the
// numbers brig itself uses for its own fds) while starting brig, then read every
// fd of every process in the jail.
const INHERITED = [7, 9, 20];

/** stdio for spawn: 0-2 as given, then the host file at each INHERITED number, nothing elsewhere. */
function leaky(fd: number): Array<'pipe' | 'ignore' | number> {
  return Array.from({ length: 21 }, (_, index) => (index < 3 ? 'pipe' : INHERITED.includes(index) ? fd : 'ignore'));
}

/** Every fd of every process the jail can see, as `pid fd -> target`, and what reading fd 20 gives. */
const PROBE = 'for p in /proc/[0-9]*; do for f in $p/fd/*; do echo "${p#/proc/} ${f##*/} -> $(readlink $f)"; done; done; cat /proc/self/fd/20 2>&1; echo "self: $(ls /proc/self/fd | tr "\\n" " ")"';

/** A bind source fd (O_PATH, a handle on a host directory) left open would show as a link to the directory it binds. */
const BIND_SOURCE = /^\d+ \d+ -> (\/usr|\/etc|\/home\/user|\/run\/brig\/envd\/\S*|\/tmp\/brig-[^\s.]*)$/m;

/** ls lists its own fds: its stdio and the directory it reads (3). */
const ONLY_STDIO = /^self: 0 1 2 3 $/m;

describe('no fd the caller left open reaches a jail', () => {
  let dir: { dir: string; remove: () => void };
  let secret: string;
  let fd: number;
  before(() => {
    dir = tempWorkspace();
    secret = `${dir.dir}/../brig-fd-secret-${process.pid}`;
    writeFileSync(secret, 'HOST-FD-SECRET\n');
    fd = openSync(secret, 'r');
  });
  after(() => {
    closeSync(fd);
    rmSync(secret, { force: true });
    dir.remove();
  });

  test('brig run started with host files on fds 7, 9 and 20: the jail sees only its stdio', async () => {
    const child = spawn(BRIG, ['run', '--', '/bin/sh', '-c', PROBE], { cwd: dir.dir, stdio: leaky(fd) });
    const result = await collect(child);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /HOST-FD-SECRET/);
    assert.ok(!result.stdout.includes('brig-fd-secret'), `no process in the jail holds the file:\n${result.stdout}`);
    assert.match(result.stdout, ONLY_STDIO);
    assert.doesNotMatch(result.stdout, BIND_SOURCE, 'no bind source fd survives bubblewrap');
    assert.ok(!result.stdout.includes(` -> ${dir.dir}\n`), 'not even the workspace');
  });
});

describe('no fd the daemon holds reaches a sandbox', () => {
  const API_KEY = 'brig_fds_key';
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let fd: number;
  let secret: string;
  const opts = (): SandboxOpts => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  before(async () => {
    state = tempWorkspace('brig-fds-state-');
    secret = `${state.dir}/../brig-fd-daemon-secret-${process.pid}`;
    writeFileSync(secret, 'HOST-FD-SECRET\n');
    fd = openSync(secret, 'r');
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, extraFds: leaky(fd).slice(3) as Array<number | 'ignore'> });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon.stop();
    closeSync(fd);
    rmSync(secret, { force: true });
    state.remove();
  });

  test('envd and its commands hold no fd of the daemon: not its file, not its launcher pipe', async () => {
    const sandbox = await Sandbox.create(opts());
    try {
      const result = await sandbox.commands.run(PROBE);
      assert.doesNotMatch(result.stdout, /HOST-FD-SECRET/);
      assert.ok(!result.stdout.includes('brig-fd-daemon-secret'), `no process in the sandbox holds the file:\n${result.stdout}`);
      assert.match(result.stdout, ONLY_STDIO);
      assert.doesNotMatch(result.stdout, BIND_SOURCE, 'no bind source fd survives bubblewrap');
    } finally {
      await sandbox.kill();
    }
  });
});
