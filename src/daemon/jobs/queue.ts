import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { BrigError } from '../../protocol/index.ts';
import type { SandboxManager } from '../sandboxes/index.ts';
import { lost, runJob, type JobControl, type RunnerContext } from './runner.ts';
import type { JobQuery, JobRecord, JobRequest, JobStore } from './types.ts';
import type { CommandRecorder, EventLog } from '../timeline/index.ts';

/**
 * The job queue: seed 003's /schedule. Jobs wait in the store (so a
 * restarted daemon finds them), at most `concurrency` run at once, the
 * highest priority first and equal ones first in, first out. Each runs in
 * a fresh sandbox (runner.ts). A restarted daemon reattaches the jobs that
 * were running where their sandbox and program live on, and loses the
 * others (failed, or queued again when retryable): no job runs twice
 * unless it said it may.
 */

export interface JobQueueOptions {
  store: JobStore;
  manager: SandboxManager;
  /** Jobs running at once, daemon-wide. Default 4. */
  concurrency?: number;
  /** How long an ended job's result is kept. Default 7 days. */
  retentionMs?: number;
  /** Output kept per stream. Default 1 MiB. */
  outputCapBytes?: number;
  /** The daemon's state directory: artifacts go under jobs/ there. */
  stateDir: string;
  /** dist/inside/ts-run.cjs. */
  tsRunner: string;
  /** Where each job's state changes are recorded (job.queued, job.running, job.succeeded, job.failed). */
  events?: EventLog;
  /** Where each job's program goes in its sandbox's transcript. */
  recorder?: CommandRecorder;
}

export interface JobQueue {
  schedule(request: JobRequest): JobRecord;
  /** BRIG_JOB_NOT_FOUND when it has none. */
  get(id: string): JobRecord;
  list(query: JobQuery): JobRecord[];
  /** A queued job ends at once; a running one when its program is killed. BRIG_JOB_ENDED when it had ended. */
  cancel(id: string): Promise<JobRecord>;
  /** Resolves when it has ended, or after `timeoutMs`, or when `signal` aborts, with the job as it is then. */
  wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<JobRecord>;
  /** Its output as stored, batch by batch, then its end; returns what stops following. */
  follow(id: string, listener: JobListener): () => void;
  /** The file an artifact was kept in, and its record. */
  artifact(id: string, index: number): { file: string; path: string; bytes: number };
  /** Stops starting jobs; running ones go on in their sandboxes, for the next daemon to reattach. */
  close(): Promise<void>;
}

export interface JobListener {
  output(stream: 'stdout' | 'stderr', text: string): void;
  ended(job: JobRecord): void;
}

const PUMP_MS = 1000;
const RETENTION_SWEEP_MS = 60_000;

