import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { BrigError } from '../../protocol/index.ts';
import { validatePolicyInput } from '../../policy/index.ts';
import { DEFAULT_TIMEOUT_SECONDS, JOB_KINDS, type JobKind, type JobQueue, type JobRecord, type JobRequest, type JobState } from '../jobs/index.ts';
import { errors } from './e2b-schemas.ts';
import { followStreams } from './sse.ts';

/**
 * Seed 003's job API, its shapes kept for its clients: POST /schedule
 * `{kind, code}` → `{job_id}`, GET /status/{job_id} → `{state, stdout,
 * stderr}`; brig's fields beside them (snake_case, as the seed's). And
 * brig's own: list, cancel, wait, a live log stream (SSE: the `end` event
 * carries the status without the output, which came as events before it),
 * artifacts.
 */

interface ScheduleBody {
  kind: JobKind;
  code: string;
  template?: string;
  image?: string;
  tier?: string;
  policy?: unknown;
  env?: Record<string, string>;
  files?: Record<string, string>;
  artifacts?: string[];
  timeout?: number;
  priority?: number;
  retryable?: boolean;
}

interface JobParams {
  job_id: string;
}

const JOB_PARAMS = { type: 'object', properties: { job_id: { type: 'string', pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' } }, required: ['job_id'] } as const;
const NAME = { type: 'string', minLength: 1, maxLength: 300 } as const;
const STATES: JobState[] = ['queued', 'running', 'succeeded', 'failed'];

const STATUS_SCHEMA = {
  type: 'object',
  properties: {
    job_id: { type: 'string' },
    state: { type: 'string', enum: STATES },
    stdout: { type: 'string', description: 'What the program wrote so far (the first 1 MiB; stdout_dropped counts the rest)' },
    stderr: { type: 'string' },
    kind: { type: 'string' },
    priority: { type: 'integer' },
    exit_code: { type: ['integer', 'null'], description: 'The exit code; 128+N when signal N ended it; null until it ends, or when it never ran' },
    reason: { type: ['string', 'null'], enum: ['exited', 'cancelled', 'timed_out', 'lost', 'error', null], description: 'How it ended: exited (0: succeeded), cancelled, timed_out, lost (a restart lost its sandbox or program), error (brig could not run it)' },
    error: { type: ['string', 'null'] },
    sandbox_id: { type: ['string', 'null'] },
    attempts: { type: 'integer' },
    start_order: { type: ['integer', 'null'], description: 'The order jobs were started in' },
    created_at: { type: 'string' },
    started_at: { type: ['string', 'null'] },
    ended_at: { type: ['string', 'null'] },
    stdout_dropped: { type: 'integer', description: 'Bytes of stdout past the cap, not kept' },
    stderr_dropped: { type: 'integer' },
    output_gap: { type: 'boolean', description: 'A daemon restart reattached it: what it wrote meanwhile is missing' },
    artifacts: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, path: { type: 'string' }, bytes: { type: ['integer', 'null'] }, error: { type: 'string' } }, required: ['index', 'path', 'bytes'] } },
  },
  required: ['job_id', 'state', 'stdout', 'stderr'],
} as const;

/** The list leaves the output out: a page of jobs could otherwise be a page of megabytes. */
const LISTED_SCHEMA = { ...STATUS_SCHEMA, required: ['job_id', 'state'] } as const;

/** Kept output is replayed in pieces of this many characters: no one event is larger than a live batch. */
const REPLAY_CHARS = 64 * 1024;

