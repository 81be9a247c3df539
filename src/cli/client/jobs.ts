import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { BrigError, isBrigError } from '../../protocol/index.ts';
import { parseDurationMs } from '../../policy/index.ts';
import { segment, type Daemon } from './connection.ts';
import { bytes, json, operandsOf, parseMixed, span, table, write } from './output.ts';
import { serverEvents } from './server-events.ts';

/**
 * The job queue (seed 003's POST /schedule, docs/jobs.md) from the command
 * line: schedule, status, jobs, cancel. Following a job is the daemon's
 * server-sent events (GET /v1/jobs/:id/logs, server-events.ts).
 */

export const SCHEDULE_HELP = `Usage: brig schedule [flags] FILE|-

Queue a job: the code in FILE (or read from stdin with -) runs once, in a
fresh sandbox of its own, when the daemon has room (brig serve --jobs).
Prints the job's id; brig status ID shows how it went.

  --kind KIND          shell, python or typescript (default: from FILE's
                       extension, .sh, .py or .ts; needed for stdin)
  --template T         what the sandbox boots from (default base)
  --priority N         higher runs first, -1000 to 1000 (default 0)
  --timeout DURATION   kill it after e.g. 90s, 30m (default 10m, at most 24h)
  --env NAME=VALUE     set a variable in its environment (repeatable)
  --artifact PATH      collect this file when it ends (repeatable; relative
                       paths are from /home/user in the sandbox)
  --retryable          run it again should a daemon restart lose it
  --wait               follow its output onto stdout and stderr until it ends,
                       then exit as it did (below); Ctrl-C stops following only
  --json               {"job_id"}; with --wait, JSON lines: {"job_id"},
                       {"stdout"} and {"stderr"} (text), then {"status"}

Exit codes with --wait: 0 when it succeeded, its own exit code when it
failed (128+N when signal N ended it); 125 when it was cancelled, timed out,
was lost or could not run, after saying so on stderr.`;

export const STATUS_HELP = `Usage: brig status [--follow] [--json] ID

A job: its state, kind, times, exit code and how it ended, its sandbox,
attempts and artifacts, whether output was dropped, then what it wrote to
stdout and stderr (the first 1 MiB of each is kept).

  -f, --follow   instead, its output onto stdout and stderr (what was kept
                 first, then live) until it ends, and exit as it did, as
                 brig schedule --wait does; Ctrl-C stops following only
  --json         the daemon's record, as one JSON object (with --follow,
                 JSON lines as brig schedule --wait --json)`;

export const JOBS_HELP = `Usage: brig jobs [--state STATE] [--limit N] [--json]

List the jobs the daemon keeps, newest first (ended ones for its
--job-retention, default 7d).

  --state STATE   only queued, running, succeeded or failed ones
  --limit N       at most N, 1 to 1000 (default 100)
  --json          every field but the output, as a JSON array`;

export const CANCEL_HELP = `Usage: brig cancel [--json] ID

Cancel a job: a queued one ends at once, a running one once its program has
been killed. Prints its state after (failed (cancelled)); a job that had
already ended is BRIG_JOB_ENDED.

  --json   the job's record after, as one JSON object`;

const KINDS = ['shell', 'python', 'typescript', 'gui'] as const;
type Kind = (typeof KINDS)[number];
const KIND_OF_EXTENSION: Record<string, Kind> = { '.sh': 'shell', '.py': 'python', '.ts': 'typescript' };
const STATES = ['queued', 'running', 'succeeded', 'failed'];
/** The daemon's bound on a job's code (docs/jobs.md). */
const MAX_CODE_BYTES = 1024 * 1024;
/** One server-sent event: the daemon keeps 1 MiB of each stream, and sends it in batches of 64 KiB. */
const MAX_EVENT_BYTES = 2 * 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** GET /status/:job_id (docs/jobs.md); the list's lack stdout and stderr. */
export interface JobStatus {
  job_id: string;
  state: string;
  stdout?: string;
  stderr?: string;
  kind: string;
  priority: number;
  exit_code: number | null;
  reason: string | null;
  error: string | null;
  sandbox_id: string | null;
  attempts: number;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  stdout_dropped: number;
  stderr_dropped: number;
  output_gap: boolean;
  artifacts: { index: number; path: string; bytes: number | null; error?: string }[];
}

const HELP_FLAG = { help: { value: false, short: 'h' } };

