import { BrigError } from '../../protocol/index.ts';
import { loadPolicyFile, parseDurationMs, parseSizeMiB, type PolicyInput } from '../../policy/index.ts';
import type { Daemon } from './connection.ts';
import { json, operandsOf, parseMixed } from './output.ts';

export const CREATE_HELP = `Usage: brig create [flags]

Start a sandbox in the daemon and print its id. It runs brig's default policy
as E2B lays it out (user 'user', its own workspace as /home/user, no network)
until its timeout kills it.

  --name NAME          a name to use instead of the id (unique among running sandboxes)
  --profile AGENT      start from an agent profile (claude-code, opencode, …; brig agent ls)
  --image NAME         boot from an image of the daemon's store (brig image ls): its own
                       root filesystem, root inside (the daemon must run as root)
  --tier TIER          the isolation tier: jail or gvisor (default: the daemon's --tier;
                       brig tiers lists what runs on this host)
  --allow DEST         let its proxy reach DEST (example.com, *.example.com, host:443,
                       10.0.0.0/8); repeatable; turns network mode allowlist on
  --deny DEST          refuse DEST even when --allow matches (repeatable)
  --llm PROVIDER       reach anthropic, openai or gemini through the daemon's LLM gateway
  --policy FILE        a policy file (JSON or YAML) applied on top of the default
  --memory SIZE        memory for the whole sandbox, e.g. 512m, 4g (resources.memoryMiB)
  --cpus N             CPU quota in CPUs, fractions allowed (resources.cpus)
  --timeout DURATION   kill it after e.g. 30m, 8h (default: the daemon's, 5m; 0: never)
  --keep               keep its workspace when it ends, as \`brig stop\` does
  --agent-port [HOST:]PORT
                       publish an agent port on the host: each TCP connection gets a
                       fresh login shell in the sandbox, its output sent back
  --monitor-port [HOST:]PORT
                       publish a monitor port: lines sent to it are typed into one
                       persistent shell (\`echo make | nc localhost PORT\`), which
                       \`brig attach NAME\` shows
  --json               print the new sandbox as JSON

A port listens on 127.0.0.1 unless HOST says otherwise ([::1]:PORT for IPv6);
anyone who reaches it gets a shell in the sandbox, so another address needs a
policy with network.publish: all. Ports close when the sandbox ends.`;

const FLAGS = {
  name: { value: true },
  profile: { value: true },
  image: { value: true },
  tier: { value: true },
  allow: { value: true, repeat: true },
  deny: { value: true, repeat: true },
  llm: { value: true, repeat: true },
  policy: { value: true },
  memory: { value: true },
  cpus: { value: true },
  timeout: { value: true },
  keep: { value: false },
  'agent-port': { value: true },
  'monitor-port': { value: true },
  json: { value: false },
  help: { value: false, short: 'h' },
};

/** E2B's timeouts are int32 seconds: "never" is the largest of them (68 years). */
const NEVER_SECONDS = 2_147_483_647;

export async function create(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig create');
  const { flags } = parsed;
  operandsOf(parsed, [], 'brig create');
  const one = (name: string): string | undefined => flags.get(name)?.[0];

  // The file, then the flags on top: each flag is one policy field, as in `brig run`.
  const file = one('policy');
  let policy: PolicyInput | undefined = file === undefined ? undefined : await loadPolicyFile(file);
  const memory = one('memory');
  const cpus = one('cpus');
  if (memory !== undefined || cpus !== undefined) {
    policy = {
      ...policy,
      resources: {
        ...policy?.resources,
        ...(memory === undefined ? {} : { memoryMiB: parseSizeMiB(memory, '--memory') }),
        ...(cpus === undefined ? {} : { cpus: positive('--cpus', cpus) }),
      },
    };
  }
  const all = (name: string): string[] => flags.get(name) ?? [];
  const llm = all('llm').flatMap((entry) => entry.split(',')).filter(Boolean);
  if (all('allow').length + all('deny').length + llm.length > 0) {
    // The daemon checks each entry; here they only go into the policy, asking for allowlist mode.
    policy = {
      ...policy,
      network: {
        ...policy?.network,
        mode: 'allowlist',
        allow: [...(policy?.network?.allow ?? []), ...all('allow')],
        deny: [...(policy?.network?.deny ?? []), ...all('deny')],
        llm: [...(policy?.network?.llm ?? []), ...(llm as NonNullable<NonNullable<PolicyInput['network']>['llm']>)],
      },
    };
  }
  const timeout = one('timeout');
  const timeoutMs = timeout === undefined ? undefined : parseDurationMs(timeout, '--timeout');

  const created = await daemon.call<{ sandboxID: string; name: string | null; templateID: string; envdVersion: string }>('POST', '/v2/sandboxes', {
    name: one('name'),
    templateID: one('profile'),
    image: one('image'),
    tier: one('tier'),
    policy,
    keepWorkspace: flags.has('keep') ? true : undefined,
    // As given: the daemon checks them (the form, its policy's network.publish, whether the port is free).
    agentPort: one('agent-port'),
    monitorPort: one('monitor-port'),
    timeout: timeoutMs === undefined ? undefined : timeoutMs === 0 ? NEVER_SECONDS : Math.min(NEVER_SECONDS, Math.max(1, Math.ceil(timeoutMs / 1000))),
  });
  // The envd access token stays out of the output: the CLI fetches it when it needs it, and logs never hold it.
  const sandbox = { id: created.sandboxID, name: created.name ?? null, templateId: created.templateID, envdVersion: created.envdVersion };
  process.stdout.write(flags.has('json') ? json(sandbox) : `${sandbox.id}\n`);
  return 0;
}

function positive(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) throw new BrigError('BRIG_USAGE', `${flag} ${text}: expected a number above 0`, 'for example --cpus 0.5 or --cpus 4');
  return value;
}
