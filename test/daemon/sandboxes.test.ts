import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Sandbox } from 'e2b';
import { driverFor } from '../../src/drivers/index.ts';
import { createSandboxManager } from '../../src/daemon/sandboxes/manager.ts';
import { openSqliteStore } from '../../src/daemon/store/index.ts';
import type { SandboxManager, SandboxRecord } from '../../src/daemon/sandboxes/types.ts';
import { ENVD, REPO, tcpToUnix } from '../helpers/envd.ts';
import { eventually, tempWorkspace } from '../helpers/brig.ts';

const jailDriver = driverFor('jail');

// The manager with the real store and the real jail driver: sandboxes are real jails with envd inside.
function managerOn(stateDir: string, poolSize = 0): Promise<SandboxManager> {
  return createSandboxManager({ stateDir, store: openSqliteStore(`${stateDir}/brig.db`), tier: 'jail', envdBundle: ENVD, poolSize, egress: { gateway: null, nodeDir: `${REPO}/dist/inside` } });
}

function sandboxDirs(stateDir: string): string[] {
  return readdirSync(`${stateDir}/sandboxes`);
}

async function sdkFor(manager: SandboxManager, record: SandboxRecord) {
  const gateway = await tcpToUnix(manager.endpoint(record.id).socketPath);
  const Constructor = Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox;
  const sandbox = new Constructor({ sandboxId: record.id, envdVersion: '0.6.3', envdAccessToken: record.envdAccessToken, sandboxUrl: gateway.url, debug: true, apiKey: 'k' });
  return { sandbox, close: () => gateway.server.close() };
}

function leftCgroups(record: SandboxRecord): string[] {
  return ((record.handle?.detail as { cgroup?: { dirs: string[] } } | undefined)?.cgroup?.dirs ?? []).filter((dir) => existsSync(dir));
}

