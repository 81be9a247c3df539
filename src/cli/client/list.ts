import type { Daemon } from './connection.ts';
import { json, operandsOf, parseMixed, span, table } from './output.ts';
import { listSandboxes, type ListedPort } from './sandboxes.ts';

export const LS_HELP = `Usage: brig ls [--all] [--quiet] [--json]

List the running sandboxes, oldest first. When one publishes ports, a PORTS
column says which: agent=4000 (on 127.0.0.1), monitor=[::1]:4001; a ! marks
one that is not listening (brig info says why).

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
    // A PORTS column only when some sandbox publishes one: "agent=4000" on loopback, the host shown otherwise.
    const withPorts = sandboxes.some((sandbox) => (sandbox.ports ?? []).length > 0);
    const rows = sandboxes.map((sandbox) => [
      sandbox.id,
      sandbox.name ?? '-',
      sandbox.state,
      sandbox.tier,
      `${span(now - Date.parse(sandbox.startedAt))} ago`,
      sandbox.state === 'stopped' ? '-' : `in ${span(Date.parse(sandbox.endAt) - now)}`,
      ...(withPorts ? [(sandbox.ports ?? []).map(compactPort).join(',') || '-'] : []),
    ]);
    process.stdout.write(table(['ID', 'NAME', 'STATE', 'TIER', 'CREATED', 'ENDS', ...(withPorts ? ['PORTS'] : [])], rows));
  }
  return 0;
}

function compactPort(port: ListedPort): string {
  const host = port.host === '127.0.0.1' ? '' : port.host.includes(':') ? `[${port.host}]:` : `${port.host}:`;
  return `${port.kind}=${host}${port.port}${port.listening ? '' : '!'}`;
}
