import { BrigError, isBrigError } from '../../protocol/index.ts';
import { parseDurationMs } from '../../policy/index.ts';
import { segment, type Daemon } from './connection.ts';
import { json, operandsOf, parseMixed, reportError, type Parsed } from './output.ts';

export const STOP_HELP = `Usage: brig stop [--json] NAME…

Kill sandboxes and keep their workspaces: \`brig ls --all\` shows them
stopped, \`brig rm\` removes them. Prints each one stopped.

  --json   the sandboxes stopped (as named), as a JSON array`;

export const RM_HELP = `Usage: brig rm [--data] [--json] NAME…

Remove sandboxes, running (killed first) or stopped. The workspace of a
sandbox created with --keep, or stopped, stays on disk unless --data is given.

  --data   delete their workspaces too
  --json   the sandboxes removed (as named), as a JSON array`;

export const PRUNE_HELP = `Usage: brig prune [--older-than DURATION] [--json]

Remove every stopped sandbox and its workspace; running ones are untouched.

  --older-than DURATION   only those started longer ago, e.g. 7d, 12h (default: all)
  --json                  the ids removed, as a JSON array`;

const ONE_EACH = { json: { value: false }, help: { value: false, short: 'h' } };

export function stop(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, ONE_EACH, 'brig stop');
  return forEach(parsed, 'brig stop', (id) => daemon.call('POST', `/v1/sandboxes/${segment(id)}/stop`));
}

export function rm(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { ...ONE_EACH, data: { value: false } }, 'brig rm');
  const data = parsed.flags.has('data');
  return forEach(parsed, 'brig rm', (id) => daemon.call('DELETE', `/v1/sandboxes/${segment(id)}?data=${data}`));
}

export async function prune(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { ...ONE_EACH, 'older-than': { value: true } }, 'brig prune');
  operandsOf(parsed, [], 'brig prune');
  const olderThan = parsed.flags.get('older-than')?.[0];
  const olderThanMs = olderThan === undefined ? 0 : parseDurationMs(olderThan, '--older-than');
  const { removed } = await daemon.call<{ removed: string[] }>('POST', '/v1/prune', { olderThanMs });
  process.stdout.write(parsed.flags.has('json') ? json(removed) : removed.map((id) => `${id}\n`).join(''));
  return 0;
}

/**
 * Each sandbox named, in order, as docker does: one that fails is reported
 * and the others are still done; the exit code is the first failure's.
 */
async function forEach(parsed: Parsed, usage: string, act: (idOrName: string) => Promise<unknown>): Promise<number> {
  if (parsed.operands.length === 0) throw new BrigError('BRIG_USAGE', `${usage} needs at least one sandbox`, `see \`${usage} --help\``);
  const asJson = parsed.flags.has('json');
  const done: string[] = [];
  let code = 0;
  for (const name of parsed.operands) {
    try {
      await act(name);
      done.push(name);
      if (!asJson) process.stdout.write(`${name}\n`);
    } catch (error) {
      // Nothing answers: the next call would say the same.
      if (!isBrigError(error) || error.code === 'BRIG_DAEMON_UNAVAILABLE') throw error;
      reportError(error, asJson);
      code ||= error.exitCode;
    }
  }
  if (asJson) process.stdout.write(json(done));
  return code;
}