describe('sandbox manager: lifecycle with real jails', () => {
  let state: { dir: string; remove: () => void };
  let manager: SandboxManager;

  before(async () => {
    state = tempWorkspace('brig-daemon-');
    manager = await managerOn(state.dir);
  });
  after(async () => {
    for (const record of manager.list({ limit: 100 }).items) if (record.state !== 'stopped') await manager.kill(record.id).catch(() => {});
    await manager.close();
    state.remove();
  });

  test('create boots a sandbox laid out as E2B code expects, as a host uid of its own', async () => {
    const record = await manager.create({ metadata: { team: 'a' }, envVars: { GREETING: 'hello' } });
    assert.equal(record.state, 'running');
    assert.match(record.id, /^[a-z0-9]+$/);
    const { sandbox, close } = await sdkFor(manager, record);
    try {
      const result = await sandbox.commands.run('pwd; id -un; echo "$HOME $GREETING"; echo data > made.txt');
      assert.deepEqual(result.stdout.trim().split('\n'), ['/home/user', 'user', '/home/user hello']);
      const made = statSync(`${record.workspace}/made.txt`);
      if (process.getuid?.() === 0) assert.ok(made.uid >= 200_000, `files belong to the sandbox's own host uid, not ${made.uid}`);
      assert.equal(await sandbox.files.read('/home/user/made.txt'), 'data\n');
    } finally {
      close();
    }
    const stats = await manager.stats(record.id);
    assert.ok(stats.memoryBytes > 0 && stats.pids > 0 && stats.diskBytes > 0 && stats.cpuUsec > 0, JSON.stringify(stats));
    await manager.kill(record.id);
    assert.equal(existsSync(record.workspace), false, 'the workspace goes with it');
    assert.deepEqual(leftCgroups(record), []);
    assert.throws(() => manager.get(record.id), { code: 'BRIG_SANDBOX_NOT_FOUND' });
  });

  test("envd's environment, descriptors and memory are closed to the sandbox's processes, which run as its uid", async () => {
    const record = await manager.create({});
    const { sandbox, close } = await sdkFor(manager, record);
    try {
      // envd's own process (not bubblewrap's pid 1, whose argv names it, nor this shell).
      const probe = 'for p in /proc/[0-9]*; do [ $p = /proc/$$ ] && continue; [ "$(cat $p/comm)" = bwrap ] && continue; grep -q envd.cjs $p/cmdline 2>/dev/null || continue; echo envd; cat $p/environ >/dev/null 2>&1 && echo environ-read; ls $p/fd >/dev/null 2>&1 && echo fd-listed; head -c1 $p/mem >/dev/null 2>&1 && echo mem-read; done; true';
      const result = await sandbox.commands.run(probe);
      assert.equal(result.stdout.trim(), 'envd');
    } finally {
      close();
      await manager.kill(record.id);
    }
  });

  test('names are unique among running sandboxes, and work in place of ids', async () => {
    const record = await manager.create({ name: 'alpha' });
    assert.equal(manager.get('alpha').id, record.id);
    await assert.rejects(manager.create({ name: 'alpha' }), { code: 'BRIG_NAME_TAKEN' });
    await manager.kill('alpha');
  });

  test('the timeout kills the sandbox; setTimeout moves it', async () => {
    const record = await manager.create({ timeoutMs: 200 });
    manager.setTimeout(record.id, 60_000);
    assert.ok(Date.parse(manager.get(record.id).endAt) - Date.now() > 30_000);
    manager.setTimeout(record.id, 50);
    assert.ok(await eventually(() => manager.list({ limit: 100 }).items.every((item) => item.id !== record.id)), 'gone after its timeout');
    assert.ok(await eventually(() => leftCgroups(record).length === 0 && !existsSync(record.workspace)));
  });

  test('keepWorkspace keeps the files after the kill', async () => {
    const record = await manager.create({ keepWorkspace: true });
    await manager.kill(record.id);
    assert.equal(existsSync(record.workspace), true);
    assert.throws(() => manager.get(record.id), { code: 'BRIG_SANDBOX_NOT_FOUND' });
  });

  test('stop keeps the workspace, remove deletes it on request, prune clears old stopped ones', async () => {
    const kept = await manager.create({ name: 'kept' });
    await manager.kill('kept', { removeWorkspace: false });
    assert.equal(manager.listAll().find((record) => record.id === kept.id)?.state, 'stopped');
    assert.equal(existsSync(kept.workspace), true);
    await manager.remove('kept', { data: true });
    assert.equal(existsSync(kept.workspace), false);
    assert.equal(manager.listAll().some((record) => record.id === kept.id), false);

    const old = await manager.create({});
    await manager.kill(old.id, { removeWorkspace: false });
    assert.deepEqual(await manager.prune(60_000), [], 'not old enough');
    assert.ok((await manager.prune(0)).includes(old.id));
    assert.equal(existsSync(old.workspace), false);
    await assert.rejects(manager.remove('never-was', { data: false }), { code: 'BRIG_SANDBOX_NOT_FOUND' });
  });

  test('a sandbox whose jail dies by itself is stopped, not left listed as running; its workspace stays until rm', async () => {
    const record = await manager.create({ name: 'doomed' });
    if (record.handle) process.kill(record.handle.pid, 'SIGKILL');
    assert.ok(await eventually(() => !(record.handle && (jailDriver.liveness(record.handle) === 'alive'))));
    assert.throws(() => manager.get('doomed'), { code: 'BRIG_SANDBOX_NOT_FOUND' });
    assert.ok(await eventually(() => manager.listAll().find((item) => item.id === record.id)?.state === 'stopped' && leftCgroups(record).length === 0), 'its jail cleaned up');
    assert.equal(existsSync(record.workspace), true, 'only kill, rm or its timeout delete a workspace');
    assert.equal(manager.listAll().find((item) => item.id === record.id)?.endReason, "it ended by itself: its tier's processes are gone", 'the record says it died');
    await manager.remove(record.id, { data: true });
    assert.equal(existsSync(record.workspace), false);
  });

  test('a sandbox whose jail died keeps its workspace until its timeout, then goes as a timeout takes it; one stopped on request stays', async () => {
    const dying = await manager.create({ name: 'short-lived', timeoutMs: 8_000 });
    const stopped = await manager.create({ name: 'stopped-on-request', timeoutMs: 8_000 });
    await manager.kill(stopped.id, { removeWorkspace: false });
    if (dying.handle) process.kill(dying.handle.pid, 'SIGKILL');
    assert.ok(await eventually(() => manager.listAll().find((item) => item.id === dying.id)?.state === 'stopped'), 'the sweep found it dead');
    assert.equal(existsSync(dying.workspace), true, 'its files stay while its time runs');
    assert.ok(await eventually(() => !manager.listAll().some((item) => item.id === dying.id), 1_500), 'gone at its timeout');
    assert.equal(existsSync(dying.workspace), false, 'its workspace with it');
    assert.equal(manager.listAll().find((item) => item.id === stopped.id)?.state, 'stopped', 'a sandbox stopped on request is kept');
    assert.equal(manager.listAll().find((item) => item.id === stopped.id)?.endReason, undefined, 'stopped on request: no reason to tell');
    assert.equal(existsSync(stopped.workspace), true);
    await manager.remove(stopped.id, { data: true });
  });

  test('bad requests are refused with codes', async () => {
    await assert.rejects(manager.create({ templateId: 'gpu-xl' }), { code: 'BRIG_BAD_REQUEST' });
    await assert.rejects(manager.create({ policy: { resources: { memoryMiB: 1 } } }), { code: 'BRIG_POLICY_INVALID' });
    assert.throws(() => manager.get('nope'), { code: 'BRIG_SANDBOX_NOT_FOUND' });
  });
});

