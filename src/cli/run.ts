import { randomBytes } from 'node:crypto';
import { constants, homedir } from 'node:os';
import { BrigError, describeMemoryEvent, type MemoryEvent } from '../protocol/index.ts';
import {
  DEFAULT_POLICY,
  allowHosts,
  denyHosts,
  llm,
  llmBudget,
  type LlmProvider,
  applyPolicyInput,
  compose,
  cpus,
  forwardEnv,
  hide,
  loadPolicyFile,
  memory,
  network,
  onTier,
  onOutOfMemory,
  parseDurationMs,
  parseSizeMiB,
  pids,
  readOnly,
  readWrite,
  imageEnvironment,
  resolvePolicy,
  setEnv,
  timeout,
  workspace,
  type Policy,
  type PolicyChange,
} from '../policy/index.ts';
import type { ImageConfig } from '../images/index.ts';
import { DEFAULT_TIER, planSandbox, usableDriver, type Driver, type ImageRoot, type RunEnd, type SandboxPlan } from '../drivers/index.ts';
import { parseArgs, type FlagSpec } from './args.ts';
import { loadBundle } from './bundles.ts';
import { runForeground } from './foreground.ts';

export const RUN_HELP = `Usage: brig run [flags] [--] <command> [args…]

Run one command in a jail: the current directory read-write, system
directories read-only, a private home and /tmp, no network, limits on.

Flags (each changes one field of the policy; see docs/policy.md):
  --rw DIR            bind DIR read-write (repeatable)
  --ro DIR            bind DIR read-only (repeatable)
  --hide PATH         make PATH invisible (repeatable)
  --env NAME[=VALUE]  forward NAME from your environment, or set it (repeatable)
  --net MODE          none (default); allowlist: only what --allow names, through
                      a proxy; host: the host's network, unfiltered
  --allow DEST        let the proxy reach DEST: example.com, *.example.com,
                      host:443, 10.0.0.0/8 (repeatable; implies --net allowlist)
  --deny DEST         refuse DEST even when --allow matches (repeatable)
  --llm PROVIDER      reach anthropic, openai or gemini through brig's LLM gateway,
                      which holds the key; the jail gets a placeholder (repeatable)
  --max-requests N    LLM requests the command may make (default: no limit)
  --max-tokens N      LLM tokens, input and output (default: no limit)
  --memory SIZE       memory for the whole jail, e.g. 512m, 4g (default 2g)
  --on-oom ACTION     at the memory limit: kill-process (default) kills the
                      largest process and the jail goes on; kill-sandbox ends it
  --cpus N            CPU quota in CPUs, fractions allowed (default 2)
  --pids N            processes and threads alive at once (default 512)
  --timeout DURATION  kill the jail after e.g. 30s, 10m, 2h (default: none)
  --workspace DIR     the read-write project directory (default: .)
  --tier TIER         the isolation tier: jail (default; namespaces on the host
                      kernel) or gvisor (a user-space kernel); brig tiers lists them
  --image NAME        the jail's root is this image's (brig image ls), copy-on-write,
                      root inside; its writes are dropped at the end. Needs root;
                      a built-in template (base) is built on first use
  --policy FILE       start from a policy file (JSON or YAML); flags apply on top
  --dry-run           print the plan (bwrap argv, syscall filter, limits) and exit
  --json              with --dry-run: print the plan as JSON
  -h, --help          this help

Exit codes: the command's own; 128+N when it died of signal N; 124 timeout;
125 brig failed (the message says why and how to fix it); 126 not executable;
127 not found; 137 killed at the memory limit (the command itself, or the
whole jail: resources.onOutOfMemory).`;

/** The flags that change a policy, shared by `brig run` and `brig agent`. */
export const POLICY_FLAGS: Record<string, FlagSpec> = {
  rw: { value: true, repeat: true },
  ro: { value: true, repeat: true },
  hide: { value: true, repeat: true },
  env: { value: true, repeat: true },
  net: { value: true },
  allow: { value: true, repeat: true },
  deny: { value: true, repeat: true },
  llm: { value: true, repeat: true },
  'max-requests': { value: true },
  'max-tokens': { value: true },
  memory: { value: true },
  'on-oom': { value: true },
  cpus: { value: true },
  pids: { value: true },
  timeout: { value: true },
  workspace: { value: true },
  tier: { value: true },
  policy: { value: true },
};

