import { BrigError } from '../../protocol/index.ts';
import { segment, type Daemon } from './connection.ts';
import { json, operandsOf, parseMixed, table, write } from './output.ts';
import { findSandbox } from './sandboxes.ts';

export const NET_HELP = `Usage: brig net NAME [--allow DEST]… [--deny DEST]… [--remove DEST]… [--json]

Show, or change live, what an allowlist sandbox's proxy lets through. The
next connection sees the change; open ones are not cut.

  --allow DEST    add DEST to the allow list: example.com, *.example.com,
                  host:443, 10.0.0.0/8 (repeatable)
  --deny DEST     add DEST to the deny list, checked first (repeatable)
  --remove DEST   take DEST off both lists (repeatable)
  --json          print the network policy as JSON`;

export const VIOLATIONS_HELP = `Usage: brig violations [NAME] [--limit N] [--json]

What sandboxes tried and were refused: connections outside the allowlist,
names resolving to private addresses, LLM requests past a budget. With NAME,
one sandbox's (stopped ones too); without, every sandbox's. Newest last.

  --limit N   at most the newest N (default 100)
  --json      one JSON array`;

export const TRANSCRIPT_HELP = `Usage: brig transcript NAME

Print the sandbox's LLM gateway transcript: one JSON object per exchange and
line, with the request and response bodies, token usage and timing. Keys are
never in it.`;

interface NetworkPolicy {
  mode: string;
  allow: string[];
  deny: string[];
  llm: string[];
  budget: { requests: number; tokens: number };
}

interface Violation {
  time: string;
  sandbox: string;
  kind: string;
  target: string;
  rule: string;
}

const NET_FLAGS = {
  allow: { value: true, repeat: true },
  deny: { value: true, repeat: true },
  remove: { value: true, repeat: true },
  json: { value: false },
  help: { value: false, short: 'h' },
};

export async function net(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, NET_FLAGS, 'brig net');
  const [name = ''] = operandsOf(parsed, ['NAME'], 'brig net');
  const sandbox = await findSandbox(daemon, name);
  const path = `/v1/sandboxes/${segment(sandbox.id)}/network`;
  let policy = await daemon.call<NetworkPolicy>('GET', path);
  const added = (flag: string) => parsed.flags.get(flag) ?? [];
  if (added('allow').length + added('deny').length + added('remove').length > 0) {
    const removed = new Set(added('remove'));
    const merge = (list: string[], more: string[]) => [...new Set([...list, ...more])].filter((entry) => !removed.has(entry));
    policy = await daemon.call<NetworkPolicy>('PUT', path, { allow: merge(policy.allow, added('allow')), deny: merge(policy.deny, added('deny')) });
  }
  if (parsed.flags.has('json')) {
    await write(process.stdout, json(policy));
    return 0;
  }
  const list = (items: string[]) => (items.length > 0 ? items.join(' ') : '-');
  const budget = [policy.budget.requests && `${policy.budget.requests} requests`, policy.budget.tokens && `${policy.budget.tokens} tokens`].filter(Boolean).join(', ');
  await write(
    process.stdout,
    `Mode:   ${policy.mode}\n` +
      (policy.mode === 'allowlist' ? `Allow:  ${list(policy.allow)}\nDeny:   ${list(policy.deny)}\nLLM:    ${list(policy.llm)}${budget ? ` (budget ${budget})` : ''}\n` : ''),
  );
  return 0;
}

const VIOLATION_FLAGS = { limit: { value: true }, json: { value: false }, help: { value: false, short: 'h' } };

export async function violations(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, VIOLATION_FLAGS, 'brig violations');
  if (parsed.operands.length > 1) operandsOf(parsed, ['NAME'], 'brig violations');
  const limitText = parsed.flags.get('limit')?.[0] ?? '100';
  const limit = Number(limitText);
  if (!Number.isInteger(limit) || limit < 1) throw new BrigError('BRIG_USAGE', `--limit ${limitText}: not a positive whole number`, 'e.g. --limit 20');
  const [name] = parsed.operands;
  const path = name === undefined ? '/v1/violations' : `/v1/sandboxes/${segment((await findSandbox(daemon, name)).id)}/violations`;
  const found = await daemon.call<Violation[]>('GET', `${path}?limit=${limit}`);
  if (parsed.flags.has('json')) {
    await write(process.stdout, json(found));
    return 0;
  }
  if (found.length === 0) {
    await write(process.stdout, 'No refused accesses.\n');
    return 0;
  }
  await write(process.stdout, table(['TIME', 'SANDBOX', 'KIND', 'TARGET', 'RULE'], found.map((item) => [item.time, item.sandbox, item.kind, item.target, item.rule])));
  return 0;
}

export async function transcript(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { help: { value: false, short: 'h' } }, 'brig transcript');
  const [name = ''] = operandsOf(parsed, ['NAME'], 'brig transcript');
  const sandbox = await findSandbox(daemon, name);
  const response = await daemon.send({ method: 'GET', path: `/v1/sandboxes/${segment(sandbox.id)}/transcript` });
  if ((response.statusCode ?? 0) >= 300) throw await daemon.failure(response);
  for await (const chunk of response) await write(process.stdout, chunk as Buffer);
  return 0;
}
