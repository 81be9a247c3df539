import { setTimeout as sleep } from 'node:timers/promises';
import { BrigError, isBrigError } from '../../protocol/index.ts';
import { parseDurationMs } from '../../policy/index.ts';
import type { TimelineEntry } from '../../daemon/timeline/index.ts';
import { segment, type Daemon } from './connection.ts';
import { operandsOf, parseMixed, write } from './output.ts';
import { serverEvents } from './server-events.ts';
import { forTerminal } from './terminal-text.ts';

export const LOGS_HELP = `Usage: brig logs [flags] NAME

The sandbox's timeline, in order: each command and terminal session with
what it wrote and what was typed into it, its exchanges with models through
the LLM gateway (what it asked, what it was answered), refused accesses, and
what happened to it (created, out of memory, hung, killed…). Kept after the
sandbox ends (brig serve --transcript-retention, 7 days): a removed sandbox
by its id. docs/observability.md says what is recorded.

  -f, --follow   keep printing what is added, until the sandbox ends (Ctrl-C stops)
  --tail N       only the last N entries
  --since T      only entries since T: a duration before now (10m, 2h) or an RFC 3339 time
  --json         one entry per line, as GET /v1/sandboxes/{id}/timeline gives them
  --envd         envd's own log instead (what it started, what failed)`;

const FLAGS = {
  follow: { value: false, short: 'f' },
  tail: { value: true },
  since: { value: true },
  json: { value: false },
  envd: { value: false },
  help: { value: false, short: 'h' },
};

/** Entries are cut well below this; a larger event is not the daemon's. */
const MAX_ENTRY_BYTES = 1024 * 1024;
const PAGE = 10_000;
const ENDINGS = new Set(['killed', 'timeout', 'died']);

export async function logs(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig logs');
  const [name = ''] = operandsOf(parsed, ['NAME'], 'brig logs');
  if (parsed.flags.has('envd')) return envdLog(daemon, name, parsed.flags.has('follow'), parsed.flags.has('json'));
  const query = new URLSearchParams();
  const tail = parsed.flags.get('tail')?.[0];
  if (tail !== undefined) {
    if (!/^\d{1,5}$/.test(tail) || Number(tail) < 1 || Number(tail) > PAGE) throw new BrigError('BRIG_USAGE', `--tail ${tail}: expected a whole number from 1 to ${PAGE}`, 'for example --tail 50');
    query.set('tail', tail);
  }
  const since = parsed.flags.get('since')?.[0];
  if (since !== undefined) query.set('since', sinceTime(since));
  const print = printer(parsed.flags.has('json'));
  const path = `/v1/sandboxes/${segment(name)}/timeline`;
  if (!parsed.flags.has('follow')) {
    query.set('limit', String(PAGE));
    for (let page = await daemon.call<TimelineEntry[]>('GET', `${path}?${query}`); ; ) {
      for (const entry of page) await print(entry);
      const last = page.at(-1);
      if (tail !== undefined || page.length < PAGE || !last) return 0;
      query.set('after', String(last.seq));
      page = await daemon.call<TimelineEntry[]>('GET', `${path}?${query}`);
    }
  }
  query.set('follow', 'true');
  const response = await daemon.send({ method: 'GET', path: `${path}?${query}`, headers: { accept: 'text/event-stream' } });
  if ((response.statusCode ?? 0) >= 300) throw await daemon.failure(response);
  try {
    for await (const { data } of serverEvents(response, MAX_ENTRY_BYTES)) {
      const entry = JSON.parse(data) as TimelineEntry;
      await print(entry);
      // The sandbox ended: so does following it, as `docker logs -f` does.
      if (entry.type === 'event' && ENDINGS.has(entry.event)) {
        response.destroy();
        return 0;
      }
    }
  } catch (error) {
    if (error instanceof BrigError) throw error;
    throw new BrigError('BRIG_DAEMON_UNAVAILABLE', `the connection to the daemon was cut while following the timeline (${(error as Error).message})`, '`brig logs --since T` shows what was missed');
  }
  throw new BrigError('BRIG_DAEMON_UNAVAILABLE', 'the daemon ended the timeline stream (it is stopping)', '`brig logs --since T` shows what was missed once it is back');
}

/** --since: an RFC 3339 time as is, or a duration back from now. */
function sinceTime(text: string): string {
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    const time = Date.parse(text);
    if (Number.isNaN(time)) throw new BrigError('BRIG_USAGE', `--since ${text}: not a time`, 'an RFC 3339 time (2026-12-07T10:00:00Z) or a duration (10m, 2h)');
    return new Date(time).toISOString();
  }
  return new Date(Date.now() - parseDurationMs(text, '--since')).toISOString();
}

