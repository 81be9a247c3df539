import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { eventually, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_test_key';

/** `brig serve` with this suite's key and no warm pool. */
const serve = (stateDir: string) => serveDaemon(stateDir, { apiKey: API_KEY });

/** The e2b SDK pointed at brig: control plane and envd gateway on the daemon's one address. */
function opts(daemon: RunningDaemon, extra: Partial<SandboxOpts> = {}): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, ...extra } as SandboxOpts;
}

function jailCgroups(): string[] {
  const found: string[] = [];
  for (const hierarchy of ['pids', 'cpu']) {
    try {
      found.push(...readdirSync(`/sys/fs/cgroup/${hierarchy}`).filter((name) => /^brig-i[0-9a-f]{20}$/.test(name)));
    } catch {
      // Not a v1 host.
    }
  }
  return found;
}

describe('brig serve: the e2b SDK end to end', () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  before(async () => {
    state = tempWorkspace('brig-serve-');
    daemon = await serve(state.dir);
  });
  after(async () => {
    for (const info of await Sandbox.list(opts(daemon)).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts(daemon)).catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test('create, run, files, list, timeout, kill', async () => {
    const sandbox = await Sandbox.create(opts(daemon, { metadata: { suite: 'e2e' }, timeoutMs: 120_000 }));
    const result = await sandbox.commands.run('echo "$(id -un) in $(pwd)"; echo oops >&2; exit 3').catch((error: { exitCode?: number; stdout?: string; stderr?: string }) => error);
    assert.equal((result as { exitCode?: number }).exitCode, 3);
    assert.equal((result as { stdout?: string }).stdout, 'user in /home/user\n');
    await sandbox.files.write('/home/user/notes.txt', 'kept in the sandbox');
    assert.equal(await sandbox.files.read('notes.txt'), 'kept in the sandbox');
    const listed = await Sandbox.list(opts(daemon, { query: { metadata: { suite: 'e2e' } } } as Partial<SandboxOpts>)).nextItems();
    assert.ok(listed.some((info) => info.sandboxId === sandbox.sandboxId));
    await sandbox.setTimeout(300_000);
    const info = await sandbox.getInfo();
    assert.ok(Date.parse(String(info.endAt)) - Date.now() > 200_000);
    assert.equal(await sandbox.kill().then(() => true), true);
    await assert.rejects(Sandbox.connect(sandbox.sandboxId, opts(daemon)));
  });

  test('20 sandboxes created and used at once', async () => {
    const sandboxes = await Promise.all(Array.from({ length: 20 }, (_, index) => Sandbox.create(opts(daemon, { metadata: { batch: String(index) } }))));
    try {
      const outputs = await Promise.all(sandboxes.map((sandbox, index) => sandbox.commands.run(`echo ${index}; hostname`)));
      outputs.forEach((output, index) => assert.equal(output.stdout, `${index}\nbrig\n`));
      assert.equal(new Set(sandboxes.map((sandbox) => sandbox.sandboxId)).size, 20);
    } finally {
      await Promise.all(sandboxes.map((sandbox) => sandbox.kill()));
    }
  });
});

describe('brig serve: kill -9 of the daemon mid-command, then restart', () => {
  test('live sandboxes are reattached with their processes; nothing leaks once they are killed', async () => {
    const state = tempWorkspace('brig-serve-');
    let daemon = await serve(state.dir);
    try {
      const sandbox = await Sandbox.create(opts(daemon));
      const background = await sandbox.commands.run('sleep 1000', { background: true });
      const streaming = sandbox.commands.run('for i in $(seq 1 100); do echo $i; sleep 0.05; done', { background: true });
      await streaming;
      await daemon.stop('SIGKILL');

      daemon = await serve(state.dir);
      const again = await Sandbox.connect(sandbox.sandboxId, opts(daemon));
      const processes = await again.commands.list();
      assert.ok(processes.some((process) => process.pid === background.pid), 'the background command survived the daemon');
      assert.equal((await again.commands.run('echo alive')).stdout, 'alive\n');
      await again.kill();
      // Only this sandbox's: other tests on the host run jails of their own.
      assert.ok(await eventually(() => !jailCgroups().includes(`brig-${sandbox.sandboxId}`)), 'no cgroup left');
      assert.deepEqual(readdirSync(`${state.dir}/sandboxes`), [], 'no sandbox directory left');
      assert.equal(existsSync(`${state.dir}/brig.db`), true);
    } finally {
      await daemon.stop();
      state.remove();
    }
  });
});
