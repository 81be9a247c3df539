import type { EventType } from './types.ts';
import type { CommandStart, OutputStream } from './recorder-types.ts';

/**
 * A sandbox's transcript: one timeline of what it did, what it saw and what
 * it asked the model, in the order the daemon saw it. Each entry has the
 * sandbox's own seq (1, 2, …; SSE's event id) and its time. A command's
 * entries share `cmd`, the seq of its `command` entry.
 */
export type TimelineEntry = { seq: number; time: string } & TimelineBody;

export type TimelineBody =
  /** A command or terminal session started (its seq is the `cmd` of its other entries); `pid` null when it never started (its `exit` says why). */
  | ({ type: 'command'; pid: number | null } & CommandStart)
  /** What it wrote, as text (UTF-8, split characters joined again). */
  | { type: 'output'; cmd: number; pid: number | null; stream: OutputStream; text: string }
  /** What was typed into it or written to its stdin. */
  | { type: 'input'; cmd: number | null; pid: number; text: string }
  /** How it ended; `droppedBytes` of its output and input went unrecorded past the cap. */
  | { type: 'exit'; cmd: number; pid: number | null; exitCode: number | null; status: string | null; durationMs: number; droppedBytes?: number }
  /** One exchange with a model through the LLM gateway: what was asked and answered, in short (the whole bodies: GET …/transcript). */
  | { type: 'llm'; provider: string; method: string; path: string; status: number; model: string | null; asked: string; answered: string; inputTokens: number; outputTokens: number; totalMs: number; error?: string }
  /** An access the sandbox was refused. */
  | { type: 'violation'; kind: string; target: string; rule: string }
  /** Something that happened to the sandbox (created, killed, timeout, died, oom, hung, unresponsive). */
  | { type: 'event'; event: EventType; detail: Record<string, unknown> }
  /** The cap was reached: what is said here was not recorded. */
  | { type: 'truncated'; cmd: number | null; reason: string };

export interface TimelineQuery {
  /** Only entries after this seq. */
  after?: number;
  /** Only entries at or after this time (RFC 3339). */
  since?: string;
  /** The last this many of those (instead of the first `limit`). */
  tail?: number;
  /** At most this many, oldest first. */
  limit: number;
}

export interface TranscriptLimits {
  /** The most one sandbox's transcript may hold on disk. */
  maxBytes: number;
  /** How long a transcript is kept after its sandbox ended. */
  retentionMs: number;
}