export async function schedule(daemon: Daemon, argv: string[]): Promise<number> {
  const flags = { kind: { value: true }, template: { value: true }, priority: { value: true }, timeout: { value: true }, env: { value: true, repeat: true }, artifact: { value: true, repeat: true }, retryable: { value: false }, wait: { value: false }, json: { value: false }, ...HELP_FLAG };
  const parsed = parseMixed(argv, flags, 'brig schedule');
  const [file = ''] = operandsOf(parsed, ['FILE'], 'brig schedule');
  const one = (name: string): string | undefined => parsed.flags.get(name)?.[0];
  const kind = kindOf(file, one('kind'));
  const priority = one('priority');
  const timeout = one('timeout');
  const template = one('template');
  const body = {
    kind,
    code: await readCode(file),
    ...(template !== undefined ? { template } : {}),
    ...(priority !== undefined ? { priority: priorityOf(priority) } : {}),
    ...(timeout !== undefined ? { timeout: timeoutSeconds(timeout) } : {}),
    ...(parsed.flags.has('env') ? { env: envOf(parsed.flags.get('env') ?? []) } : {}),
    ...(parsed.flags.has('artifact') ? { artifacts: parsed.flags.get('artifact') } : {}),
    ...(parsed.flags.has('retryable') ? { retryable: true } : {}),
  };
  const { job_id: id } = await daemon.call<{ job_id: string }>('POST', '/schedule', body);
  const asJson = parsed.flags.has('json');
  if (!parsed.flags.has('wait')) {
    process.stdout.write(asJson ? json({ job_id: id }) : `${id}\n`);
    return 0;
  }
  if (asJson) await write(process.stdout, JSON.stringify({ job_id: id }) + '\n');
  return attach(daemon, id, asJson);
}

export async function status(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { follow: { value: false, short: 'f' }, json: { value: false }, ...HELP_FLAG }, 'brig status');
  const [given = ''] = operandsOf(parsed, ['ID'], 'brig status');
  const id = jobId(given);
  if (parsed.flags.has('follow')) return attach(daemon, id, parsed.flags.has('json'));
  const job = await daemon.call<JobStatus>('GET', `/status/${segment(id)}`);
  await write(process.stdout, parsed.flags.has('json') ? json(job) : describe(job));
  return 0;
}

export async function jobs(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { state: { value: true }, limit: { value: true }, json: { value: false }, ...HELP_FLAG }, 'brig jobs');
  operandsOf(parsed, [], 'brig jobs');
  const state = parsed.flags.get('state')?.[0];
  const limit = parsed.flags.get('limit')?.[0];
  if (state !== undefined && !STATES.includes(state)) throw new BrigError('BRIG_USAGE', `--state ${state}: a job is queued, running, succeeded or failed`, 'how a failed one ended (cancelled, timed out) is in its RESULT column');
  if (limit !== undefined && !(/^\d+$/.test(limit) && Number(limit) >= 1 && Number(limit) <= 1000)) throw new BrigError('BRIG_USAGE', `--limit ${limit}: expected a whole number from 1 to 1000`, 'see `brig jobs --help`');
  const query = new URLSearchParams({ ...(state !== undefined ? { state } : {}), ...(limit !== undefined ? { limit } : {}) }).toString();
  const listed = await daemon.call<JobStatus[]>('GET', `/v1/jobs${query ? `?${query}` : ''}`);
  if (parsed.flags.has('json')) {
    process.stdout.write(json(listed));
    return 0;
  }
  const now = Date.now();
  const rows = listed.map((job) => [job.job_id, job.state, job.kind, String(job.priority), `${span(now - Date.parse(job.created_at))} ago`, duration(job, now), result(job)]);
  process.stdout.write(table(['ID', 'STATE', 'KIND', 'PRIORITY', 'CREATED', 'DURATION', 'RESULT'], rows));
  return 0;
}

export async function cancel(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { json: { value: false }, ...HELP_FLAG }, 'brig cancel');
  const [given = ''] = operandsOf(parsed, ['ID'], 'brig cancel');
  const job = await daemon.call<JobStatus>('POST', `/v1/jobs/${segment(jobId(given))}/cancel`);
  process.stdout.write(parsed.flags.has('json') ? json(job) : `${job.state}${job.reason ? ` (${job.reason})` : ''}\n`);
  return 0;
}

/** --kind, else the file's extension; stdin has none. */
function kindOf(file: string, given: string | undefined): Kind {
  if (given !== undefined) {
    if ((KINDS as readonly string[]).includes(given)) return given as Kind;
    throw new BrigError('BRIG_USAGE', `--kind ${given}: brig runs jobs of kind shell, python, typescript or gui`, 'give one of those (gui: an xdotool script, in the desktop template)');
  }
  const kind = file === '-' ? undefined : KIND_OF_EXTENSION[extname(file).toLowerCase()];
  if (kind) return kind;
  const what = file === '-' ? 'code read from stdin' : `'${file}' (not .sh, .py or .ts)`;
  throw new BrigError('BRIG_USAGE', `brig schedule cannot tell the kind of ${what}`, 'give --kind shell, python, typescript or gui');
}

