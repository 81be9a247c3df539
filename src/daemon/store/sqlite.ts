import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { BrigError } from '../../protocol/index.ts';
import type { Spent, Violation } from '../../egress/index.ts';
import type { ListQuery, Page, SandboxRecord, SandboxState, Store } from '../sandboxes/index.ts';
import type { JobStore } from '../jobs/index.ts';
import { JOBS_SCHEMA, sqliteJobStore } from './jobs-sqlite.ts';
import type { EventStore } from '../timeline/index.ts';
import { EVENTS_SCHEMA, sqliteEventStore } from './events-sqlite.ts';

/**
 * The default store: one SQLite file, one row per sandbox. JSON fields are
 * stored as text and come back parsed, so a record reads back deep-equal to
 * what was written.
 */

/**
 * Step i takes a file from schema version i to i + 1 (PRAGMA user_version),
 * so a newer brig migrates an older file in place. Append; never edit a step.
 */
const MIGRATIONS: ReadonlyArray<(db: Database.Database) => void> = [
  (db) => db.exec(`
    CREATE TABLE sandboxes (
      id                TEXT PRIMARY KEY,
      name              TEXT,
      template_id       TEXT NOT NULL,
      metadata          TEXT NOT NULL,  -- JSON object of strings
      env_vars          TEXT NOT NULL,  -- JSON object of strings
      policy            TEXT NOT NULL,  -- JSON Policy
      state             TEXT NOT NULL CHECK (state IN ('pooled', 'creating', 'running', 'stopped')),
      started_at        TEXT NOT NULL,  -- RFC 3339, exactly as given
      started_ms        INTEGER NOT NULL, -- the same instant: RFC 3339 text with offsets does not sort
      end_at            TEXT NOT NULL,
      keep_workspace    INTEGER NOT NULL CHECK (keep_workspace IN (0, 1)),
      envd_access_token TEXT NOT NULL,
      workspace         TEXT NOT NULL,
      handle            TEXT            -- JSON SandboxHandle; NULL until booted
    ) STRICT;
    -- list: ordered by (started_ms, id) and seeks to a cursor.
    CREATE INDEX sandboxes_by_start ON sandboxes (started_ms, id);
    -- findByName; and a name is unique among sandboxes not stopped, even across daemons sharing the file.
    CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (name) WHERE state <> 'stopped';
  `),
  (db) => db.exec(`
    -- Refused accesses, kept as long as their sandbox's record.
    CREATE TABLE violations (
      seq     INTEGER PRIMARY KEY,
      sandbox TEXT NOT NULL,
      time    TEXT NOT NULL,
      kind    TEXT NOT NULL,
      target  TEXT NOT NULL,
      rule    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX violations_by_sandbox ON violations (sandbox, seq);
    -- What each sandbox spent through the LLM gateway: its budget holds across daemon restarts.
    CREATE TABLE llm_spent (
      sandbox       TEXT PRIMARY KEY,
      requests      INTEGER NOT NULL,
      input_tokens  INTEGER NOT NULL,
      output_tokens INTEGER NOT NULL
    ) STRICT;
  `),
  (db) => db.exec(`
    -- The host uid (and gid) each sandbox's files belong to when the daemon runs as root: one sandbox per id.
    CREATE TABLE host_ids (
      id      INTEGER PRIMARY KEY,
      sandbox TEXT NOT NULL UNIQUE
    ) STRICT;
  `),
  (db) => db.exec(`
    -- Why a sandbox stopped by itself (SandboxRecord.endReason); NULL while it runs or when it was stopped on purpose.
    ALTER TABLE sandboxes ADD COLUMN end_reason TEXT;
  `),
  // The job queue (jobs-sqlite.ts).
  (db) => db.exec(JOBS_SCHEMA),
  // The daemon's events (events-sqlite.ts).
  (db) => db.exec(EVENTS_SCHEMA),
  (db) => db.exec(`
    -- A sandbox's published ports (SandboxRecord.ports: JSON {agent?, monitor?: {host, port}}); NULL when none.
    ALTER TABLE sandboxes ADD COLUMN ports TEXT;
    -- Policies kept before network.publish existed get its default, so a merge into them (live network rules) still validates.
    UPDATE sandboxes SET policy = json_set(policy, '$.network.publish', 'loopback') WHERE json_extract(policy, '$.network.publish') IS NULL;
  `),
];

