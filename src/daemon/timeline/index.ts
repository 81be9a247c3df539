/**
 * timeline/: what happened, in order — the daemon's events (created, killed,
 * died, oom, exec started and ended, violations, jobs), kept in the store and
 * followed live (GET /v1/events, brig events); and how commands and terminals
 * are recorded into each sandbox's transcript (CommandRecorder, Transcripts:
 * one timeline per sandbox of its commands, terminals, model exchanges,
 * violations and events; GET /v1/sandboxes/{id}/timeline, brig logs).
 */
export { EventLog } from './events.ts';
export { ActivityBoard } from './activity.ts';
export { EVENT_TYPES, type DaemonEvent, type EventQuery, type EventStore, type EventType } from './types.ts';
export type { CommandRecorder, CommandRecording, CommandStart, OutputStream } from './recorder-types.ts';
export { DEFAULT_TRANSCRIPT_LIMITS, Transcripts } from './transcripts.ts';
export type { TimelineBody, TimelineEntry, TimelineQuery, TranscriptLimits } from './transcript-types.ts';