/** The code as UTF-8 text, from the file or stdin, within the daemon's bound. */
async function readCode(file: string): Promise<string> {
  const name = file === '-' ? 'the code on stdin' : file;
  const tooLarge = (): BrigError => new BrigError('BRIG_USAGE', `${name} is larger than a job's code may be (1 MiB)`, 'have the code fetch or build what is large, or put it in an image (--template)');
  let data: Buffer;
  if (file === '-') {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of process.stdin) {
      size += (chunk as Buffer).length;
      if (size > MAX_CODE_BYTES) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
    data = Buffer.concat(chunks);
  } else {
    try {
      data = readFileSync(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new BrigError('BRIG_USAGE', `cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? String(error))}`, 'give the file that holds the code, or - to read it from stdin');
    }
    if (data.length > MAX_CODE_BYTES) throw tooLarge();
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new BrigError('BRIG_USAGE', `${name} is not UTF-8 text`, "a job's code is sent as text: save it as UTF-8");
  }
}

function priorityOf(text: string): number {
  if (/^-?\d+$/.test(text) && Math.abs(Number(text)) <= 1000) return Number(text);
  throw new BrigError('BRIG_USAGE', `--priority ${text}: expected a whole number from -1000 to 1000`, 'higher runs first; the default is 0');
}

/** The API's timeout is whole seconds, 1 to 86400. */
function timeoutSeconds(text: string): number {
  const ms = parseDurationMs(text, '--timeout');
  if (ms % 1000 === 0 && ms >= 1000 && ms <= 86_400_000) return ms / 1000;
  throw new BrigError('BRIG_USAGE', `--timeout ${text}: a job's timeout is whole seconds from 1s to 24h`, 'for example 90s, 30m, 2h (the default is 10m)');
}

function envOf(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of entries) {
    const equals = entry.indexOf('=');
    if (equals <= 0) throw new BrigError('BRIG_USAGE', `--env ${entry}: expected NAME=VALUE`, 'the sandbox has its own environment: name the value to set');
    env[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  return env;
}

/** Ids are UUIDs (the daemon answers a malformed one with a schema error, not "no job"). */
function jobId(given: string): string {
  if (UUID.test(given)) return given.toLowerCase();
  throw new BrigError('BRIG_JOB_NOT_FOUND', `no job '${given}': a job's id is a UUID, as brig schedule prints it`, '`brig jobs` lists the jobs the daemon keeps');
}

/** The record for people, then the output kept. */
function describe(job: JobStatus): string {
  const now = Date.now();
  const at = (time: string | null, suffix: string): string => (time ? `${time} (${suffix})` : '-');
  const lines: [string, string][] = [
    ['ID', job.job_id],
    ['State', job.state],
    ['Kind', job.kind],
    ['Priority', String(job.priority)],
    ['Created', at(job.created_at, `${span(now - Date.parse(job.created_at))} ago`)],
    ['Started', at(job.started_at, `${span(now - Date.parse(job.started_at ?? ''))} ago`)],
    ['Ended', at(job.ended_at, `after ${duration(job, now)}`)],
    ['Exit code', job.exit_code === null ? '-' : String(job.exit_code)],
    ['Reason', job.reason ?? '-'],
    ...(job.error ? [['Error', job.error] as [string, string]] : []),
    ['Sandbox', job.sandbox_id ?? '-'],
    ['Attempts', String(job.attempts)],
    ...job.artifacts.map(({ index, path, bytes: size, error }): [string, string] => [`Artifact ${index}`, `${path}, ${size === null ? `not kept: ${error ?? 'unknown'}` : bytes(size)}`]),
  ];
  for (const stream of ['stdout', 'stderr'] as const) {
    const dropped = job[`${stream}_dropped`];
    if (dropped > 0) lines.push(['Truncated', `${stream}: ${bytes(dropped)} past the first 1 MiB not kept`]);
  }
  if (job.output_gap) lines.push(['Output gap', 'a daemon restart reattached it: what it wrote meanwhile is missing']);
  const width = Math.max(...lines.map(([label]) => label.length)) + 2;
  let text = lines.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}\n`).join('');
  for (const stream of ['stdout', 'stderr'] as const) {
    const output = job[stream] ?? '';
    text += `--- ${stream}${output === '' ? ' (empty)' : ''} ---\n${output}${output === '' || output.endsWith('\n') ? '' : '\n'}`;
  }
  return text;
}

/** How long it ran (so far), or '-' before it started. */
function duration(job: JobStatus, now: number): string {
  if (!job.started_at) return '-';
  return span((job.ended_at ? Date.parse(job.ended_at) : now) - Date.parse(job.started_at));
}

function result(job: JobStatus): string {
  if (job.reason === null) return '-';
  return job.reason === 'exited' ? `exit ${job.exit_code}` : job.exit_code === null ? job.reason : `${job.reason} (${job.exit_code})`;
}

/**
 * Its output as it comes (what was kept first) onto stdout and stderr, or as
 * JSON lines; then the exit code it ended with. Only following stops when
 * brig does (Ctrl-C, a reader gone): the job goes on.
 */
async function attach(daemon: Daemon, id: string, asJson: boolean): Promise<number> {
  // EPIPE arrives as an event, after the write that caused it: kept here, and following stops at the next write.
  let pipeError: Error | null = null;
  const onPipeError = (error: Error): void => void (pipeError ??= error);
  process.stdout.on('error', onPipeError);
  process.stderr.on('error', onPipeError);
  let stderrAtLineStart = true;
  const print = async (stream: 'stdout' | 'stderr', text: string): Promise<void> => {
    if (pipeError) throw pipeError;
    if (asJson) await write(process.stdout, JSON.stringify({ [stream]: text }) + '\n');
    else await write(stream === 'stdout' ? process.stdout : process.stderr, text);
    if (stream === 'stderr') stderrAtLineStart = text.endsWith('\n');
  };
  try {
    const end = await follow(daemon, id, print);
    if (asJson) {
      const { stdout: _stdout, stderr: _stderr, ...rest } = end;
      await write(process.stdout, JSON.stringify({ status: rest }) + '\n');
    }
    return exitCodeOf(end);
  } catch (error) {
    if ((error as NodeJS.ErrnoException | null)?.code === 'EPIPE') return 128 + 13;
    // brig's error on a line of its own, after output that did not end one.
    if (!asJson && !stderrAtLineStart) process.stderr.write('\n');
    throw error;
  }
}

/** 0 for success, the program's own code for a failure it exited with; how it ended otherwise is an error (125). */
export function exitCodeOf(job: JobStatus): number {
  if (job.state === 'succeeded') return 0;
  if (job.reason === 'exited' && job.exit_code !== null) return job.exit_code;
  const error = job.error ? `: ${job.error}` : '';
  const id = job.job_id;
  switch (job.reason) {
    case 'cancelled':
      throw new BrigError('BRIG_JOB_FAILED', `job ${id} was cancelled${error}`, `\`brig status ${id}\` shows what it wrote before`);
    case 'timed_out':
      throw new BrigError('BRIG_JOB_FAILED', `job ${id} timed out: killed at the end of its timeout${error}`, 'give it longer with brig schedule --timeout (default 10m, at most 24h)');
    case 'lost':
      throw new BrigError('BRIG_JOB_FAILED', `job ${id} was lost${error}`, 'a daemon restart lost its sandbox or program; schedule it --retryable to have it run again then');
    default:
      throw new BrigError('BRIG_JOB_FAILED', `job ${id} ${job.reason === 'error' ? 'could not run' : `ended ${job.state} (${job.reason ?? 'no reason given'})`}${error}`, `\`brig status ${id}\` shows its record; the daemon's log may say more`);
  }
}

