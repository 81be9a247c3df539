import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { HOST_ID_FIRST, pickHostId, usedHostIds, type HostAccounts } from '../../src/daemon/sandboxes/host-ids.ts';
import { openSqliteStore } from '../../src/daemon/store/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_test_key';

const accounts = (given: Partial<HostAccounts>): HostAccounts => ({ passwd: '', group: '', subuid: '', subgid: '', ...given });

describe('sandbox host ids: allocated, never a host account\'s', () => {
  test('ids of host users and groups, and /etc/subuid and /etc/subgid ranges, are skipped', () => {
    const used = usedHostIds(
      accounts({
        passwd: `root:x:0:0:root:/root:/bin/bash\nsvc:x:${HOST_ID_FIRST}:${HOST_ID_FIRST}::/:/usr/sbin/nologin\n`,
        group: `grp:x:${HOST_ID_FIRST + 1}:\n`,
        subuid: `# comment\nalice:${HOST_ID_FIRST + 2}:3\n`,
        subgid: `1000:${HOST_ID_FIRST + 5}:65536\n`,
      }),
    );
    assert.equal(pickHostId(new Set(), used), HOST_ID_FIRST + 5 + 65536);
    assert.equal(pickHostId(new Set(), usedHostIds(accounts({ subuid: `alice:${HOST_ID_FIRST + 2}:3\n` }))), HOST_ID_FIRST);
    assert.equal(pickHostId(new Set([HOST_ID_FIRST, HOST_ID_FIRST + 1]), usedHostIds(accounts({ subuid: `alice:${HOST_ID_FIRST + 2}:3\n` }))), HOST_ID_FIRST + 5);
  });

  test('a full range is BRIG_NO_HOST_ID, not a shared id', () => {
    assert.throws(
      () => pickHostId(new Set([10, 11]), usedHostIds(accounts({ subgid: 'x:12:4\n' })), 10, 6),
      (error) => isBrigError(error) && error.code === 'BRIG_NO_HOST_ID' && /10-15/.test(error.message),
    );
  });

  test('100 sandboxes recorded in the store get 100 distinct ids; a removed sandbox\'s id is free again', () => {
    const store = openSqliteStore(':memory:');
    try {
      const used = usedHostIds(accounts({ subuid: `alice:${HOST_ID_FIRST + 50}:10\n` }));
      const ids = Array.from({ length: 100 }, (_, index) => store.claimHostId(`s${index}`, (taken) => pickHostId(taken, used)));
      assert.equal(new Set(ids).size, 100);
      assert.ok(ids.every((id) => id < HOST_ID_FIRST + 50 || id >= HOST_ID_FIRST + 60), 'the subuid range is skipped');
      assert.equal(store.claimHostId('s7', () => assert.fail('already recorded')), ids[7]);
      assert.equal(store.hostId('s7'), ids[7]);
      store.remove('s7');
      assert.equal(store.hostId('s7'), null);
      assert.equal(store.claimHostId('new', (taken) => pickHostId(taken, used)), ids[7]);
    } finally {
      store.close();
    }
  });

  test('two sandboxes of a root daemon run as distinct recorded host uids, neither a host account\'s', { skip: process.getuid?.() !== 0 ? 'only a root daemon gives sandboxes host uids of their own' : false }, async () => {
    const state = tempWorkspace('brig-serve-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    const opts = { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
    try {
      const sandboxes = await Promise.all([Sandbox.create(opts), Sandbox.create(opts)]);
      const store = openSqliteStore(`${state.dir}/brig.db`);
      const recorded = sandboxes.map((sandbox) => store.hostId(sandbox.sandboxId));
      store.close();
      assert.ok(recorded.every((id) => typeof id === 'number'), `recorded: ${recorded.join(', ')}`);
      assert.notEqual(recorded[0], recorded[1]);
      const hostUids = readFileSync('/etc/passwd', 'utf8').split('\n').map((line) => Number(line.split(':')[2]));
      for (const [index, sandbox] of sandboxes.entries()) {
        const uid: number | null | undefined = recorded[index];
        assert.equal(statSync(`${state.dir}/sandboxes/${sandbox.sandboxId}/workspace`).uid, uid, 'the workspace belongs to the recorded id');
        assert.ok(!hostUids.includes(uid ?? -1), `${uid} is no host user's`);
        // The jail's processes run as it too, seen from the host.
        const touched = await sandbox.commands.run('touch /home/user/mine && echo done');
        assert.equal(touched.stdout, 'done\n');
        assert.equal(statSync(`${state.dir}/sandboxes/${sandbox.sandboxId}/workspace/mine`).uid, uid);
      }
      await Promise.all(sandboxes.map((sandbox) => sandbox.kill()));
    } finally {
      await daemon.stop();
      state.remove();
    }
  });
});
