import { describeMemoryEvent, trafficAccessToken, type MemoryEvent } from '../../protocol/index.ts';
import { segment, type Daemon } from './connection.ts';
import { bytes, json, operandsOf, parseMixed, span } from './output.ts';
import { findSandbox, portText } from './sandboxes.ts';

export const INFO_HELP = `Usage: brig info [--json] NAME

Everything about one sandbox, running or stopped: id, name, state, times,
workspace, metadata, what was killed when it reached its memory limit and,
while it runs, what it uses, the address of its ports for a browser (Web:
put the port in place of PORT) and the whole policy it runs under
(docs/policy.md).

  --json   the same, as one JSON object`;

/** The newest kills at the memory limit shown (GET /v1/sandboxes/:id/memory-events has them all). */
const SHOWN_MEMORY_EVENTS = 10;

const FLAGS = { json: { value: false }, help: { value: false, short: 'h' } };

interface Usage {
  memoryBytes: number;
  pids: number;
  diskBytes: number;
}

export async function info(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig info');
  const [name = ''] = operandsOf(parsed, ['NAME'], 'brig info');
  const sandbox = await findSandbox(daemon, name);
  // A stopped sandbox's policy and usage went with it: only its record is left.
  const live = sandbox.state !== 'stopped';
  const [[detail, policy, usage], memoryEvents] = await Promise.all([
    live
      ? Promise.all([
          daemon.call<{ envdVersion: string; memoryMB: number; envdAccessToken: string; domain: string | null }>('GET', `/sandboxes/${segment(sandbox.id)}`),
          daemon.call<Record<string, unknown>>('GET', `/v1/sandboxes/${segment(sandbox.id)}/policy`),
          daemon.call<Usage>('GET', `/v1/sandboxes/${segment(sandbox.id)}/stats`),
        ])
      : ([null, null, null] as const),
    daemon.call<MemoryEvent[]>('GET', `/v1/sandboxes/${segment(sandbox.id)}/memory-events?limit=${SHOWN_MEMORY_EVENTS}`),
  ]);
  if (parsed.flags.has('json')) {
    process.stdout.write(json({ ...sandbox, envdVersion: detail?.envdVersion ?? null, usage, memoryEvents, policy }));
    return 0;
  }
  const now = Date.now();
  const lines: [string, string][] = [
    ['ID', sandbox.id],
    ['Name', sandbox.name ?? '-'],
    ['State', sandbox.state],
    ['Template', sandbox.templateId],
    ['Tier', sandbox.tier],
    ['Created', `${sandbox.startedAt} (${span(now - Date.parse(sandbox.startedAt))} ago)`],
    ['Ends', live ? `${sandbox.endAt} (in ${span(Date.parse(sandbox.endAt) - now)})` : '-'],
    ...(sandbox.endReason ? [['Ended', sandbox.endReason] as [string, string]] : []),
    ['Workspace', `${sandbox.workspace} (/home/user inside)`],
    ['Metadata', Object.entries(sandbox.metadata).map(([key, value]) => `${key}=${value}`).join(', ') || '-'],
    ...(sandbox.ports ?? []).map((port): [string, string] => ['Port', portText(port)]),
  ];
  if (detail) lines.push(['envd', detail.envdVersion]);
  // A server on a port inside, in a browser: the traffic token once, then its cookie (docs/daemon.md, "Sandbox ports").
  if (detail?.domain) lines.push(['Web', `http://PORT-${sandbox.id}.${detail.domain}/?brig_traffic_token=${trafficAccessToken(detail.envdAccessToken)}`]);
  if (usage && detail) lines.push(['Usage', `memory ${bytes(usage.memoryBytes)} of ${bytes(detail.memoryMB * 1024 * 1024)}, ${usage.pids} tasks, workspace ${bytes(usage.diskBytes)}`]);
  for (const event of memoryEvents) lines.push(['Out of memory', `${event.time} ${describeMemoryEvent(event)}`]);
  const width = Math.max(...lines.map(([label]) => label.length)) + 2;
  let text = lines.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}\n`).join('');
  text += policy ? `Policy:\n${json(policy).trimEnd().replace(/^/gm, '  ')}\n` : `${'Policy:'.padEnd(width)}- (not kept once a sandbox stops)\n`;
  process.stdout.write(text);
  return 0;
}