/** GET /v1/jobs/:id/logs: each batch of output to `print`, in order; resolves with the status its `end` event carries. */
async function follow(daemon: Daemon, id: string, print: (stream: 'stdout' | 'stderr', text: string) => Promise<void>): Promise<JobStatus> {
  const response = await daemon.send({ method: 'GET', path: `/v1/jobs/${segment(id)}/logs`, headers: { accept: 'text/event-stream' } });
  if ((response.statusCode ?? 0) >= 300) throw await daemon.failure(response);
  let printing: unknown = null;
  try {
    for await (const { event, data } of serverEvents(response, MAX_EVENT_BYTES)) {
      if (event !== 'stdout' && event !== 'stderr' && event !== 'end') continue; // one brig does not know yet: ignored
      const value = parseData(event, data);
      if (event === 'end') return value as JobStatus;
      if (typeof value !== 'string') throw new BrigError('BRIG_INTERNAL', `the daemon sent a ${event} event that is not text`, 'this is a bug in brig; please report it');
      await print(event, value).catch((error: unknown) => {
        printing = error;
        throw error;
      });
    }
  } catch (error) {
    if (error === printing || isBrigError(error)) throw error;
    throw cut(daemon, id, (error as NodeJS.ErrnoException).code ?? (error as Error).message);
  } finally {
    response.destroy();
  }
  throw cut(daemon, id, 'the stream ended before the job did');
}

function parseData(event: string, data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    throw new BrigError('BRIG_INTERNAL', `the daemon sent a ${event} event whose data is not JSON`, 'this is a bug in brig; please report it');
  }
}

function cut(daemon: Daemon, id: string, why: string): BrigError {
  return new BrigError('BRIG_DAEMON_UNAVAILABLE', `the connection to the daemon at ${daemon.url.origin} was cut while following job ${id} (${why})`, `the job goes on in the daemon: \`brig status -f ${id}\` follows it again once the daemon answers`);
}
