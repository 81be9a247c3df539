import type Database from 'better-sqlite3';
import type { JobQuery, JobRecord, JobState, JobStore } from '../jobs/index.ts';

/**
 * The job queue's table. The queue is the table: a queued job is a row in
 * state 'queued', and taking one is a conditional UPDATE (claimJob), so a
 * job is started once even with two daemons on one file, and a restarted
 * daemon finds what was queued or running where it was.
 */
export const JOBS_SCHEMA = `
  CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY,  -- arrival order: first in, first out within a priority
    id              TEXT NOT NULL UNIQUE,
    request         TEXT NOT NULL,        -- JSON JobRequest
    state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    priority        INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    ended_ms        INTEGER,
    start_order     INTEGER,
    attempts        INTEGER NOT NULL,
    sandbox_id      TEXT,
    pid             INTEGER,
    exit_code       INTEGER,
    reason          TEXT,
    error           TEXT,
    stdout          TEXT NOT NULL,
    stderr          TEXT NOT NULL,
    stdout_dropped  INTEGER NOT NULL,
    stderr_dropped  INTEGER NOT NULL,
    output_gap      INTEGER NOT NULL CHECK (output_gap IN (0, 1)),
    artifacts       TEXT NOT NULL         -- JSON ArtifactRecord[]
  ) STRICT;
  -- The next job: the highest priority, then the oldest.
  CREATE INDEX jobs_queue ON jobs (state, priority DESC, seq);
  CREATE INDEX jobs_ended ON jobs (ended_ms) WHERE ended_ms IS NOT NULL;
  -- claimJob's MAX(start_order) without a scan.
  CREATE INDEX jobs_start_order ON jobs (start_order);
`;

interface JobRow {
  seq?: number;
  id: string;
  request: string;
  state: JobState;
  priority: number;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  ended_ms: number | null;
  start_order: number | null;
  attempts: number;
  sandbox_id: string | null;
  pid: number | null;
  exit_code: number | null;
  reason: string | null;
  error: string | null;
  stdout: string;
  stderr: string;
  stdout_dropped: number;
  stderr_dropped: number;
  output_gap: number;
  artifacts: string;
}

const COLUMNS = ['id', 'request', 'state', 'priority', 'created_at', 'started_at', 'ended_at', 'ended_ms', 'start_order', 'attempts', 'sandbox_id', 'pid', 'exit_code', 'reason', 'error', 'stdout', 'stderr', 'stdout_dropped', 'stderr_dropped', 'output_gap', 'artifacts'] as const;

