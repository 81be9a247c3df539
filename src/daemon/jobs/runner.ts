import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { BrigError, signalOfStatus, type ProcessEvent } from '../../protocol/index.ts';
import { EnvdClient, type SandboxManager } from '../sandboxes/index.ts';
import { jobProgram, TS_RUNNER } from './kinds.ts';
import { GUI_LAUNCHER, GUI_LAUNCHER_SCRIPT, GUI_TEMPLATE, MAX_SCREENSHOTS, SCREENSHOT_LIST, SCREENSHOT_PATH } from './gui.ts';
import type { CommandRecorder } from '../timeline/index.ts';
import { OutputSink } from './output.ts';
import type { ArtifactRecord, JobEndReason, JobRecord, JobStore } from './types.ts';

/**
 * One job, start to end, in a sandbox of its own: create it (from the pool
 * when one fits), put the files and the code in, start the program (tagged
 * with the job's id, with envd's own deadline at the job's timeout), stream
 * its output into the store, collect the artifacts, record the end, then
 * kill the sandbox. Every step is written down before the next, so a
 * daemon killed at any point finds the job where it was (reattach).
 */

export const DEFAULT_TIMEOUT_SECONDS = 600;
/** The sandbox outlives the job's timeout by this much: time to collect artifacts, and for envd's own deadline to act first. */
const SANDBOX_MARGIN_MS = 120_000;
export const ARTIFACT_MAX_BYTES = 64 * 1024 * 1024;
/** All of one job's artifacts: a job cannot fill the host's disk through them. */
const ARTIFACTS_TOTAL_MAX_BYTES = 256 * 1024 * 1024;

export interface RunnerContext {
  store: JobStore;
  manager: SandboxManager;
  /** Per stream. */
  outputCapBytes: number;
  /** Where artifacts are kept: `<dir>/<job id>/<n>`. */
  artifactsDir: string;
  /** dist/inside/ts-run.cjs. */
  tsRunner: string;
  /** Where the program goes in its sandbox's transcript, as commands through the gateway do. */
  recorder?: CommandRecorder;
  /** A batch of output as stored; the end as recorded. */
  live: { output(jobId: string, stream: 'stdout' | 'stderr', text: string): void; ended(job: JobRecord): void; requeued(job: JobRecord): void };
}

/** How the caller ends a job early: cancel it (the program is killed), or let go of it (the daemon closes: the program runs on, the next daemon reattaches). */
export interface JobControl {
  cancel(): void;
  detach(): void;
}

export function runJob(job: JobRecord, context: RunnerContext, reattach: boolean): { control: JobControl; done: Promise<void> } {
  const detaching = new AbortController();
  let cancelled = false;
  // Set once the program's start event came: a signal before then would find no process to kill.
  let kill: (() => void) | null = null;
  const control: JobControl = {
    cancel: () => {
      cancelled = true;
      kill?.();
    },
    detach: () => detaching.abort(),
  };
  const done = (async () => {
    const sandboxId = reattach ? job.sandboxId : await createSandbox(job, context).catch((error: Error) => {
      finish(job, context, { reason: 'error', error: `its sandbox did not start: ${error.message}` });
      return null;
    });
    if (sandboxId === null) return;
    try {
      if (cancelled) throw new BrigError('BRIG_JOB_FAILED', 'cancelled before it started', 'nothing to do');
      const envd = new EnvdClient(context.manager.endpoint(sandboxId), { errorCode: 'BRIG_JOB_FAILED' });
      const events = reattach ? await reattached(job, envd, context, detaching.signal) : await started(job, envd, context, detaching.signal);
      if (!events) {
        lost(job, context, "the daemon restarted and the job's program was no longer running in its sandbox: how it ended is unknown");
        await context.manager.kill(sandboxId).catch(() => {});
        return;
      }
      const running = (): void => {
        kill = () => void envd.sendSignal({ tag: job.id }, 'SIGNAL_SIGKILL').catch(() => {});
        if (cancelled) kill();
      };
      // A reattached program runs already; a new one once its start event comes.
      if (reattach) running();
      const end = await follow(job, events, context, running);
      if (detaching.signal.aborted) return;
      if (!end) throw new BrigError('BRIG_JOB_FAILED', 'the program\'s events ended without its end', 'the sandbox may have been killed: its record says why');
      const artifacts = await collect(job, envd, context);
      const deadline = Date.parse(job.startedAt ?? '') + timeoutMs(job);
      const reason: JobEndReason = cancelled ? 'cancelled' : end.signal === 'SIGKILL' && Date.now() >= deadline - 1000 ? 'timed_out' : 'exited';
      finish(job, context, { reason, exitCode: end.exitCode, artifacts });
    } catch (error) {
      if (detaching.signal.aborted) return;
      finish(job, context, cancelled ? { reason: 'cancelled' } : { reason: 'error', error: (error as Error).message });
    }
    await context.manager.kill(sandboxId).catch(() => {});
  })();
  return { control, done };
}