/** Entries for people (output as it came, the rest one line each), or as JSON lines. */
function printer(asJson: boolean): (entry: TimelineEntry) => Promise<void> {
  if (asJson) return (entry) => write(process.stdout, JSON.stringify(entry) + '\n');
  const tty = process.stdout.isTTY === true;
  // Output of several commands at once: a line says whose comes next when it changes.
  let lastWriter: number | null = null;
  let atLineStart = true;
  // Every field but the time is the sandbox's word (a replaced envd can say anything): all of it is made safe, not just the output.
  const line = async (text: string): Promise<void> => {
    await write(process.stdout, `${atLineStart ? '' : '\n'}${forTerminal(text, tty)}\n`);
    atLineStart = true;
  };
  return async (entry) => {
    const time = entry.time.slice(11, 19);
    switch (entry.type) {
      case 'command':
        lastWriter = entry.seq;
        return line(`${time} $ ${entry.argv}  [${[entry.pid === null ? 'not started' : `pid ${entry.pid}`, entry.user, entry.cwd, entry.pty ? 'terminal' : null, entry.via === 'api' ? null : entry.via].filter(Boolean).join(', ')}]`);
      case 'output':
        if (lastWriter !== entry.cmd) {
          await line(`${time} [output of pid ${entry.pid ?? '?'}]`);
          lastWriter = entry.cmd;
        }
        await write(process.stdout, forTerminal(entry.text, tty));
        atLineStart = entry.text.endsWith('\n');
        return;
      case 'input':
        return line(`${time} > typed into pid ${entry.pid}: ${JSON.stringify(entry.text)}`);
      case 'exit':
        lastWriter = null;
        return line(`${time} ${entry.status ?? 'ended (its stream was cut)'} · pid ${entry.pid ?? '?'}, ${entry.durationMs} ms${entry.droppedBytes ? `, ${entry.droppedBytes} bytes not recorded` : ''}`);
      case 'llm':
        return line(
          [
            `${time} model ${entry.provider}${entry.model ? ` ${entry.model}` : ''}: ${entry.method} ${entry.path} → ${entry.status}, ${entry.inputTokens} in / ${entry.outputTokens} out tokens, ${entry.totalMs} ms${entry.error ? ` (${entry.error})` : ''}`,
            indent('asked', entry.asked),
            indent('answered', entry.answered),
          ].join('\n'),
        );
      case 'violation':
        return line(`${time} refused (${entry.kind}) ${entry.target}: ${entry.rule}`);
      case 'event':
        return line(`${time} ${entry.event}${describeDetail(entry.detail)}`);
      case 'truncated':
        return line(`${time} [not recorded] ${entry.reason}`);
    }
  };
}

function indent(label: string, text: string): string {
  const lines = (text || '(nothing)').split('\n');
  return lines.map((each, index) => `  ${index === 0 ? `${label}:`.padEnd(10) : ' '.repeat(10)}${each}`).join('\n');
}

function describeDetail(detail: Record<string, unknown>): string {
  const parts = Object.entries(detail)
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return parts.length > 0 ? ` · ${parts.join(' ')}` : '';
}

/** --envd: envd's log inside the sandbox (what it started, what failed); -f polls, as the daemon serves it whole. */
async function envdLog(daemon: Daemon, name: string, follow: boolean, asJson: boolean): Promise<number> {
  const path = `/v1/sandboxes/${segment(name)}/logs`;
  const print = asJson ? jsonLines() : (text: string) => write(process.stdout, text);
  let seen = (await daemon.call<string>('GET', path)) ?? '';
  await print(seen);
  if (!follow) return finish(print);
  for (;;) {
    await sleep(ENVD_POLL_MS);
    let text: string;
    try {
      text = (await daemon.call<string>('GET', path)) ?? '';
    } catch (error) {
      if (isBrigError(error) && error.code === 'BRIG_SANDBOX_NOT_FOUND') return finish(print);
      throw error;
    }
    // A log that shrank was started anew: print it from the top.
    await print(text.startsWith(seen) ? text.slice(seen.length) : text);
    seen = text;
  }
}

const ENVD_POLL_MS = 500;

type Printer = ((text: string) => Promise<void>) & { flush?: () => Promise<void> };

async function finish(print: Printer): Promise<number> {
  await print.flush?.();
  return 0;
}

/** Whole lines only: a line still being written waits for its end (or for the last flush). */
function jsonLines(): Printer {
  let partial = '';
  const print: Printer = async (text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) await write(process.stdout, JSON.stringify({ line }) + '\n');
  };
  print.flush = async () => {
    if (partial) await write(process.stdout, JSON.stringify({ line: partial }) + '\n');
    partial = '';
  };
  return print;
}