describe('sandbox manager: a restarted daemon reattaches what runs and cleans up what does not', () => {
  test('reattach after close; stop a sandbox that died meanwhile, keeping its workspace', async () => {
    const state = tempWorkspace('brig-daemon-');
    try {
      const first = await managerOn(state.dir);
      const alive = await first.create({ name: 'survivor' });
      const dead = await first.create({ name: 'casualty' });
      await first.close(); // the daemon goes away; its sandboxes do not
      assert.ok(alive.handle && (jailDriver.liveness(alive.handle) === 'alive'));
      // The casualty's jail dies while no daemon watches.
      if (dead.handle) process.kill(dead.handle.pid, 'SIGKILL');
      assert.ok(await eventually(() => !(dead.handle && (jailDriver.liveness(dead.handle) === 'alive'))));

      const second = await managerOn(state.dir);
      try {
        assert.equal(second.get('survivor').id, alive.id, 'reattached');
        const { sandbox, close } = await sdkFor(second, second.get('survivor'));
        try {
          assert.equal((await sandbox.commands.run('echo still here')).stdout, 'still here\n');
        } finally {
          close();
        }
        assert.throws(() => second.get('casualty'), { code: 'BRIG_SANDBOX_NOT_FOUND' });
        assert.deepEqual(leftCgroups(dead), [], "the dead sandbox's cgroups are cleaned up");
        assert.equal(existsSync(dead.workspace), true, 'its workspace stays: it died, nobody removed it');
        assert.match(second.listAll().find((item) => item.id === dead.id)?.endReason ?? '', /ended by itself/, 'found dead at the restart: it says so');
        await second.remove('casualty', { data: true });
        assert.equal(existsSync(dead.workspace), false);
        await second.kill('survivor');
        assert.deepEqual(leftCgroups(alive), []);
      } finally {
        await second.close();
      }
    } finally {
      state.remove();
    }
  });
});

describe('sandbox manager: the warm pool', () => {
  test('creates take pooled sandboxes, never one twice; the pool refills; a clean shutdown stops it', async () => {
    const state = tempWorkspace('brig-daemon-');
    try {
      const first = await managerOn(state.dir, 2);
      assert.ok(await eventually(() => first.pool().ready === 2), 'two pooled sandboxes boot in the background');
      assert.equal(sandboxDirs(state.dir).length, 2);
      const pooled = sandboxDirs(state.dir);
      assert.deepEqual(first.listAll(), [], 'pooled sandboxes are not listed');
      assert.throws(() => first.get(pooled[0] ?? ''), { code: 'BRIG_SANDBOX_NOT_FOUND' }, 'nor found by id');

      const taken = await Promise.all([first.create({ name: 'w1', metadata: { pool: 'yes' } }), first.create({ name: 'w2' }), first.create({ name: 'w3' })]);
      assert.equal(new Set(taken.map((record) => record.id)).size, 3, 'three distinct sandboxes');
      assert.equal(taken.filter((record) => pooled.includes(record.id)).length, 2, 'two came from the pool, one booted cold');
      assert.equal(first.get('w1').metadata.pool, 'yes');
      const { sandbox, close } = await sdkFor(first, first.get(taken[0]?.id ?? ''));
      try {
        assert.equal((await sandbox.commands.run('id -un; pwd')).stdout, 'user\n/home/user\n');
      } finally {
        close();
      }
      await assert.rejects(first.create({ envVars: { A: '1' }, name: 'custom' }).then(async (record) => {
        assert.equal(pooled.includes(record.id), false, 'a create with envVars boots its own');
        await first.kill(record.id);
        throw new Error('done');
      }), /done/);
      for (const record of taken) await first.kill(record.id);
      assert.ok(await eventually(() => first.pool().ready === 2 && sandboxDirs(state.dir).length === 2), 'the pool refilled');
      await first.close();
      assert.deepEqual(sandboxDirs(state.dir), [], 'a clean shutdown stops the pool (handed-out sandboxes would stay)');

      const second = await managerOn(state.dir, 2);
      assert.ok(await eventually(() => second.pool().ready === 2), 'the next daemon boots its pool again');
      await second.close();
      assert.deepEqual(sandboxDirs(state.dir), []);
    } finally {
      state.remove();
    }
  });
});

