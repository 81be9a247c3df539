import type { Daemon } from './connection.ts';
import { json, operandsOf, parseMixed, span, table } from './output.ts';
import { listSandboxes } from './sandboxes.ts';

export const LS_HELP = `Usage: brig ls [--all] [--quiet] [--json]

List the running sandboxes, oldest first.

  -a, --all     stopped ones too (their workspaces were kept)
  -q, --quiet   ids only, one a line (\`brig rm $(brig ls -a -q)\`)
  --json        every field, as a JSON array`;

const FLAGS = {
  all: { value: false, short: 'a' },
  quiet: { value: false, short: 'q' },
  json: { value: false },
  help: { value: false, short: 'h' },
};

export async function ls(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig ls');
  operandsOf(parsed, [], 'brig ls');
  const sandboxes = await listSandboxes(daemon, parsed.flags.has('all'));
  if (parsed.flags.has('json')) {
    process.stdout.write(json(sandboxes));
  } else if (parsed.flags.has('quiet')) {
    process.stdout.write(sandboxes.map((sandbox) => `${sandbox.id}\n`).join(''));
  } else {
    const now = Date.now();
    const rows = sandboxes.map((sandbox) => [
      sandbox.id,
      sandbox.name ?? '-',
      sandbox.state,
      sandbox.tier,
      `${span(now - Date.parse(sandbox.startedAt))} ago`,
      sandbox.state === 'stopped' ? '-' : `in ${span(Date.parse(sandbox.endAt) - now)}`,
    ]);
    process.stdout.write(table(['ID', 'NAME', 'STATE', 'TIER', 'CREATED', 'ENDS'], rows));
  }
  return 0;
}
