/**
 * jobs/: seed 003's job queue (POST /schedule, GET /status/{id}). A job is
 * code of a kind (shell, python, typescript) run once in a fresh sandbox,
 * queued in the store by priority, its output and artifacts kept after
 * the sandbox is gone. No HTTP here: api/jobs.ts serves it.
 */
export { createJobQueue, type JobListener, type JobQueue, type JobQueueOptions } from './queue.ts';
export { ARTIFACT_MAX_BYTES, DEFAULT_TIMEOUT_SECONDS } from './runner.ts';
export { JOB_KINDS, type JobEndReason, type JobKind, type JobQuery, type JobRecord, type JobRequest, type JobState, type JobStore } from './types.ts';
