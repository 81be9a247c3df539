import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { SandboxRecord } from '../../src/daemon/sandboxes/types.ts';
import { openSqliteStore, type Store } from '../../src/daemon/store/index.ts';
import { buildPolicy, hostNetwork, memory, named, readOnly, setEnv } from '../../src/policy/index.ts';
import { BrigError } from '../../src/protocol/index.ts';
import Database from 'better-sqlite3';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');

function record(id: string, overrides: Partial<SandboxRecord> = {}): SandboxRecord {
  const startedAt = new Date(T0 + Number.parseInt(id.replace(/\D/g, '') || '0', 10) * 1000).toISOString();
  return {
    id,
    name: null,
    templateId: 'base',
    metadata: {},
    envVars: {},
    policy: buildPolicy(),
    state: 'running',
    startedAt,
    endAt: new Date(Date.parse(startedAt) + 300_000).toISOString(),
    keepWorkspace: false,
    envdAccessToken: `token-${id}`,
    workspace: `/var/lib/brig/workspaces/${id}`,
    handle: null,
    ...overrides,
  };
}

function full(id: string): SandboxRecord {
  return record(id, {
    name: 'builder',
    templateId: 'claude',
    metadata: { team: 'infra', 'a.b': 'dotted', 'say "hi"': "it's" },
    envVars: { NODE_ENV: 'test', EMPTY: '' },
    policy: buildPolicy(named('claude', 'Claude Code'), memory(2048), setEnv('A', 'b'), readOnly('/opt'), hostNetwork()),
    keepWorkspace: true,
    handle: {
      id,
      driver: 'jail',
      endpoint: { socketPath: `/run/brig/${id}/envd.sock` },
      pid: 4242,
      pidStart: '123456789',
      detail: { cgroup: `/sys/fs/cgroup/brig/${id}`, mounts: ['/tmp/a', '/tmp/b'], nested: { ok: true, n: null } },
      stateDir: `/run/brig/${id}`,
    },
    ports: { agent: { host: '127.0.0.1', port: 4100 }, monitor: { host: '::1', port: 4101 } },
  });
}

function code(expected: string) {
  return (error: unknown) => error instanceof BrigError && error.code === expected;
}

/** Every page of a query, following cursors; `between` runs after each page. */
function pages(store: Store, query: Omit<Parameters<Store['list']>[0], 'after'>, between = () => {}): string[][] {
  const seen: string[][] = [];
  let after: string | undefined;
  for (;;) {
    const page = store.list({ ...query, ...(after === undefined ? {} : { after }) });
    seen.push(page.items.map((r) => r.id));
    between();
    if (page.next === null) return seen;
    after = page.next;
  }
}