export function sqliteJobStore(db: Database.Database): JobStore {
  const insert = db.prepare<JobRow>(`INSERT INTO jobs (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((column) => `@${column}`).join(', ')})`);
  const replace = db.prepare<JobRow>(`UPDATE jobs SET ${COLUMNS.filter((column) => column !== 'id').map((column) => `${column} = @${column}`).join(', ')} WHERE id = @id`);
  const byId = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?');
  const next = db.prepare<[], JobRow>(`SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq LIMIT 1`);
  const claim = db.prepare<{ id: string; startedAt: string }>(`
    UPDATE jobs SET state = 'running', started_at = @startedAt, attempts = attempts + 1,
      start_order = (SELECT COALESCE(MAX(start_order), 0) + 1 FROM jobs)
    WHERE id = @id AND state = 'queued'`);
  const cancelQueued = db.prepare<{ id: string; endedAt: string; endedMs: number }>(`
    UPDATE jobs SET state = 'failed', reason = 'cancelled', ended_at = @endedAt, ended_ms = @endedMs WHERE id = @id AND state = 'queued'`);
  const appendStdout = db.prepare<{ id: string; text: string; dropped: number }>('UPDATE jobs SET stdout = stdout || @text, stdout_dropped = stdout_dropped + @dropped WHERE id = @id');
  const appendStderr = db.prepare<{ id: string; text: string; dropped: number }>('UPDATE jobs SET stderr = stderr || @text, stderr_dropped = stderr_dropped + @dropped WHERE id = @id');
  const newest = db.prepare<{ state: string | null; limit: number }, JobRow>('SELECT * FROM jobs WHERE @state IS NULL OR state = @state ORDER BY seq DESC LIMIT @limit');
  const inState = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE state = ? ORDER BY seq');
  const endedBefore = db.prepare<[number], { id: string }>('SELECT id FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < ?');
  const removeRow = db.prepare<[string]>('DELETE FROM jobs WHERE id = ?');
  const counts = db.prepare<[], { state: JobState; count: number }>('SELECT state, COUNT(*) AS count FROM jobs GROUP BY state');

  // IMMEDIATE: read-merge-write under one write lock, as the sandboxes' update.
  const update = db.transaction((id: string, patch: Partial<JobRecord>) => {
    const current = byId.get(id);
    if (!current) return;
    const given = Object.fromEntries(Object.entries(patch).filter(([key, value]) => key !== 'id' && value !== undefined));
    replace.run(toRow({ ...fromRow(current), ...given }));
  });
  const removeEnded = db.transaction((ms: number): string[] => {
    const ids = endedBefore.all(ms).map((row) => row.id);
    for (const id of ids) removeRow.run(id);
    return ids;
  });

  return {
    insertJob: (job) => void insert.run(toRow(job)),
    getJob: (id) => {
      const row = byId.get(id);
      return row ? fromRow(row) : null;
    },
    updateJob: (id, patch) => update.immediate(id, patch),
    appendJobOutput: (id, stream, text, dropped) => void (stream === 'stdout' ? appendStdout : appendStderr).run({ id, text, dropped }),
    nextQueuedJob: () => {
      const row = next.get();
      return row ? fromRow(row) : null;
    },
    claimJob: (id, startedAt) => claim.run({ id, startedAt }).changes === 1,
    cancelQueuedJob: (id, endedAt) => cancelQueued.run({ id, endedAt, endedMs: Date.parse(endedAt) }).changes === 1,
    listJobs: (query: JobQuery) => newest.all({ state: query.state ?? null, limit: query.limit ?? 100 }).map(fromRow),
    jobsIn: (state) => inState.all(state).map(fromRow),
    countJobs: () => Object.fromEntries([['queued', 0], ['running', 0], ['succeeded', 0], ['failed', 0], ...counts.all().map((row) => [row.state, row.count])]) as Record<JobState, number>,
    removeJobsEndedBefore: (ms) => removeEnded.immediate(ms),
  };
}

function toRow(job: JobRecord): JobRow {
  return {
    id: job.id,
    request: JSON.stringify(job.request),
    state: job.state,
    priority: job.request.priority ?? 0,
    created_at: job.createdAt,
    started_at: job.startedAt,
    ended_at: job.endedAt,
    ended_ms: job.endedAt === null ? null : Date.parse(job.endedAt),
    start_order: job.startOrder,
    attempts: job.attempts,
    sandbox_id: job.sandboxId,
    pid: job.pid,
    exit_code: job.exitCode,
    reason: job.reason,
    error: job.error,
    stdout: job.stdout,
    stderr: job.stderr,
    stdout_dropped: job.stdoutDropped,
    stderr_dropped: job.stderrDropped,
    output_gap: job.outputGap ? 1 : 0,
    artifacts: JSON.stringify(job.artifacts),
  };
}

function fromRow(row: JobRow): JobRecord {
  return {
    id: row.id,
    request: JSON.parse(row.request),
    state: row.state,
    createdAt: row.created_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    startOrder: row.start_order,
    attempts: row.attempts,
    sandboxId: row.sandbox_id,
    pid: row.pid,
    exitCode: row.exit_code,
    reason: row.reason as JobRecord['reason'],
    error: row.error,
    stdout: row.stdout,
    stderr: row.stderr,
    stdoutDropped: row.stdout_dropped,
    stderrDropped: row.stderr_dropped,
    outputGap: row.output_gap === 1,
    artifacts: JSON.parse(row.artifacts),
  };
}