describe('sandbox manager: budgets', () => {
  test('a create over the sandbox budget stops a pooled sandbox to make room, then is refused with BRIG_CAPACITY', async () => {
    const state = tempWorkspace('brig-daemon-');
    const manager = await createSandboxManager({ stateDir: state.dir, store: openSqliteStore(`${state.dir}/brig.db`), tier: 'jail', envdBundle: ENVD, poolSize: 2, budgets: { sandboxes: 2 }, egress: { gateway: null, nodeDir: `${REPO}/dist/inside` } });
    try {
      assert.ok(await eventually(() => manager.pool().ready === 2), 'the pool fills the budget');
      // envVars: not poolable, so each boots its own.
      const first = await manager.create({ envVars: { A: '1' } });
      const second = await manager.create({ envVars: { A: '2' } });
      assert.equal(manager.pool().ready, 0, 'the pool gave way');
      await assert.rejects(manager.create({ envVars: { A: '3' } }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'BRIG_CAPACITY');
        assert.match(error.message, /budget of sandboxes is full: its sandboxes commit 2 of 2/);
        return true;
      });
      assert.equal(sandboxDirs(state.dir).length, 2, 'nothing was booted for the refused create');
      await manager.kill(first.id);
      await manager.kill(second.id);
    } finally {
      await manager.close();
      state.remove();
    }
  });
});

describe('sandbox manager: a liveness check that fails is not a death', () => {
  test('a handle whose start time was not read at boot (the daemon out of descriptors then) does not get a live sandbox killed at the next restart', async () => {
    const state = tempWorkspace('brig-daemon-');
    try {
      const first = await managerOn(state.dir);
      const record = await first.create({ name: 'unread' });
      writeFileSync(`${record.workspace}/work.txt`, 'hours of work\n');
      await first.close();
      // What a boot under EMFILE recorded before: no start time, so the pid never matched again.
      const store = openSqliteStore(`${state.dir}/brig.db`);
      assert.ok(record.handle);
      store.update(record.id, { handle: { ...record.handle, pidStart: '' } });
      store.close();
      const second = await managerOn(state.dir);
      try {
        assert.equal(second.get('unread').id, record.id, 'reattached: its cgroup still holds its processes');
        assert.equal(jailDriver.liveness(record.handle), 'alive');
        assert.equal(readFileSync(`${record.workspace}/work.txt`, 'utf8'), 'hours of work\n');
        await second.kill('unread');
      } finally {
        await second.close();
      }
    } finally {
      state.remove();
    }
  });

  test('a daemon restarted while the host is out of descriptors keeps a live sandbox and its workspace (and so does its sweep)', async () => {
    const state = tempWorkspace('brig-daemon-');
    const filler: number[] = [];
    const release = (): void => {
      for (const fd of filler.splice(0)) closeSync(fd);
    };
    try {
      const first = await managerOn(state.dir);
      const record = await first.create({ name: 'busy' });
      writeFileSync(`${record.workspace}/work.txt`, 'hours of work\n');
      await first.close();
      const store = openSqliteStore(`${state.dir}/brig.db`);
      // Every descriptor taken, as a flood of connections would: reading /proc/<pid>/stat now fails with EMFILE.
      const exhaust = (): void => {
        for (;;) {
          try {
            filler.push(openSync('/dev/null', 'r'));
          } catch {
            return;
          }
        }
      };
      exhaust();
      const second = await createSandboxManager({ stateDir: state.dir, store, tier: 'jail', envdBundle: ENVD, egress: { gateway: null, nodeDir: `${REPO}/dist/inside` } });
      try {
        // Longer than one sweep of sandboxes that died by themselves.
        await new Promise((resolve) => setTimeout(resolve, 6000));
        // Whatever was closed meanwhile is taken too.
        exhaust();
        const checked = record.handle && jailDriver.liveness(record.handle);
        release();
        assert.equal(checked, 'unknown', 'a check that cannot read /proc says so');
        assert.equal(record.handle && jailDriver.liveness(record.handle), 'alive', 'the jail was not killed');
        assert.equal(readFileSync(`${record.workspace}/work.txt`, 'utf8'), 'hours of work\n', 'its workspace is intact');
        assert.equal(second.get('busy').id, record.id, 'and it is still served');
        const { sandbox, close } = await sdkFor(second, second.get('busy'));
        try {
          assert.equal((await sandbox.commands.run('cat work.txt')).stdout, 'hours of work\n');
        } finally {
          close();
        }
        await second.kill('busy');
      } finally {
        release();
        await second.close();
      }
    } finally {
      release();
      state.remove();
    }
  });
});