export function registerJobRoutes(app: FastifyInstance, jobs: JobQueue): void {
  const tags = ['jobs'];
  // Waits last as long as a job runs: closing the daemon ends them rather than waiting for them (and follows: sse.ts).
  const shutdown = new AbortController();
  app.addHook('preClose', async () => shutdown.abort());
  const eventStream = followStreams(app);

  app.post<{ Body: ScheduleBody }>('/schedule', {
    schema: {
      tags,
      summary: 'Queue a job: code of a kind, run once in a fresh sandbox (seed 003)',
      body: {
        type: 'object',
        properties: {
          kind: { type: 'string', enum: [...JOB_KINDS], description: 'gui: an xdotool script (bash) in a desktop sandbox (the desktop template unless template or image says otherwise); its screenshots come back as artifacts (docs/jobs.md)' },
          code: { type: 'string', maxLength: 1024 * 1024 },
          template: NAME,
          image: NAME,
          tier: NAME,
          policy: { type: 'object', description: 'A brig policy on top of the template\'s (docs/policy.md)' },
          env: { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 256 },
          files: { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 64, description: 'path (relative ones from /home/user) → UTF-8 text, written before the code runs' },
          artifacts: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 4096 }, maxItems: 32, description: 'Files collected after it ran (64 MiB each at most)' },
          timeout: { type: 'integer', minimum: 1, maximum: 86400, description: `Seconds the code may run (default ${DEFAULT_TIMEOUT_SECONDS})` },
          priority: { type: 'integer', minimum: -1000, maximum: 1000, description: 'Higher first; equal ones first in, first out (default 0)' },
          retryable: { type: 'boolean', description: 'After a daemon restart that lost it, run it again instead of failing it' },
        },
        required: ['kind', 'code'],
        additionalProperties: false,
      },
      response: { 200: { type: 'object', properties: { job_id: { type: 'string' } }, required: ['job_id'] }, ...errors(400) },
    },
    handler: async (request) => {
      const body = request.body;
      for (const path of [...Object.keys(body.files ?? {}), ...(body.artifacts ?? [])]) {
        if (path === '' || path.includes('\0')) throw new BrigError('BRIG_BAD_REQUEST', `a file path is empty or holds a NUL byte: ${JSON.stringify(path.slice(0, 60))}`, 'name files by their path in the sandbox (relative ones from /home/user)');
      }
      const job: JobRequest = {
        kind: body.kind,
        code: body.code,
        ...(body.template !== undefined ? { template: body.template } : {}),
        ...(body.image !== undefined ? { image: body.image } : {}),
        ...(body.tier !== undefined ? { tier: body.tier } : {}),
        ...(body.policy !== undefined ? { policy: validatePolicyInput(body.policy, "the job's policy") } : {}),
        ...(body.env !== undefined ? { env: body.env } : {}),
        ...(body.files !== undefined ? { files: body.files } : {}),
        ...(body.artifacts !== undefined ? { artifacts: body.artifacts } : {}),
        ...(body.timeout !== undefined ? { timeoutSeconds: body.timeout } : {}),
        ...(body.priority !== undefined ? { priority: body.priority } : {}),
        ...(body.retryable !== undefined ? { retryable: body.retryable } : {}),
      };
      return { job_id: jobs.schedule(job).id };
    },
  });

  app.get<{ Params: JobParams }>('/status/:job_id', {
    schema: { tags, summary: "A job's state and its output so far (seed 003), with brig's fields", params: JOB_PARAMS, response: { 200: STATUS_SCHEMA, ...errors(404) } },
    handler: async (request) => status(jobs.get(request.params.job_id)),
  });

  app.get<{ Querystring: { state?: JobState; limit?: number } }>('/v1/jobs', {
    schema: {
      tags,
      summary: 'Jobs, newest first',
      querystring: { type: 'object', properties: { state: { type: 'string', enum: STATES }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }, additionalProperties: false },
      response: { 200: { type: 'array', items: LISTED_SCHEMA } },
    },
    handler: async (request) => jobs.list({ ...(request.query.state ? { state: request.query.state } : {}), limit: request.query.limit ?? 100 }).map((job) => status(job, false)),
  });

  app.post<{ Params: JobParams }>('/v1/jobs/:job_id/cancel', {
    schema: { tags, summary: 'Cancel a job: a queued one ends at once, a running one when its program is killed', params: JOB_PARAMS, response: { 200: STATUS_SCHEMA, ...errors(404, 409) } },
    handler: async (request) => status(await jobs.cancel(request.params.job_id)),
  });

  app.get<{ Params: JobParams; Querystring: { timeout?: number } }>('/v1/jobs/:job_id/wait', {
    schema: {
      tags,
      summary: 'The job once it has ended, or as it is when the timeout passes',
      params: JOB_PARAMS,
      querystring: { type: 'object', properties: { timeout: { type: 'integer', minimum: 0, maximum: 3600, default: 60, description: 'Seconds to wait at most' } }, additionalProperties: false },
      response: { 200: STATUS_SCHEMA, ...errors(404) },
    },
    handler: async (request) => status(await jobs.wait(request.params.job_id, (request.query.timeout ?? 60) * 1000, shutdown.signal)),
  });

  app.get<{ Params: JobParams }>('/v1/jobs/:job_id/logs', {
    schema: { tags, summary: 'Its output as server-sent events: `stdout` and `stderr` (data: the text, as a JSON string), what was kept first, then live; `end` (data: its status) when it ends', params: JOB_PARAMS, response: errors(404) },
    handler: async (request, reply) => {
      const id = request.params.job_id;
      // Subscribed and read in one turn of the loop: nothing is stored between the read and the first live batch.
      const pending: Array<[string, unknown]> = [];
      let send = (event: string, data: unknown): void => void pending.push([event, data]);
      const stop = jobs.follow(id, { output: (stream, text) => send(stream, text), ended: (job) => send('end', status(job, false)) });
      let job: JobRecord;
      try {
        job = jobs.get(id);
      } catch (error) {
        stop();
        throw error;
      }
      const stream = eventStream(reply);
      stream.onClose(stop);
      send = (event, data) => {
        stream.send(event, data);
        if (event === 'end') stream.end();
      };
      // What was kept, stdout's then stderr's (the store keeps no order between the two), then what comes live.
      for (const stream of ['stdout', 'stderr'] as const) {
        for (let at = 0; at < job[stream].length; at += REPLAY_CHARS) send(stream, job[stream].slice(at, at + REPLAY_CHARS));
      }
      if (job.state === 'succeeded' || job.state === 'failed') return send('end', status(job, false));
      for (const [event, data] of pending) send(event, data);
    },
  });

  app.get<{ Params: JobParams & { index: number } }>('/v1/jobs/:job_id/artifacts/:index', {
    schema: { tags, summary: 'A file the job collected, as it was when it ended', params: { type: 'object', properties: { ...JOB_PARAMS.properties, index: { type: 'integer', minimum: 0, maximum: 31 } }, required: ['job_id', 'index'] }, response: errors(404) },
    handler: async (request, reply) => {
      const artifact = jobs.artifact(request.params.job_id, request.params.index);
      return reply.type('application/octet-stream').header('content-length', artifact.bytes).send(createReadStream(artifact.file));
    },
  });
}

function status(job: JobRecord, withOutput = true): Record<string, unknown> {
  return {
    job_id: job.id,
    state: job.state,
    ...(withOutput ? { stdout: job.stdout, stderr: job.stderr } : {}),
    kind: job.request.kind,
    priority: job.request.priority ?? 0,
    exit_code: job.exitCode,
    reason: job.reason,
    error: job.error,
    sandbox_id: job.sandboxId,
    attempts: job.attempts,
    start_order: job.startOrder,
    created_at: job.createdAt,
    started_at: job.startedAt,
    ended_at: job.endedAt,
    stdout_dropped: job.stdoutDropped,
    stderr_dropped: job.stderrDropped,
    output_gap: job.outputGap,
    artifacts: job.artifacts.map((artifact, index) => ({ index, ...artifact })),
  };
}