interface Row {
  id: string;
  name: string | null;
  template_id: string;
  metadata: string;
  env_vars: string;
  policy: string;
  state: SandboxState;
  started_at: string;
  started_ms: number;
  end_at: string;
  keep_workspace: number;
  envd_access_token: string;
  workspace: string;
  handle: string | null;
  end_reason: string | null;
  ports: string | null;
}

interface ListParams {
  afterMs: number;
  afterId: string;
  states: string | null;
  metadata: string | null;
  limit: number;
}

/** Per sandbox: the newest violations kept (older ones are trimmed now and then). */
const VIOLATIONS_KEPT = 10_000;

const CURSOR_HINT = 'Pass back exactly the cursor a previous page returned, or none for the first page.';

export function openSqliteStore(file: string): Store & JobStore & EventStore {
  const inMemory = file === ':memory:' || file === '';
  if (!inMemory) prepareFile(file);
  const db = new Database(file, { timeout: 5000 });
  // WAL lets readers (a second daemon, the CLI) run while one writes. NORMAL syncs
  // at checkpoints, not every commit: a power loss may drop the last commits but
  // never corrupts the file, and the daemon reconciles from the driver after a
  // crash (a sandbox whose row was lost is found dead or orphaned and cleaned).
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  migrate(db);

  const insert = db.prepare<Row>(`INSERT INTO sandboxes VALUES (@id, @name, @template_id, @metadata, @env_vars,
    @policy, @state, @started_at, @started_ms, @end_at, @keep_workspace, @envd_access_token, @workspace, @handle, @end_reason, @ports)`);
  const replace = db.prepare<Row>(`UPDATE sandboxes SET name = @name, template_id = @template_id,
    metadata = @metadata, env_vars = @env_vars, policy = @policy, state = @state, started_at = @started_at,
    started_ms = @started_ms, end_at = @end_at, keep_workspace = @keep_workspace,
    envd_access_token = @envd_access_token, workspace = @workspace, handle = @handle, end_reason = @end_reason, ports = @ports WHERE id = @id`);
  const byId = db.prepare<[string], Row>('SELECT * FROM sandboxes WHERE id = ?');
  // `state <> 'stopped'` as written in the partial index, so the planner uses it.
  const byName = db.prepare<[string], Row>(`SELECT * FROM sandboxes WHERE name = ? AND state <> 'stopped'`);
  const everything = db.prepare<[], Row>('SELECT * FROM sandboxes ORDER BY started_ms, id');
  const removeRow = db.prepare<[string]>('DELETE FROM sandboxes WHERE id = ?');
  const removeViolations = db.prepare<[string]>('DELETE FROM violations WHERE sandbox = ?');
  const removeSpent = db.prepare<[string]>('DELETE FROM llm_spent WHERE sandbox = ?');
  const removeHostId = db.prepare<[string]>('DELETE FROM host_ids WHERE sandbox = ?');
  const remove = db.transaction((id: string) => {
    removeRow.run(id);
    removeViolations.run(id);
    removeSpent.run(id);
    removeHostId.run(id);
  });
  const hostIdOf = db.prepare<[string], { id: number }>('SELECT id FROM host_ids WHERE sandbox = ?');
  const takenHostIds = db.prepare<[], { id: number }>('SELECT id FROM host_ids');
  const insertHostId = db.prepare<{ id: number; sandbox: string }>('INSERT INTO host_ids VALUES (@id, @sandbox)');
  // IMMEDIATE: the ids taken are read and the new one written under one write lock.
  const claimHostId = db.transaction((sandbox: string, pick: (taken: ReadonlySet<number>) => number): number => {
    const held = hostIdOf.get(sandbox);
    if (held) return held.id;
    const id = pick(new Set(takenHostIds.all().map((row) => row.id)));
    insertHostId.run({ id, sandbox });
    return id;
  });
  const insertViolation = db.prepare<Violation>('INSERT INTO violations (sandbox, time, kind, target, rule) VALUES (@sandbox, @time, @kind, @target, @rule)');
  // A sandbox can be refused as fast as it can try: only its newest are kept, so it cannot fill the disk.
  const trimViolations = db.prepare<{ sandbox: string; keep: number }>(`
    DELETE FROM violations WHERE sandbox = @sandbox AND seq <= (SELECT seq FROM violations WHERE sandbox = @sandbox ORDER BY seq DESC LIMIT 1 OFFSET @keep)`);
  let insertsSinceTrim = 0;
  const addViolation = (violation: Violation): void => {
    insertViolation.run(violation);
    if (++insertsSinceTrim >= 100) {
      insertsSinceTrim = 0;
      trimViolations.run({ sandbox: violation.sandbox, keep: VIOLATIONS_KEPT });
    }
  };
  // The newest `limit`, returned oldest first.
  const violationsOf = db.prepare<{ sandbox: string | null; limit: number }, Violation>(`
    SELECT sandbox, time, kind, target, rule FROM (
      SELECT * FROM violations WHERE @sandbox IS NULL OR sandbox = @sandbox ORDER BY seq DESC LIMIT @limit
    ) ORDER BY seq`);
  const spentOf = db.prepare<[string], { requests: number; inputTokens: number; outputTokens: number }>(
    'SELECT requests, input_tokens AS inputTokens, output_tokens AS outputTokens FROM llm_spent WHERE sandbox = ?',
  );
  const spentAll = db.prepare<[], Spent>('SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(input_tokens), 0) AS inputTokens, COALESCE(SUM(output_tokens), 0) AS outputTokens FROM llm_spent');
  const charge = db.prepare<{ sandbox: string } & Spent>(`
    INSERT INTO llm_spent VALUES (@sandbox, @requests, @inputTokens, @outputTokens)
    ON CONFLICT (sandbox) DO UPDATE SET requests = requests + excluded.requests,
      input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens`);
  // One statement for every filter: the filters arrive as JSON and are walked with
  // json_each, so a metadata key is data, never part of a JSON path or of the SQL.
  const page = db.prepare<ListParams, Row>(`
    SELECT * FROM sandboxes
    WHERE (started_ms, id) > (@afterMs, @afterId)
      AND (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))
      AND NOT EXISTS (
        SELECT 1 FROM json_each(@metadata) AS want
        WHERE NOT EXISTS (
          SELECT 1 FROM json_each(sandboxes.metadata) AS have
          WHERE have.key = want.key AND have.value = want.value))
    ORDER BY started_ms, id
    LIMIT @limit`);

  // IMMEDIATE: take the write lock before reading, so two daemons cannot interleave read-merge-write.
  const update = db.transaction((id: string, patch: Partial<Omit<SandboxRecord, 'id'>>) => {
    const current = byId.get(id);
    if (!current) throw notFound(id);
    const given = Object.fromEntries(Object.entries(patch).filter(([key, value]) => key !== 'id' && value !== undefined));
    writing(() => replace.run(toRow({ ...fromRow(current), ...given, id })));
  });

  return {
    insert: (record) => writing(() => insert.run(toRow(record))),
    update: (id, patch) => update.immediate(id, patch),
    get: (id) => read(byId.get(id)),
    findByName: (name) => read(byName.get(name)),
    list(query: ListQuery): Page<SandboxRecord> {
      if (!Number.isInteger(query.limit) || query.limit < 1) {
        throw new BrigError('BRIG_BAD_REQUEST', `limit must be a positive integer, got ${query.limit}`, 'Ask for at least one sandbox per page.');
      }
      const after = query.after === undefined ? { ms: Number.MIN_SAFE_INTEGER, id: '' } : decodeCursor(query.after);
      const rows = page.all({
        afterMs: after.ms,
        afterId: after.id,
        states: query.states && query.states.length > 0 ? JSON.stringify(query.states) : null,
        metadata: query.metadata ? JSON.stringify(query.metadata) : null,
        // One more than asked: whether it comes back says if there is a next page.
        limit: query.limit + 1,
      });
      const items = rows.slice(0, query.limit);
      const last = items[items.length - 1];
      return { items: items.map(fromRow), next: rows.length > query.limit && last ? encodeCursor(last) : null };
    },
    all: () => everything.all().map(fromRow),
    remove: (id) => remove(id),
    addViolation,
    violations: (sandbox, limit) => violationsOf.all({ sandbox, limit }),
    spent: (sandbox) => spentOf.get(sandbox) ?? { requests: 0, inputTokens: 0, outputTokens: 0 },
    charge: (sandbox, delta) => void charge.run({ sandbox, ...delta }),
    spentTotal: () => spentAll.get() ?? { requests: 0, inputTokens: 0, outputTokens: 0 },
    hostId: (sandbox) => hostIdOf.get(sandbox)?.id ?? null,
    claimHostId: (sandbox, pick) => claimHostId.immediate(sandbox, pick),
    ...sqliteJobStore(db),
    ...sqliteEventStore(db),
    close() {
      if (!db.open) return;
      db.pragma('optimize');
      db.close();
    },
  };
}

