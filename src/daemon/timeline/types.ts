/**
 * What happened to sandboxes and jobs, one event at a time, in the order
 * the daemon saw it (seq). The names are the issue's: a sandbox created,
 * killed (on request), timed out, died (by itself: `detail.reason` says
 * why), out of memory; a command started and ended through envd; a refused
 * access; a job's state changes.
 */
export const EVENT_TYPES = ['created', 'killed', 'timeout', 'died', 'oom', 'hung', 'unresponsive', 'violation', 'exec.started', 'exec.ended', 'job.queued', 'job.running', 'job.succeeded', 'job.failed'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface DaemonEvent {
  /** 1, 2, … in the order the daemon recorded them; SSE's event id, so a follower resumes after the last it saw. */
  seq: number;
  /** RFC 3339. */
  time: string;
  type: EventType;
  sandbox: string | null;
  job: string | null;
  /** What the event is about, by type (a command's argv and exit code, a violation's target, why a sandbox died…). */
  detail: Record<string, unknown>;
}

export interface EventQuery {
  /** Only events after this seq (0: from the oldest kept). */
  after: number;
  types?: EventType[];
  sandbox?: string;
  job?: string;
  /** Oldest first, at most this many. */
  limit: number;
}

/** The events' persistence: the newest EVENTS_KEPT are kept. */
export interface EventStore {
  addEvent(event: Omit<DaemonEvent, 'seq'>): DaemonEvent;
  events(query: EventQuery): DaemonEvent[];
}
