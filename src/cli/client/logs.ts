import { setTimeout as sleep } from 'node:timers/promises';
import { isBrigError } from '../../protocol/index.ts';
import { segment, type Daemon } from './connection.ts';
import { operandsOf, parseMixed, write } from './output.ts';

export const LOGS_HELP = `Usage: brig logs [--follow] [--json] NAME

Print the log of envd, the agent inside the sandbox (what it started, what
failed). Commands' own output is not in it: that went to whoever ran them.

  -f, --follow   keep printing what is added until the sandbox ends (Ctrl-C stops)
  --json         one JSON object per line: {"line": "…"}`;

const FLAGS = {
  follow: { value: false, short: 'f' },
  json: { value: false },
  help: { value: false, short: 'h' },
};

/** How often --follow asks: the daemon serves the log whole, so this is a poll. */
const POLL_MS = 500;

export async function logs(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig logs');
  const [name = ''] = operandsOf(parsed, ['NAME'], 'brig logs');
  const asJson = parsed.flags.has('json');
  const path = `/v1/sandboxes/${segment(name)}/logs`;
  const print = asJson ? jsonLines() : (text: string) => write(process.stdout, text);
  let seen = await daemon.call<string>('GET', path) ?? '';
  await print(seen);
  if (!parsed.flags.has('follow')) return finish(print);
  for (;;) {
    await sleep(POLL_MS);
    let text: string;
    try {
      text = (await daemon.call<string>('GET', path)) ?? '';
    } catch (error) {
      // The sandbox ended: so does following it, as `docker logs -f` does.
      if (isBrigError(error) && error.code === 'BRIG_SANDBOX_NOT_FOUND') return finish(print);
      throw error;
    }
    // A log that shrank was started anew: print it from the top.
    await print(text.startsWith(seen) ? text.slice(seen.length) : text);
    seen = text;
  }
}

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