const FLAGS: Record<string, FlagSpec> = {
  ...POLICY_FLAGS,
  image: { value: true },
  'dry-run': { value: false },
  json: { value: false },
  help: { value: false, short: 'h' },
};

export interface RunContext {
  /** brig's files for the inside of a jail (dist/inside): the Node preload of allowlist jails. */
  insideDir: string;
}

export async function runCommand(argv: string[], context: RunContext): Promise<number> {
  const { flags, rest } = parseArgs(argv, FLAGS, 'brig run');
  if (flags.has('help')) {
    process.stdout.write(RUN_HELP + '\n');
    return 0;
  }
  const cwd = process.cwd();
  const home = process.env.HOME || homedir();
  let policy: Policy = DEFAULT_POLICY;
  const file = flags.get('policy')?.[0];
  if (file) policy = applyPolicyInput(policy, await loadPolicyFile(file), file);
  const image = flags.get('image')?.[0];
  if (image !== undefined) policy = applyPolicyInput(policy, { image }, '--image');
  policy = resolvePolicy(compose(...flagChanges(flags))(policy), { cwd, home });
  const options = { ...context, cwd, home, dryRun: flags.has('dry-run'), json: flags.has('json') };
  if (policy.image === null) return runPolicy(policy, rest, options);
  // The image store loads only for an image jail: brig run's own start stays as small as it was.
  const images = loadBundle('image') as typeof import('./image.ts');
  const resolved = policy;
  // As docker run: the image's ENV, and its USER unless the policy names one.
  const fromImage = (config: ImageConfig): Policy => {
    const withEnv = imageEnvironment(config.env)(resolved);
    return withEnv.identity.uid === null && withEnv.identity.user === null ? { ...withEnv, identity: { ...withEnv.identity, user: config.user } } : withEnv;
  };
  const { mapsIds } = usableDriver(resolved.tier ?? DEFAULT_TIER);
  return images.withRunImage(resolved.image ?? '', (image, config) => runPolicy(fromImage(config), rest, { ...options, image }), { ...context, templatesDir: `${__dirname}/templates`, mapsIds });
}

export interface RunOptions extends RunContext {
  cwd: string;
  home: string;
  dryRun: boolean;
  json: boolean;
  /** Called with the plan before the sandbox starts (brig agent prepares the agent's home for its user). */
  beforeStart?: (plan: SandboxPlan) => void;
  /** At the memory limit, never kill the command's own process, only what it started (brig agent: the agent lives on). */
  protectMain?: boolean;
  /** The jail's root is this image's (policy.image, resolved: cli/image-jail.ts). */
  image?: ImageRoot;
  /** The command's output, instead of brig's own stdio (a build step's). */
  output?: (chunk: Buffer) => void;
  /** Where the command starts inside an image jail (a build step's WORKDIR). */
  workdir?: string;
  /** Ends the jail when aborted (a build step stopped by its caller). */
  signal?: AbortSignal;
}

/** A resolved policy and a command: planned, then printed (dry run) or run by its tier's driver, in allowlist mode with its proxy and gateway. */
export async function runPolicy(resolved: Policy, command: string[], options: RunOptions): Promise<number> {
  // Asking for a tier that cannot run here is an error, never a weaker tier.
  const driver = usableDriver(resolved.tier ?? DEFAULT_TIER);
  const tty = !options.output && Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const id = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const host = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, home: options.home, cwd: options.cwd, env: process.env };
  // The egress room (proxy, gateway, the relay's path) loads only for allowlist jails: the others never pay for it.
  const egressRoom = resolved.network.mode === 'allowlist' ? (loadBundle('run-egress') as typeof import('./run-egress.ts')) : null;
  const allowlist = egressRoom?.prepareRunEgress(resolved, id, options.insideDir) ?? null;
  const policy = allowlist?.policy ?? resolved;
  const plan = planSandbox(policy, command, host, { tty, id, egress: allowlist?.bridge, image: options.image, cwd: options.workdir });
  if (options.dryRun) {
    process.stdout.write(options.json ? JSON.stringify(planSummary(plan, driver), null, 2) + '\n' : formatPlan(plan, driver));
    return 0;
  }
  options.beforeStart?.(plan);
  const memoryEvents: MemoryEvent[] = [];
  const run = async (): Promise<number> => {
    try {
      return exitCodeOf(await runForeground(driver, plan, { protectMain: options.protectMain ?? false, onMemoryEvent: (event) => memoryEvents.push(event), output: options.output, signal: options.signal }), plan);
    } finally {
      process.stderr.write(memorySummary(memoryEvents, plan));
    }
  };
  if (!egressRoom || !allowlist) return run();
  const session = await egressRoom.startRunEgress(plan, allowlist.bridge.socketDir);
  try {
    return await run();
  } finally {
    await session.close();
    process.stderr.write(session.summary());
  }
}

