import { BrigError } from '../../protocol/index.ts';
import type { Daemon } from './connection.ts';
import { json, parseMixed, write } from './output.ts';
import { findSandbox } from './sandboxes.ts';
import { serverEvents } from './server-events.ts';
import type { DaemonEvent } from '../../daemon/timeline/index.ts';

export const EVENTS_HELP = `Usage: brig events [-f] [--type T[,T…]] [--sandbox NAME] [--job ID] [--after SEQ] [--limit N] [--json]

What happened, oldest first: sandboxes created, killed, timed out, died (and
why), out of memory; commands started and ended through envd; refused
accesses; jobs queued, running, succeeded, failed (docs/observability.md).

  -f, --follow     keep printing events as they happen (Ctrl-C ends)
  --type T,…       only these: created killed timeout died oom violation
                   exec.started exec.ended job.queued job.running
                   job.succeeded job.failed
  --sandbox NAME   only one sandbox's
  --job ID         only one job's
  --after SEQ      only those after this sequence number
  --limit N        at most N (default 100; without -f)
  --json           one JSON object a line`;

const FLAGS = {
  follow: { value: false, short: 'f' },
  type: { value: true },
  sandbox: { value: true },
  job: { value: true },
  after: { value: true },
  limit: { value: true },
  json: { value: false },
  help: { value: false, short: 'h' },
};

/** An event past this is not one the daemon sends: the stream is refused rather than held. */
const MAX_EVENT_BYTES = 256 * 1024;

export async function events(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig events');
  if (parsed.operands.length > 0) throw new BrigError('BRIG_USAGE', `brig events takes no arguments, got '${parsed.operands[0]}'`, 'see `brig events --help`');
  const whole = (name: string): string | undefined => {
    const text = parsed.flags.get(name)?.[0];
    if (text !== undefined && !/^\d{1,15}$/.test(text)) throw new BrigError('BRIG_USAGE', `--${name} ${text}: not a whole number`, 'see `brig events --help`');
    return text;
  };
  const query = new URLSearchParams();
  const after = whole('after');
  const limit = whole('limit');
  if (after) query.set('after', after);
  if (limit) query.set('limit', limit);
  const type = parsed.flags.get('type')?.[0];
  if (type) query.set('type', type);
  const sandbox = parsed.flags.get('sandbox')?.[0];
  if (sandbox) query.set('sandbox', (await findSandbox(daemon, sandbox)).id);
  const job = parsed.flags.get('job')?.[0];
  if (job) query.set('job', job);
  const asJson = parsed.flags.has('json');
  const print = (event: DaemonEvent): Promise<void> => write(process.stdout, asJson ? JSON.stringify(event) + '\n' : describe(event));
  if (!parsed.flags.has('follow')) {
    for (const event of await daemon.call<DaemonEvent[]>('GET', `/v1/events?${query}`)) await print(event);
    return 0;
  }
  query.set('follow', 'true');
  query.delete('limit');
  const response = await daemon.send({ method: 'GET', path: `/v1/events?${query}`, headers: { accept: 'text/event-stream' } });
  if ((response.statusCode ?? 0) >= 300) throw await daemon.failure(response);
  try {
    for await (const { data } of serverEvents(response, MAX_EVENT_BYTES)) await print(JSON.parse(data) as DaemonEvent);
  } catch (error) {
    if (error instanceof BrigError) throw error;
    throw new BrigError('BRIG_DAEMON_UNAVAILABLE', `the connection to the daemon was cut while following its events (${(error as Error).message})`, `\`brig events -f --after SEQ\` (the last one printed) picks up where it stopped`);
  }
  throw new BrigError('BRIG_DAEMON_UNAVAILABLE', 'the daemon ended the stream of events (it is stopping)', '`brig events -f --after SEQ` (the last one printed) picks up where it stopped');
}

/** One line: seq, time, type, whose, and the detail as key=value. */
function describe(event: DaemonEvent): string {
  const whose = [event.sandbox && `sandbox=${event.sandbox}`, event.job && `job=${event.job}`].filter(Boolean).join(' ');
  const detail = Object.entries(event.detail)
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? JSON.stringify(value) : json(value).trim()}`)
    .join(' ');
  return `${String(event.seq).padStart(6)} ${event.time} ${event.type.padEnd(13)} ${whose}${detail ? ` ${detail}` : ''}\n`;
}