function timeoutMs(job: JobRecord): number {
  return (job.request.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000;
}

async function createSandbox(job: JobRecord, context: RunnerContext): Promise<string> {
  const { request } = job;
  const sandbox = await context.manager.create({
    ...(request.template !== undefined ? { templateId: request.template } : request.kind === 'gui' && request.image === undefined ? { templateId: GUI_TEMPLATE } : {}),
    ...(request.image !== undefined ? { image: request.image } : {}),
    ...(request.tier !== undefined ? { tier: request.tier } : {}),
    ...(request.policy !== undefined ? { policy: request.policy } : {}),
    envVars: request.env ?? {},
    timeoutMs: timeoutMs(job) + SANDBOX_MARGIN_MS,
    metadata: { 'brig.job': job.id },
  });
  context.store.updateJob(job.id, { sandboxId: sandbox.id });
  job.sandboxId = sandbox.id;
  return sandbox.id;
}

/** Files in, then the program started: its events. */
async function started(job: JobRecord, envd: EnvdClient, context: RunnerContext, signal: AbortSignal): Promise<AsyncGenerator<ProcessEvent>> {
  const program = jobProgram(job.request.kind);
  for (const [path, text] of Object.entries(job.request.files ?? {})) await envd.upload(path, Buffer.from(text));
  await envd.upload(program.file, Buffer.from(job.request.code));
  if (job.request.kind === 'typescript') await envd.upload(TS_RUNNER, readFileSync(context.tsRunner));
  if (job.request.kind === 'gui') await envd.upload(GUI_LAUNCHER, Buffer.from(GUI_LAUNCHER_SCRIPT));
  return envd.start({ process: { cmd: program.cmd, args: program.args, envs: { BRIG_JOB_ID: job.id } }, tag: job.id }, timeoutMs(job), signal);
}

/**
 * After a restart: the program, found by its tag, followed from now on
 * (what it wrote while no daemon watched is missing: outputGap). null when
 * it is gone — it ended unwatched, or never started — and how is unknown.
 */
async function reattached(job: JobRecord, envd: EnvdClient, context: RunnerContext, signal: AbortSignal): Promise<AsyncGenerator<ProcessEvent> | null> {
  const running = (await envd.list()).some((process) => process.tag === job.id);
  if (!running) return null;
  context.store.updateJob(job.id, { outputGap: true });
  return envd.connect({ tag: job.id }, signal);
}

/** The program's output into the store; resolves with how it ended (null if the events stopped first). */
async function follow(job: JobRecord, events: AsyncGenerator<ProcessEvent>, context: RunnerContext, started: () => void): Promise<{ exitCode: number; signal: NodeJS.Signals | null } | null> {
  const live = (stream: 'stdout' | 'stderr', text: string): void => context.live.output(job.id, stream, text);
  const stdout = new OutputSink(context.store, job.id, 'stdout', context.outputCapBytes - Buffer.byteLength(job.stdout), live);
  const stderr = new OutputSink(context.store, job.id, 'stderr', context.outputCapBytes - Buffer.byteLength(job.stderr), live);
  const program = jobProgram(job.request.kind);
  const recording = job.sandboxId ? context.recorder?.command(job.sandboxId, { argv: [program.cmd, ...program.args].join(' '), pty: false, tag: job.id, via: 'job' }) : undefined;
  try {
    for await (const event of events) {
      if ('start' in event) {
        context.store.updateJob(job.id, { pid: event.start.pid });
        recording?.started(event.start.pid);
        started();
      } else if ('data' in event && 'stdout' in event.data) {
        const data = Buffer.from(event.data.stdout, 'base64');
        stdout.write(data);
        recording?.output('stdout', data);
      } else if ('data' in event && 'stderr' in event.data) {
        const data = Buffer.from(event.data.stderr, 'base64');
        stderr.write(data);
        recording?.output('stderr', data);
      } else if ('end' in event) {
        recording?.ended({ exitCode: event.end.exitCode, status: event.end.status });
        const signal = event.end.exited ? null : signalOfStatus(event.end.status);
        return { exitCode: event.end.exited ? event.end.exitCode : 128 + signalNumber(signal), signal };
      }
    }
    return null;
  } finally {
    recording?.ended({ exitCode: null, status: null });
    stdout.flush(true);
    stderr.flush(true);
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (constants.signals[signal] ?? 0) : 0;
}

/** Each artifact's bytes, kept under brig's own name for it (a number): nothing of the sandbox's path is used on the host. */
async function collect(job: JobRecord, envd: EnvdClient, context: RunnerContext): Promise<ArtifactRecord[]> {
  const paths = [...(job.request.artifacts ?? []), ...(job.request.kind === 'gui' ? await screenshots(envd, MAX_SCREENSHOTS - (job.request.artifacts?.length ?? 0)) : [])];
  if (paths.length === 0) return [];
  const dir = `${context.artifactsDir}/${job.id}`;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const records: ArtifactRecord[] = [];
  let room = ARTIFACTS_TOTAL_MAX_BYTES;
  for (const [index, path] of paths.entries()) {
    try {
      const bytes = await envd.download(path, Math.min(ARTIFACT_MAX_BYTES, room));
      room -= bytes.length;
      writeFileSync(`${dir}/${index}`, bytes, { mode: 0o600 });
      records.push({ path, bytes: bytes.length });
    } catch (error) {
      records.push({ path, bytes: null, error: (error as Error).message });
    }
  }
  return records;
}

/** A gui job's screenshots, as its launcher listed them: the last `room` of them, each path checked (the list was written in the sandbox). */
async function screenshots(envd: EnvdClient, room: number): Promise<string[]> {
  if (room <= 0) return [];
  const list = await envd.download(SCREENSHOT_LIST, 64 * 1024).catch(() => Buffer.alloc(0));
  const paths = list.toString('utf8').split('\n').filter((line) => SCREENSHOT_PATH.test(line));
  return [...new Set(paths)].slice(-room);
}

/**
 * A running job a restart lost (its sandbox or its program gone): run
 * again when it said it may be (a new attempt, its output started afresh),
 * else failed as `lost`. Never run again silently.
 */
export function lost(job: JobRecord, context: RunnerContext, why: string): void {
  if (job.request.retryable) {
    context.store.updateJob(job.id, { state: 'queued', startedAt: null, sandboxId: null, pid: null, stdout: '', stderr: '', stdoutDropped: 0, stderrDropped: 0, outputGap: false, error: `attempt ${job.attempts} was lost (${why}); queued again` });
    context.live.requeued(context.store.getJob(job.id) ?? job);
    return;
  }
  finish(job, context, { reason: 'lost', error: why });
}

function finish(job: JobRecord, context: RunnerContext, end: { reason: JobEndReason; exitCode?: number; error?: string; artifacts?: ArtifactRecord[] }): void {
  const succeeded = end.reason === 'exited' && end.exitCode === 0;
  context.store.updateJob(job.id, {
    state: succeeded ? 'succeeded' : 'failed',
    endedAt: new Date().toISOString(),
    reason: end.reason,
    exitCode: end.exitCode ?? null,
    error: end.error ?? null,
    ...(end.artifacts ? { artifacts: end.artifacts } : {}),
  });
  const ended = context.store.getJob(job.id);
  if (ended) context.live.ended(ended);
}