/** What was killed at the memory limit, for the end of the run. */
function memorySummary(events: MemoryEvent[], plan: SandboxPlan): string {
  const processKills = events.filter((event) => event.action === 'kill-process');
  if (processKills.length === 0) return '';
  const lines = processKills.map((event) => `  ${describeMemoryEvent(event)}`);
  return `brig: the sandbox reached its memory limit (${plan.policy.resources.memoryMiB} MiB) ${processKills.length} time${processKills.length === 1 ? '' : 's'}:\n${lines.join('\n')}\n  give it more with --memory (e.g. --memory 4g), or end the whole sandbox instead with resources.onOutOfMemory: kill-sandbox\n`;
}

export function flagChanges(flags: Map<string, string[]>): PolicyChange[] {
  const changes: PolicyChange[] = [];
  const all = (name: string): string[] => flags.get(name) ?? [];
  const one = (name: string): string | undefined => flags.get(name)?.[0];
  if (all('ro').length) changes.push(readOnly(...all('ro')));
  if (all('rw').length) changes.push(readWrite(...all('rw')));
  if (all('hide').length) changes.push(hide(...all('hide')));
  for (const entry of all('env')) {
    const equals = entry.indexOf('=');
    changes.push(equals === -1 ? forwardEnv(entry) : setEnv(entry.slice(0, equals), entry.slice(equals + 1)));
  }
  const net = one('net');
  if (net !== undefined) {
    if (net !== 'none' && net !== 'allowlist' && net !== 'host') throw new BrigError('BRIG_USAGE', `--net ${net}: expected none, allowlist or host`, 'use --net none (default), --net allowlist with --allow, or --net host');
    changes.push(network(net));
  }
  if (all('allow').length) changes.push(allowHosts(...all('allow')));
  if (all('deny').length) changes.push(denyHosts(...all('deny')));
  // Checked by the policy's schema, which names the providers it knows.
  const providers = all('llm').flatMap((entry) => entry.split(',')).filter(Boolean);
  if (providers.length) changes.push(llm(...(providers as LlmProvider[])));
  const maxRequests = one('max-requests');
  const maxTokens = one('max-tokens');
  if (maxRequests !== undefined || maxTokens !== undefined) {
    changes.push(llmBudget({ requests: maxRequests === undefined ? undefined : numberFlag('max-requests', maxRequests), tokens: maxTokens === undefined ? undefined : numberFlag('max-tokens', maxTokens) }));
  }
  const size = one('memory');
  if (size !== undefined) changes.push(memory(parseSizeMiB(size)));
  const oom = one('on-oom');
  if (oom !== undefined) {
    if (oom !== 'kill-process' && oom !== 'kill-sandbox') throw new BrigError('BRIG_USAGE', `--on-oom ${oom}: expected kill-process or kill-sandbox`, 'use --on-oom kill-process (the default: the largest process dies, the jail goes on) or --on-oom kill-sandbox');
    changes.push(onOutOfMemory(oom));
  }
  const cpuCount = one('cpus');
  if (cpuCount !== undefined) changes.push(cpus(numberFlag('cpus', cpuCount)));
  const pidCount = one('pids');
  if (pidCount !== undefined) changes.push(pids(numberFlag('pids', pidCount)));
  const limit = one('timeout');
  if (limit !== undefined) changes.push(timeout(parseDurationMs(limit)));
  const dir = one('workspace');
  if (dir !== undefined) changes.push(workspace(dir));
  const tier = one('tier');
  if (tier !== undefined) changes.push(onTier(tier));
  return changes;
}

