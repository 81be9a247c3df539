import type Database from 'better-sqlite3';
import type { DaemonEvent, EventQuery, EventStore } from '../timeline/index.ts';

/** The newest events kept; older ones are trimmed now and then. */
const EVENTS_KEPT = 100_000;

export const EVENTS_SCHEMA = `
  CREATE TABLE events (
    seq      INTEGER PRIMARY KEY,
    time     TEXT NOT NULL,
    type     TEXT NOT NULL,
    sandbox  TEXT,
    job      TEXT,
    detail   TEXT NOT NULL  -- JSON object
  ) STRICT;
  CREATE INDEX events_by_sandbox ON events (sandbox, seq) WHERE sandbox IS NOT NULL;
  CREATE INDEX events_by_job ON events (job, seq) WHERE job IS NOT NULL;
`;

interface EventRow {
  seq: number;
  time: string;
  type: string;
  sandbox: string | null;
  job: string | null;
  detail: string;
}

export function sqliteEventStore(db: Database.Database): EventStore {
  const insert = db.prepare<Omit<EventRow, 'seq'>>('INSERT INTO events (time, type, sandbox, job, detail) VALUES (@time, @type, @sandbox, @job, @detail)');
  // Filters as JSON (json_each) and NULL for "any": one statement for every query.
  const select = db.prepare<{ after: number; types: string | null; sandbox: string | null; job: string | null; limit: number }, EventRow>(`
    SELECT * FROM events
    WHERE seq > @after
      AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
      AND (@sandbox IS NULL OR sandbox = @sandbox)
      AND (@job IS NULL OR job = @job)
    ORDER BY seq LIMIT @limit`);
  const trim = db.prepare<[number]>('DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?');
  let insertsSinceTrim = 0;
  return {
    addEvent(event) {
      const seq = Number(insert.run({ ...event, detail: JSON.stringify(event.detail) }).lastInsertRowid);
      if (++insertsSinceTrim >= 1000) {
        insertsSinceTrim = 0;
        trim.run(EVENTS_KEPT);
      }
      return { seq, ...event };
    },
    events(query: EventQuery): DaemonEvent[] {
      return select
        .all({ after: query.after, types: query.types && query.types.length > 0 ? JSON.stringify(query.types) : null, sandbox: query.sandbox ?? null, job: query.job ?? null, limit: query.limit })
        .map((row) => ({ seq: row.seq, time: row.time, type: row.type as DaemonEvent['type'], sandbox: row.sandbox, job: row.job, detail: JSON.parse(row.detail) }));
    },
  };
}