/** The file holds every sandbox's envd access token: only its owner may read it (WAL files inherit its mode). */
function prepareFile(file: string): void {
  // Only a directory we create is made 0700: the caller's existing directory (even /tmp) is left alone.
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
}

function migrate(db: Database.Database): void {
  // IMMEDIATE, and the version read inside: two daemons opening a new file at once migrate it once.
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`${db.name}: store schema version ${version} is newer than this brig knows (${MIGRATIONS.length}); upgrade brig`);
    }
    for (let step = version; step < MIGRATIONS.length; step++) MIGRATIONS[step]?.(db);
    if (version < MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

/** A taken name surfaces as the unique index refusing the row. */
function writing(write: () => unknown): void {
  try {
    write();
  } catch (error) {
    if (error instanceof Database.SqliteError && error.code === 'SQLITE_CONSTRAINT_UNIQUE') {
      throw new BrigError('BRIG_NAME_TAKEN', 'another sandbox that is not stopped already has that name', 'Choose another name, or kill the sandbox that has it.');
    }
    throw error;
  }
}

function notFound(id: string): BrigError {
  return new BrigError('BRIG_SANDBOX_NOT_FOUND', `no sandbox has the id ${JSON.stringify(id)}`, 'List sandboxes to see the ids that exist.');
}

function toRow(record: SandboxRecord): Row {
  const startedMs = Date.parse(record.startedAt);
  if (Number.isNaN(startedMs)) {
    throw new BrigError('BRIG_BAD_REQUEST', `startedAt is not an RFC 3339 time: ${JSON.stringify(record.startedAt)}`, 'Write times as new Date().toISOString() does.');
  }
  return {
    id: record.id,
    name: record.name,
    template_id: record.templateId,
    metadata: JSON.stringify(record.metadata),
    env_vars: JSON.stringify(record.envVars),
    policy: JSON.stringify(record.policy),
    state: record.state,
    started_at: record.startedAt,
    started_ms: startedMs,
    end_at: record.endAt,
    keep_workspace: record.keepWorkspace ? 1 : 0,
    envd_access_token: record.envdAccessToken,
    workspace: record.workspace,
    handle: record.handle === null ? null : JSON.stringify(record.handle),
    end_reason: record.endReason ?? null,
    ports: record.ports === undefined ? null : JSON.stringify(record.ports),
  };
}

function fromRow(row: Row): SandboxRecord {
  return {
    id: row.id,
    name: row.name,
    templateId: row.template_id,
    metadata: JSON.parse(row.metadata),
    envVars: JSON.parse(row.env_vars),
    policy: JSON.parse(row.policy),
    state: row.state,
    startedAt: row.started_at,
    endAt: row.end_at,
    keepWorkspace: row.keep_workspace === 1,
    envdAccessToken: row.envd_access_token,
    workspace: row.workspace,
    handle: row.handle === null ? null : JSON.parse(row.handle),
    ...(row.end_reason === null ? {} : { endReason: row.end_reason }),
    ...(row.ports === null ? {} : { ports: JSON.parse(row.ports) }),
  };
}

function read(row: Row | undefined): SandboxRecord | null {
  return row ? fromRow(row) : null;
}

/** Opaque to callers; inside, the last row's sort key. */
function encodeCursor(row: Row): string {
  return Buffer.from(`${row.started_ms}|${row.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { ms: number; id: string } {
  // Node's base64url decoder skips bad characters, so check the alphabet first.
  const match = /^[A-Za-z0-9_-]+$/.test(cursor) ? /^(-?\d{1,16})\|(.+)$/s.exec(Buffer.from(cursor, 'base64url').toString()) : null;
  const ms = Number(match?.[1]);
  if (!match?.[2] || !Number.isSafeInteger(ms)) {
    throw new BrigError('BRIG_BAD_REQUEST', `malformed page cursor ${JSON.stringify(cursor.slice(0, 64))}`, CURSOR_HINT);
  }
  return { ms, id: match[2] };
}
