import type { PolicyInput } from '../../policy/index.ts';

export const JOB_KINDS = ['shell', 'python', 'typescript', 'gui'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Seed 003's states, unchanged: a job ends succeeded or failed, and `reason` says how. */
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed';

/**
 * How a job ended: its program exited (0: succeeded, else failed), it was
 * cancelled, its timeout passed, it was lost (the daemon restarted and its
 * sandbox or process was gone, so how it ended is unknown), or brig could
 * not run it (`error` says why).
 */
export type JobEndReason = 'exited' | 'cancelled' | 'timed_out' | 'lost' | 'error';

/** What a job asks for: seed 003's kind and code, and brig's own fields. */
export interface JobRequest {
  kind: JobKind;
  code: string;
  /** A sandbox template (E2B's templateID: an image or an agent profile); default 'base'. */
  template?: string;
  /** An image of the daemon's store (NAME[:TAG]). */
  image?: string;
  tier?: string;
  /** A policy on top of the template's (resources, network, filesystem…). */
  policy?: PolicyInput;
  env?: Record<string, string>;
  /** Files put in the sandbox before the code runs: path (relative ones from /home/user) → UTF-8 text. */
  files?: Record<string, string>;
  /** Files collected after it ran, kept with its result (GET /v1/jobs/{id}/artifacts/{n}). */
  artifacts?: string[];
  /** Seconds the code may run; default 600. */
  timeoutSeconds?: number;
  /** Higher goes first; equal priorities first in, first out. Default 0. */
  priority?: number;
  /** After a daemon restart that lost it, run it again rather than fail it. */
  retryable?: boolean;
}

export interface ArtifactRecord {
  /** As the request named it. */
  path: string;
  /** Bytes kept; null when it could not be collected (`error` says why). */
  bytes: number | null;
  error?: string;
}

export interface JobRecord {
  /** A UUID v4. */
  id: string;
  request: JobRequest;
  state: JobState;
  /** RFC 3339. */
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** The order jobs were started in (1, 2, …): the queue's decisions, visible. */
  startOrder: number | null;
  /** Runs begun: 2 or more only for a retryable job a restart lost. */
  attempts: number;
  sandboxId: string | null;
  /** The program's pid inside its sandbox, for a restarted daemon to reattach. */
  pid: number | null;
  exitCode: number | null;
  reason: JobEndReason | null;
  /** What went wrong, for `error` and `lost`. */
  error: string | null;
  stdout: string;
  stderr: string;
  /** Bytes of output not kept past the cap (0: none dropped). */
  stdoutDropped: number;
  stderrDropped: number;
  /** Output was produced while no daemon watched (between a restart's kill and the reattach), and is missing. */
  outputGap: boolean;
  artifacts: ArtifactRecord[];
}

export interface JobQuery {
  state?: JobState;
  /** Newest first; default 100. */
  limit?: number;
}

/** The jobs' persistence (SQLite by default: store/). The queue lives here, so it survives a restart. */
export interface JobStore {
  insertJob(job: JobRecord): void;
  getJob(id: string): JobRecord | null;
  /** Fields given are replaced. */
  updateJob(id: string, patch: Partial<Omit<JobRecord, 'id' | 'request' | 'createdAt'>>): void;
  /** Appends to stdout or stderr (the caller keeps to the cap), and adds to what was dropped. */
  appendJobOutput(id: string, stream: 'stdout' | 'stderr', text: string, dropped: number): void;
  /** The queued job to run next: highest priority, then oldest. */
  nextQueuedJob(): JobRecord | null;
  /**
   * queued → running, atomically: false when another taker (a second daemon
   * on the store, a cancel) changed it first. Gives it the next startOrder.
   */
  claimJob(id: string, startedAt: string): boolean;
  /** queued → failed (cancelled), atomically: false when it was no longer queued. */
  cancelQueuedJob(id: string, endedAt: string): boolean;
  listJobs(query: JobQuery): JobRecord[];
  /** Jobs in this state (for a restarted daemon: the running ones). */
  jobsIn(state: JobState): JobRecord[];
  /** How many jobs the store holds in each state. */
  countJobs(): Record<JobState, number>;
  /** Ended jobs that ended before this instant; removed. Returns their ids. */
  removeJobsEndedBefore(ms: number): string[];
}