export async function createJobQueue(options: JobQueueOptions): Promise<JobQueue> {
  const { store, manager } = options;
  const concurrency = options.concurrency ?? 4;
  const retentionMs = options.retentionMs ?? 7 * 24 * 3600 * 1000;
  const artifactsDir = `${options.stateDir}/jobs`;
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const running = new Map<string, { control: JobControl; done: Promise<void> }>();
  let closed = false;

  const ended = (job: JobRecord): void => {
    events.emit(`ended:${job.id}`, job);
    options.events?.record(job.state === 'succeeded' ? 'job.succeeded' : 'job.failed', { job: job.id, sandbox: job.sandboxId }, { reason: job.reason, exitCode: job.exitCode, error: job.error });
  };
  const context: RunnerContext = {
    store,
    manager,
    outputCapBytes: options.outputCapBytes ?? 1024 * 1024,
    artifactsDir,
    tsRunner: options.tsRunner,
    ...(options.recorder ? { recorder: options.recorder } : {}),
    live: {
      output: (id, stream, text) => events.emit(`output:${id}`, stream, text),
      ended,
      requeued: (job) => options.events?.record('job.queued', { job: job.id }, { attempt: job.attempts + 1, after: job.error }),
    },
  };

  const start = (job: JobRecord, reattach: boolean): void => {
    const run = runJob(job, context, reattach);
    running.set(job.id, run);
    void run.done.finally(() => {
      running.delete(job.id);
      pump();
    });
  };

  /** Start queued jobs while there is room: the store says which comes next, and a claim makes it ours. */
  const pump = (): void => {
    while (!closed && running.size < concurrency) {
      const next = store.nextQueuedJob();
      if (!next) return;
      const startedAt = new Date().toISOString();
      // Lost to another daemon on the same store, or to a cancel: look again.
      if (!store.claimJob(next.id, startedAt)) continue;
      const job = store.getJob(next.id) as JobRecord;
      options.events?.record('job.running', { job: job.id }, { attempt: job.attempts, startOrder: job.startOrder, waitedMs: Date.parse(startedAt) - Date.parse(job.createdAt) });
      start(job, false);
    }
  };

  // A restarted daemon: what was running is reattached where it lives on, lost where it does not.
  for (const job of store.jobsIn('running')) {
    const sandboxLives = job.sandboxId !== null && (() => {
      try {
        manager.get(job.sandboxId);
        return true;
      } catch {
        return false;
      }
    })();
    if (sandboxLives) start(job, true);
    else lost(job, context, job.sandboxId === null ? 'the daemon stopped before its sandbox was made' : 'the daemon restarted and the job\'s sandbox was gone');
  }
  // Job sandboxes whose job ended (the daemon stopped between the end and the kill) are killed.
  for (const sandbox of manager.listAll()) {
    const jobId = sandbox.metadata['brig.job'];
    if (sandbox.state !== 'running' || jobId === undefined || running.has(jobId)) continue;
    const job = store.getJob(jobId);
    if (!job || job.state !== 'running') await manager.kill(sandbox.id).catch(() => {});
  }

  const pumper = setInterval(pump, PUMP_MS);
  pumper.unref();
  const sweepRetention = (): void => {
    for (const id of store.removeJobsEndedBefore(Date.now() - retentionMs)) rmSync(`${artifactsDir}/${id}`, { recursive: true, force: true });
  };
  sweepRetention();
  const sweeper = setInterval(sweepRetention, RETENTION_SWEEP_MS);
  sweeper.unref();
  pump();

  const get = (id: string): JobRecord => {
    const job = store.getJob(id);
    if (!job) throw new BrigError('BRIG_JOB_NOT_FOUND', `no job '${id}'`, '`brig jobs` lists the jobs the daemon keeps (ended ones for its --job-retention)');
    return job;
  };

  return {
    schedule(request: JobRequest): JobRecord {
      const job: JobRecord = {
        id: randomUUID(),
        request,
        state: 'queued',
        createdAt: new Date().toISOString(),
        startedAt: null,
        endedAt: null,
        startOrder: null,
        attempts: 0,
        sandboxId: null,
        pid: null,
        exitCode: null,
        reason: null,
        error: null,
        stdout: '',
        stderr: '',
        stdoutDropped: 0,
        stderrDropped: 0,
        outputGap: false,
        artifacts: [],
      };
      store.insertJob(job);
      options.events?.record('job.queued', { job: job.id }, { kind: request.kind, priority: request.priority ?? 0 });
      queueMicrotask(pump);
      return job;
    },

    get,
    list: (query) => store.listJobs(query),

    async cancel(id: string): Promise<JobRecord> {
      const job = get(id);
      if (job.state === 'succeeded' || job.state === 'failed') throw new BrigError('BRIG_JOB_ENDED', `job ${id} already ended (${job.state})`, '`brig status ID` shows how it ended');
      if (job.state === 'queued' && store.cancelQueuedJob(id, new Date().toISOString())) {
        const cancelled = get(id);
        ended(cancelled);
        return cancelled;
      }
      const run = running.get(id);
      if (!run) return get(id); // running in another daemon on the same store, which the cancel cannot reach
      run.control.cancel();
      await run.done;
      return get(id);
    },

    wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<JobRecord> {
      const job = get(id);
      if (job.state === 'succeeded' || job.state === 'failed' || signal?.aborted) return Promise.resolve(job);
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          events.off(`ended:${id}`, done);
          signal?.removeEventListener('abort', done);
          resolve(store.getJob(id) ?? job);
        };
        const timer = setTimeout(done, timeoutMs);
        events.on(`ended:${id}`, done);
        signal?.addEventListener('abort', done);
      });
    },

    follow(id: string, listener: JobListener): () => void {
      const output = (stream: 'stdout' | 'stderr', text: string): void => listener.output(stream, text);
      const ended = (job: JobRecord): void => listener.ended(job);
      events.on(`output:${id}`, output);
      events.on(`ended:${id}`, ended);
      return () => {
        events.off(`output:${id}`, output);
        events.off(`ended:${id}`, ended);
      };
    },

    artifact(id: string, index: number) {
      const record = get(id).artifacts[index];
      const file = `${artifactsDir}/${id}/${index}`;
      if (!record || record.bytes === null || !existsSync(file)) throw new BrigError('BRIG_JOB_NOT_FOUND', `job ${id} has no artifact ${index}`, '`brig status ID` lists its artifacts and why one was not kept');
      return { file, path: record.path, bytes: record.bytes };
    },

    async close(): Promise<void> {
      closed = true;
      clearInterval(pumper);
      clearInterval(sweeper);
      for (const run of running.values()) run.control.detach();
      await Promise.all([...running.values()].map((run) => run.done));
    },
  };
}