function numberFlag(name: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new BrigError('BRIG_USAGE', `--${name} ${text}: not a number`, `give a number, e.g. --${name} 2`);
  return value;
}

function exitCodeOf(end: RunEnd, plan: SandboxPlan): number {
  switch (end.reason) {
    case 'exit':
      return end.exitCode;
    case 'signal':
      return 128 + constants.signals[end.signal];
    case 'oom':
      return report(
        new BrigError(
          'BRIG_OUT_OF_MEMORY',
          `the sandbox used all of its ${plan.policy.resources.memoryMiB} MiB of memory and was killed whole: ${plan.policy.resources.onOutOfMemory === 'kill-sandbox' ? 'resources.onOutOfMemory is kill-sandbox' : 'no process it could spare held that memory (files in its tmpfs count too)'}`,
          'give it more with --memory (e.g. --memory 4g) or resources.memoryMiB',
        ),
      );
    case 'timeout':
      return report(new BrigError('BRIG_TIMEOUT', `the command ran past its ${plan.policy.timeouts.runMs} ms timeout and the jail was killed`, 'raise --timeout, or set it to 0 for none'));
    case 'setup':
      return report(new BrigError(end.code, end.message, end.hint));
  }
}

function report(error: BrigError): number {
  process.stderr.write(error.format() + '\n');
  return error.exitCode;
}

function planSummary(plan: SandboxPlan, driver: Driver) {
  const { resources, timeouts, network: net } = plan.policy;
  return {
    policy: plan.policy.name,
    tier: driver.name,
    command: plan.command,
    cwd: plan.cwd,
    identity: { hostUid: plan.identity.hostUid, hostGid: plan.identity.hostGid, uid: plan.identity.uid, gid: plan.identity.gid, user: plan.identity.user, home: plan.identity.home },
    environment: plan.env,
    network: net.mode === 'allowlist' ? { mode: net.mode, allow: net.allow, deny: net.deny, llm: net.llm, budget: net.budget } : { mode: net.mode },
    mounts: plan.mounts,
    limits: {
      memoryMiB: resources.memoryMiB,
      cpus: resources.cpus,
      pids: resources.pids,
      openFiles: resources.openFiles,
      processes: resources.processes,
      maxFileSizeMiB: resources.maxFileSizeMiB,
      timeoutMs: timeouts.runMs,
    },
    cgroup: { version: plan.limits.cgroup.version, dirs: plan.limits.cgroup.dirs, writes: plan.limits.cgroup.writes },
    // The tier's own rendering: bubblewrap argv and seccomp program (jail), runsc argv and OCI spec (gvisor).
    ...driver.describe(plan).json,
  };
}

function formatNetwork(net: Policy['network']): string {
  if (net.mode !== 'allowlist') return net.mode;
  const list = (items: string[]) => (items.length ? items.join(' ') : 'nothing');
  const budget = [net.budget.requests && `${net.budget.requests} requests`, net.budget.tokens && `${net.budget.tokens} tokens`].filter(Boolean).join(', ');
  return `allowlist — allow ${list(net.allow)}; deny ${list(net.deny)}; LLM gateway ${list(net.llm)}${budget ? ` (budget ${budget})` : ''}`;
}

function formatPlan(plan: SandboxPlan, driver: Driver): string {
  const summary = planSummary(plan, driver);
  const limits = summary.limits;
  return [
    `policy: ${summary.policy}`,
    `tier: ${driver.name}`,
    `identity: uid ${summary.identity.uid} (${summary.identity.user}) inside, host uid ${summary.identity.hostUid}; home ${summary.identity.home}`,
    `network: ${formatNetwork(plan.policy.network)}`,
    `limits: memory ${limits.memoryMiB} MiB, cpus ${limits.cpus}, pids ${limits.pids}, nofile ${limits.openFiles.soft}/${limits.openFiles.hard}, ` +
      `nproc ${limits.processes.soft}/${limits.processes.hard}, fsize ${limits.maxFileSizeMiB} MiB, core 0, timeout ${limits.timeoutMs ? `${limits.timeoutMs} ms` : 'none'}`,
    `cgroup (${summary.cgroup.version}): ${summary.cgroup.dirs.join(' ')}`,
    `environment: ${Object.keys(summary.environment).sort().join(' ')}`,
    ...driver.describe(plan).lines,
    '',
  ].join('\n');
}