describe('sqlite store', () => {
  it('gives a full record back deep-equal, JSON fields parsed', () => {
    const store = openSqliteStore(':memory:');
    const rec = full('s1');
    store.insert(rec);
    assert.deepStrictEqual(store.get('s1'), rec);
    assert.deepStrictEqual(store.all(), [rec]);
    assert.equal(store.get('nope'), null);
    store.close();
  });

  it('updates only the fields given', () => {
    const store = openSqliteStore(':memory:');
    const rec = full('s1');
    store.insert(rec);
    const endAt = '2025-01-01T01:00:00.000Z';
    store.update('s1', { state: 'stopped', endAt, handle: null, metadata: { team: 'web' } });
    assert.deepStrictEqual(store.get('s1'), { ...rec, state: 'stopped', endAt, handle: null, metadata: { team: 'web' } });
    store.update('s1', { name: null, keepWorkspace: false, endAt: undefined });
    assert.deepStrictEqual(store.get('s1'), { ...rec, state: 'stopped', endAt, handle: null, metadata: { team: 'web' }, name: null, keepWorkspace: false });
    assert.throws(() => store.update('nope', { state: 'stopped' }), code('BRIG_SANDBOX_NOT_FOUND'));
    store.update('s1', { endReason: 'the VM hung' });
    assert.equal(store.get('s1')?.endReason, 'the VM hung');
    store.close();
  });

  it('finds by name only among sandboxes not stopped, where names are unique', () => {
    const store = openSqliteStore(':memory:');
    store.insert(record('s1', { name: 'web', state: 'creating' }));
    assert.equal(store.findByName('web')?.id, 's1');
    assert.equal(store.findByName('other'), null);
    assert.throws(() => store.insert(record('s2', { name: 'web' })), code('BRIG_NAME_TAKEN'));
    store.update('s1', { state: 'stopped' });
    assert.equal(store.findByName('web'), null);
    store.insert(record('s2', { name: 'web' }));
    assert.equal(store.findByName('web')?.id, 's2');
    assert.throws(() => store.update('s1', { state: 'running' }), code('BRIG_NAME_TAKEN'));
    assert.equal(store.get('s1')?.state, 'stopped', 'a refused update changes nothing');
    store.close();
  });

  it('removes', () => {
    const store = openSqliteStore(':memory:');
    store.insert(record('s1'));
    store.remove('s1');
    store.remove('s1');
    assert.equal(store.get('s1'), null);
    store.close();
  });

  it('lists oldest first, filtered by every metadata pair and by state', () => {
    const store = openSqliteStore(':memory:');
    store.insert(record('s3', { metadata: { team: 'infra', env: 'prod' } }));
    store.insert(record('s1', { metadata: { team: 'infra', env: 'dev', 'a.b': 'x', 'q"k': "v'" } }));
    store.insert(record('s2', { metadata: { team: 'web' }, state: 'stopped' }));
    store.insert(record('s4', { metadata: { 'a.b': 'x', a: '{"b":"x"}' }, state: 'creating' }));
    const ids = (query: Omit<Parameters<Store['list']>[0], 'limit'>) => store.list({ limit: 100, ...query }).items.map((r) => r.id);
    assert.deepStrictEqual(ids({}), ['s1', 's2', 's3', 's4']);
    assert.deepStrictEqual(ids({ metadata: { team: 'infra' } }), ['s1', 's3']);
    assert.deepStrictEqual(ids({ metadata: { team: 'infra', env: 'prod' } }), ['s3']);
    assert.deepStrictEqual(ids({ metadata: { team: 'infra', env: 'qa' } }), []);
    // Keys are data: a dot is not a path step and a quote does not end the key.
    assert.deepStrictEqual(ids({ metadata: { 'a.b': 'x' } }), ['s1', 's4']);
    assert.deepStrictEqual(ids({ metadata: { 'q"k': "v'" } }), ['s1']);
    assert.deepStrictEqual(ids({ metadata: { a: 'x' } }), []);
    assert.deepStrictEqual(ids({ metadata: { "') OR 1=1 --": 'x' } }), []);
    assert.deepStrictEqual(ids({ states: ['running'] }), ['s1', 's3']);
    assert.deepStrictEqual(ids({ states: ['creating', 'stopped'] }), ['s2', 's4']);
    assert.deepStrictEqual(ids({ states: ['running'], metadata: { 'a.b': 'x' } }), ['s1']);
    store.close();
  });

  it('orders by the instant, whatever the offset the time was written with, then by id', () => {
    const store = openSqliteStore(':memory:');
    store.insert(record('b', { startedAt: '2025-01-01T01:00:00+02:00' })); // 23:00Z the day before
    store.insert(record('a', { startedAt: '2025-01-01T00:00:00Z' }));
    store.insert(record('c', { startedAt: '2025-01-01T00:00:00.000Z' }));
    assert.deepStrictEqual(store.list({ limit: 10 }).items.map((r) => r.id), ['b', 'a', 'c']);
    assert.equal(store.get('b')?.startedAt, '2025-01-01T01:00:00+02:00', 'stored as written');
    store.close();
  });

  it('pages by cursor without duplicates or gaps, stable while records are inserted', () => {
    const store = openSqliteStore(':memory:');
    // Same startedAt for some, so the id breaks ties across a page boundary.
    for (let i = 10; i < 27; i++) store.insert(record(`s${i}`, i % 3 === 0 ? { startedAt: new Date(T0).toISOString() } : {}));
    const before = store.all().map((r) => r.id);
    const seen = pages(store, { limit: 4 });
    assert.deepStrictEqual(seen.map((p) => p.length), [4, 4, 4, 4, 1]);
    assert.deepStrictEqual(seen.flat(), before);
    assert.equal(store.list({ limit: 17 }).next, null, 'no empty last page');

    let n = 100;
    const during = pages(store, { limit: 5 }, () => {
      // One older than everything (behind the cursor) and one newer (ahead of it) per page.
      store.insert(record(`old${n}`, { startedAt: '2000-01-01T00:00:00.000Z' }));
      store.insert(record(`s${n++}`));
    }).flat();
    assert.equal(new Set(during).size, during.length, 'no duplicates');
    assert.deepStrictEqual(during.filter((id) => before.includes(id)), before, 'no gaps');
    assert.ok(!during.some((id) => id.startsWith('old')), 'rows behind the cursor stay behind');
    assert.ok(during.includes('s100'), 'rows ahead of the cursor appear');
    store.close();
  });

  it('refuses a malformed cursor and a bad limit', () => {
    const store = openSqliteStore(':memory:');
    store.insert(record('s1'));
    const valid = store.list({ limit: 1 }).next;
    assert.equal(valid, null);
    for (const after of ['', 'not a cursor!', '****', Buffer.from('abc').toString('base64url'), Buffer.from('12|').toString('base64url'), Buffer.from('x|s1').toString('base64url')]) {
      assert.throws(() => store.list({ limit: 10, after }), code('BRIG_BAD_REQUEST'), after);
    }
    for (const limit of [0, -1, 1.5, Number.NaN]) assert.throws(() => store.list({ limit }), code('BRIG_BAD_REQUEST'));
    store.close();
  });

  describe('on a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brig-store-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('creates the file 0600 in a new 0700 directory, and keeps records across reopening', () => {
      const file = join(dir, 'state', 'brig.db');
      const store = openSqliteStore(file);
      store.insert(full('s1'));
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(`${file}-wal`).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'state')).mode & 0o777, 0o700);
      store.close();
      const again = openSqliteStore(file);
      assert.deepStrictEqual(again.get('s1'), full('s1'));
      again.close();
    });

    it('migrates a file of an older schema in place: its records stay, the new column works', () => {
      const file = join(dir, 'old.db');
      openSqliteStore(file).close();
      const old = new Database(file);
      old.exec('ALTER TABLE sandboxes DROP COLUMN ports; ALTER TABLE sandboxes DROP COLUMN end_reason; DROP TABLE jobs; DROP TABLE events');
      old.pragma('user_version = 3');
      old.prepare(`INSERT INTO sandboxes VALUES ('s9', NULL, 'base', '{}', '{}', ?, 'stopped', '2025-01-01T00:00:00.000Z', ${T0}, '2025-01-01T00:05:00.000Z', 0, 't', '/w', NULL)`).run(JSON.stringify(buildPolicy()));
      old.close();
      const store = openSqliteStore(file);
      assert.equal(store.get('s9')?.state, 'stopped');
      assert.equal(store.get('s9')?.endReason, undefined);
      store.update('s9', { endReason: 'it ended by itself' });
      assert.equal(store.get('s9')?.endReason, 'it ended by itself');
      store.close();
    });

    it('migrates a file from before published ports: its policies get network.publish, the ports column works', () => {
      const file = join(dir, 'before-ports.db');
      openSqliteStore(file).close();
      const old = new Database(file);
      old.exec('ALTER TABLE sandboxes DROP COLUMN ports');
      old.pragma('user_version = 6');
      const { publish: _publish, ...network } = buildPolicy().network;
      old.prepare(`INSERT INTO sandboxes VALUES ('s8', NULL, 'base', '{}', '{}', ?, 'running', '2025-01-01T00:00:00.000Z', ${T0}, '2025-01-01T00:05:00.000Z', 0, 't', '/w', NULL, NULL)`).run(JSON.stringify({ ...buildPolicy(), network }));
      old.close();
      const store = openSqliteStore(file);
      assert.equal(store.get('s8')?.policy.network.publish, 'loopback');
      assert.equal(store.get('s8')?.ports, undefined);
      store.update('s8', { ports: { agent: { host: '127.0.0.1', port: 4000 } } });
      assert.deepEqual(store.get('s8')?.ports, { agent: { host: '127.0.0.1', port: 4000 } });
      store.close();
    });

    it('lets a second store on the same file see the first one\'s writes', () => {
      const file = join(dir, 'shared.db');
      const one = openSqliteStore(file);
      const two = openSqliteStore(file);
      one.insert(full('s1'));
      assert.deepStrictEqual(two.get('s1'), full('s1'));
      two.update('s1', { state: 'stopped' });
      assert.equal(one.get('s1')?.state, 'stopped');
      two.remove('s1');
      assert.deepStrictEqual(one.all(), []);
      one.close();
      two.close();
    });
  });
});
