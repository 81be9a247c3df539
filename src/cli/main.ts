import { closeSync, openSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { BrigError, EXIT, defaultStateDir, isBrigError } from '../protocol/index.ts';
import { runCommand } from './run.ts';
import { loadBundle } from './bundles.ts';
import { parseArgs } from './args.ts';
import { driverFor, tierStatuses, usableDriver } from '../drivers/index.ts';
import { parseDurationMs } from '../policy/index.ts';

const HELP = `brig — put AI coding agents, and every command they run, in a jail.

Usage:
  brig run [flags] [--] <command> [args…]   run one command in a jail (brig run --help)
  brig agent NAME [-p PROMPT] [flags]        run an agent CLI (claude, opencode, gemini, codex,
                                             crush, yours) jailed, its key kept outside (brig agent --help)
  brig serve [--host H] [--port P] [--state DIR] [--pool N]   the daemon: sandboxes behind E2B's API
  brig envd [--listen ADDRESS]               run envd UNJAILED, for development (brig envd --help)
  brig image build|ls|inspect|rm|prune|import|export   the image store (brig image --help)
  brig tiers [--json]                        the isolation tiers, and which run on this host
  brig tiers prepare [TIER…]                 fetch and build what a tier needs (the vm tier's kernel) now
  brig --version

Sandboxes in a running daemon (brig COMMAND --help for each):
  brig create [--name N] [--image NAME] [--policy FILE] [--memory SIZE] [--cpus N] [--timeout D] [--keep]
              [--agent-port [HOST:]PORT] [--monitor-port [HOST:]PORT]   ports on the host: shells in it
  brig ls [--all]                            list them (stopped ones too with --all)
  brig exec [-i] NAME -- <command> [args…]  run a command in one, its exit code passed through
  brig shell NAME                            a terminal in one
  brig attach [--watch] [--pid PID] NAME     watch (and type into) its monitor shell or a terminal; Ctrl-\\ detaches
  brig logs [-f] [--tail N] NAME             its timeline: commands, output, model exchanges, events
  brig cp SRC DST                            copy files in or out (NAME:PATH is the sandbox side)
  brig stop NAME…                            kill, keep the workspace
  brig commit NAME IMAGE[:TAG]               its root (an image sandbox's) as a new image
  brig rm [--data] NAME…                     remove (--data: the workspace too)
  brig prune [--older-than 7d]               remove stopped ones and their workspaces
  brig stats [NAME]                          memory, tasks, disk (and CPU when reported)
  brig info NAME                             everything about one, its policy included
  brig net NAME [--allow D] [--deny D]       show or change live what its proxy lets through
  brig violations [NAME]                     refused connections and LLM requests
  brig transcript NAME                       its LLM gateway exchanges, as JSON lines
  brig events [-f] [--type T] [--sandbox N]  what happened: created, killed, died, oom, commands, jobs…
  --json on each (but shell and attach) prints JSON for scripts.

Jobs in a running daemon: code run once in a fresh sandbox, its result kept (docs/jobs.md):
  brig schedule [--kind K] [--wait] FILE|-   queue code (its kind from .sh, .py, .ts; --kind gui for an xdotool script); print its id
  brig status [-f] ID                        its state and output (-f: follow it to the end)
  brig jobs [--state S] [--limit N]          list them, newest first
  brig cancel ID                             end a queued or running one

Docs: README.md, docs/policy.md, docs/jail.md, docs/images.md, docs/errors.md`;

const VERSION = '0.1.0';

const ENVD_HELP = `Usage: brig envd [--listen HOST:PORT | --listen unix:/path]

!!! envd started this way is NOT JAILED. !!!
Anyone who can reach its address can run any command and read or write any
file as you. It is for developing against the envd protocol (the e2b SDK with
E2B_DEBUG=true talks to 127.0.0.1:49983). Sandboxes run envd inside their
jail; \`brig run\` never does this.

  --listen ADDRESS   where to listen (default 127.0.0.1:49983)
  BRIG_ENVD_ACCESS_TOKEN in the environment makes every call need that token.`;

const SERVE_HELP = `Usage: brig serve [--host HOST] [--port PORT] [--state DIR] [flags]

The daemon: creates, tracks and destroys sandboxes (a jail with envd inside
each) behind E2B's control plane and an envd gateway, so the e2b SDK works
against it with E2B_API_URL and E2B_SANDBOX_URL set to its address.

  --host HOST   where to listen (default 127.0.0.1)
  --port PORT   (default 3000)
  --state DIR   sandboxes, the SQLite store and the API key
                (default /var/lib/brig as root, ~/.local/state/brig otherwise)
  --pool N      sandboxes kept booted so a create returns at once (default 2)
  --domain D    sandboxes' ports are <port>-<id>.D (sandbox.getHost(port)); default
                localhost:PORT, which browsers resolve to this host
  --tier TIER   the tier sandboxes get unless their create or policy names one:
                jail (default) or gvisor; brig tiers says which run here
  --build-base  build the base image (brig image build base) in the background if
                it is not built yet: templateID 'base' then boots from it, with
                root inside (as root only; until then 'base' is the host view)
  BRIG_API_KEY  sets the API key; otherwise one is made at first start (0600).

Jobs (POST /schedule, brig schedule; docs/jobs.md):
  --jobs N                   jobs running at once, 1 to 1000 (default 4)
  --job-retention DURATION   how long an ended job's result and artifacts are kept,
                             e.g. 7d, 12h (default 7d)

Transcripts (brig logs, GET /v1/sandboxes/{id}/timeline; docs/observability.md):
  --transcript-max SIZE             what one sandbox's transcript may hold: 64k to 1g
                                    (default 32m; past it output goes unrecorded, marked so);
                                    0 records no transcripts
  --transcript-retention DURATION   how long a transcript is kept after its sandbox
                                    ended, e.g. 7d, 12h (default 7d)

Budgets: what all sandboxes may commit together (the pool's included); a
create that would pass one is refused with 503 BRIG_CAPACITY.
  --max-sandboxes N     sandboxes at once (default 100)
  --max-tasks N         the sum of their resources.pids (default: half the kernel's pid_max/threads-max)
  --max-open-files N    the sum of resources.pids × openFiles.hard (default: 8 × fs.file-max)
  --max-memory-mib N    the sum of resources.memoryMiB (default: 2 × the host's RAM)
Connections (default from the daemon's descriptor limit: a quarter of it, half that per client):
  --max-connections N             client connections held at once
  --max-connections-per-client N  from one address`;

async function serveCommand(argv: string[]): Promise<number> {
  const { flags, rest } = parseArgs(
    argv,
    {
      host: { value: true },
      port: { value: true },
      state: { value: true },
      pool: { value: true },
      'max-sandboxes': { value: true },
      'max-tasks': { value: true },
      'max-open-files': { value: true },
      'max-memory-mib': { value: true },
      'max-connections': { value: true },
      'max-connections-per-client': { value: true },
      'build-base': { value: false },
      tier: { value: true },
      domain: { value: true },
      jobs: { value: true },
      'job-retention': { value: true },
      'transcript-max': { value: true },
      'transcript-retention': { value: true },
      help: { value: false, short: 'h' },
    },
    'brig serve',
  );
  if (flags.has('help')) {
    process.stdout.write(SERVE_HELP + '\n');
    return 0;
  }
  if (rest.length > 0) throw new BrigError('BRIG_USAGE', `brig serve takes no arguments, got '${rest[0]}'`, 'see `brig serve --help`');
  const whole = (name: string, max: number, min = 0): number | undefined => {
    const text = flags.get(name)?.[0];
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text) || Number(text) > max || Number(text) < min) throw new BrigError('BRIG_USAGE', `--${name} ${text}: expected a whole number ${min > 0 ? `from ${min} to` : 'up to'} ${max}`, 'see `brig serve --help`');
    return Number(text);
  };
  const jobRetentionMs = retention(flags.get('job-retention')?.[0], '--job-retention', 'ended jobs');
  const transcriptRetentionMs = retention(flags.get('transcript-retention')?.[0], '--transcript-retention', 'transcripts');
  const daemon = loadBundle('daemon') as { main(options: Record<string, unknown>): Promise<void> };
  const budgets = { sandboxes: whole('max-sandboxes', 1_000_000), tasks: whole('max-tasks', 2 ** 32), openFiles: whole('max-open-files', 2 ** 52), memoryMiB: whole('max-memory-mib', 2 ** 40) };
  const connections = { maxConnections: whole('max-connections', 1_048_576), maxPerClient: whole('max-connections-per-client', 1_048_576) };
  await daemon.main({
    host: flags.get('host')?.[0],
    port: whole('port', 65535),
    stateDir: flags.get('state')?.[0],
    poolSize: whole('pool', 1000),
    budgets: definedOnly(budgets),
    connections: definedOnly(connections),
    tier: flags.get('tier')?.[0],
    domain: sandboxDomain(flags.get('domain')?.[0]),
    jobs: whole('jobs', 1000, 1),
    jobRetentionMs,
    transcripts: definedOnly({ maxBytes: transcriptMax(flags.get('transcript-max')?.[0]), retentionMs: transcriptRetentionMs }),
  });
  if (flags.has('build-base')) buildBaseInBackground(flags.get('state')?.[0] ?? defaultStateDir());
  return new Promise<number>(() => {});
}

/**
 * `brig serve --build-base`: the base image built beside the serving daemon
 * (by `brig image build base`, a process of its own; all cache hits when it
 * is there already). Creates of 'base' get it from the first one after it is
 * tagged; until then they get the host view.
 */
function buildBaseInBackground(stateDir: string): void {
  const log = `${stateDir}/build-base.log`;
  const out = openSync(log, 'a', 0o600);
  const child = spawn(process.execPath, [__filename, 'image', 'build', 'base', '--state', stateDir], { stdio: ['ignore', out, out] });
  closeSync(out);
  process.stdout.write(`building the base image in the background (log: ${log}); 'base' is the host view until it is tagged\n`);
  child.on('exit', (code) => process.stdout.write(code === 0 ? 'the base image is built: creates of base now boot from it\n' : `building the base image failed (exit ${code}): see ${log}\n`));
}

/** --domain: a host name, optionally with a port, as a Host header carries it. */
function sandboxDomain(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/i.test(text)) throw new BrigError('BRIG_USAGE', `--domain ${text}: expected a host name, optionally with :PORT`, 'for example --domain localhost:3000, or --domain sandboxes.example.com behind a proxy that sends *.sandboxes.example.com here');
  return text.toLowerCase();
}

/** --job-retention, --transcript-retention: a duration; 0 (elsewhere "no limit") is refused, as the daemon would drop each as it ends. */
function retention(text: string | undefined, flag: string, what: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDurationMs(text, flag);
  if (ms < 1000) throw new BrigError('BRIG_USAGE', `${flag} ${text}: ${what} must be kept at least 1s`, 'for example 7d (the default), 12h or 30m');
  return ms;
}

const BYTES_PER_UNIT: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** --transcript-max: 64k to 1g (below that the cap would cut the small entries that say what happened), or 0 for none. */
function transcriptMax(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (text.trim() === '0') return 0;
  const match = /^(\d{1,10})([kmg])i?b?$/i.exec(text.trim());
  const bytes = match ? Number(match[1]) * (BYTES_PER_UNIT[(match[2] ?? '').toLowerCase()] ?? Number.NaN) : Number.NaN;
  if (!(bytes >= 64 * 1024 && bytes <= 1024 ** 3)) throw new BrigError('BRIG_USAGE', `--transcript-max ${text}: expected a size from 64k to 1g, or 0`, 'a number and a unit: 64k, 32m (the default), 1g; 0 records no transcripts');
  return bytes;
}

/** The fields that were given: an absent flag leaves the daemon's default. */
function definedOnly<T extends Record<string, number | undefined>>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** brig tiers: each tier, what it defends against, and whether it runs here (and if not, what fixes it). */
const TIERS_HELP = `Usage: brig tiers [--json]
       brig tiers prepare [TIER…]

The isolation tiers (brig run --tier, brig create --tier, brig serve --tier),
what each defends against, and whether it runs on this host. docs/tiers.md
says when to pick which.

prepare fetches and builds now what a tier's first sandbox would otherwise
wait for (the vm tier: its guest kernel from Debian's mirror, newer if apt's
lists name one, and its initramfs; and whether KVM works here). Without a
TIER, every tier that runs here and has something to prepare.`;

async function tiersCommand(argv: string[]): Promise<number> {
  const { flags, rest } = parseArgs(argv, { json: { value: false }, help: { value: false, short: 'h' } }, 'brig tiers');
  if (flags.has('help')) {
    process.stdout.write(TIERS_HELP + '\n');
    return 0;
  }
  const [action, ...names] = rest;
  if (action === 'prepare') return prepareTiers(names);
  if (action !== undefined) throw new BrigError('BRIG_USAGE', `brig tiers: unknown action '${action}'`, 'use `brig tiers` or `brig tiers prepare [TIER…]`');
  const tiers = tierStatuses();
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify(tiers.map(({ tier, summary, status }) => ({ tier, summary, ...status })), null, 2) + '\n');
    return 0;
  }
  for (const { tier, summary, status } of tiers) {
    process.stdout.write(`${tier.padEnd(8)} ${status.available ? 'available  ' : 'unavailable'}  ${summary}\n${' '.repeat(8)} ${status.detail}\n${status.fix && !status.available ? `${' '.repeat(8)} fix: ${status.fix}\n` : ''}`);
  }
  return 0;
}

/** Each named tier (it must run here), or every tier that runs here, prepared in turn. */
async function prepareTiers(names: string[]): Promise<number> {
  const drivers = names.length > 0 ? names.map((name) => usableDriver(name)) : tierStatuses().filter(({ status }) => status.available).map(({ tier }) => driverFor(tier));
  for (const driver of drivers) {
    if (!driver.prepare) {
      if (names.length > 0) process.stdout.write(`${driver.name}: nothing to prepare\n`);
      continue;
    }
    const lines = await driver.prepare((line) => process.stderr.write(`brig: ${line}\n`));
    process.stdout.write(lines.map((line) => `${driver.name}: ${line}\n`).join(''));
  }
  return 0;
}

/** The sandbox commands over a daemon: their own bundle (dist/client.cjs), so \`brig run\` never pays for loading it. */
const CLIENT_COMMANDS = new Set(['create', 'ls', 'exec', 'shell', 'attach', 'logs', 'cp', 'stop', 'commit', 'rm', 'prune', 'stats', 'info', 'net', 'violations', 'transcript', 'schedule', 'status', 'jobs', 'cancel', 'events']);

function clientCommand(argv: string[]): Promise<number> {
  const client = loadBundle('client') as { main(argv: string[]): Promise<number> };
  return client.main(argv);
}

/** brig envd: envd unjailed, for development. */
async function envdCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(ENVD_HELP + '\n');
    return 0;
  }
  process.stderr.write('brig envd: WARNING: envd runs unjailed here; whoever reaches it acts as you (see brig envd --help)\n');
  const envd = loadBundle('envd') as { main(argv: string[]): Promise<void> };
  await envd.main(argv);
  return new Promise<number>(() => {});
}

async function main(argv: string[]): Promise<number> {
  // Put back what bin/brig kept aside to spare Node's start-up (see there).
  if (process.env.BRIG_NODE_EXTRA_CA_CERTS !== undefined) {
    process.env.NODE_EXTRA_CA_CERTS = process.env.BRIG_NODE_EXTRA_CA_CERTS;
    delete process.env.BRIG_NODE_EXTRA_CA_CERTS;
  }
  const [command, ...rest] = argv;
  if (command !== undefined && CLIENT_COMMANDS.has(command)) return clientCommand(argv);
  switch (command) {
    case 'run':
      return runCommand(rest, { insideDir: `${__dirname}/inside` });
    case 'agent':
      // Loaded only for this command: profiles, the agents file, locating CLIs.
      return (loadBundle('agent') as typeof import('./agent.ts')).agentCommand(rest, { insideDir: `${__dirname}/inside` });
    case 'envd':
      return envdCommand(rest);
    case 'serve':
      return serveCommand(rest);
    case 'tiers':
      return tiersCommand(rest);
    case 'image':
      // Loaded only for this command: the image store and its archive formats.
      return (loadBundle('image') as typeof import('./image.ts')).imageCommand(rest, { insideDir: `${__dirname}/inside`, templatesDir: `${__dirname}/templates` });
    case '--version':
    case '-V':
      process.stdout.write(`brig ${VERSION}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP + '\n');
      return command === undefined ? EXIT.brigError : 0;
    default:
      throw new BrigError('BRIG_USAGE', `unknown command '${command}'`, 'see `brig --help`');
  }
}

// Should the event loop ever run dry before main settles (a promise nothing will resolve: a bug), brig
// must not end with 0 as if the command had succeeded.
process.exitCode = EXIT.brigError;
process.once('beforeExit', () => {
  if (!settled) process.stderr.write('brig: internal error: brig ran out of work before the command ended\n  hint: this is a bug in brig; please report it with the command you ran\n');
});
let settled = false;
main(process.argv.slice(2)).finally(() => (settled = true)).then(
  (code) => exit(code),
  (error: unknown) => {
    if (isBrigError(error)) {
      process.stderr.write(error.format() + '\n');
      exit(error.exitCode);
    } else {
      process.stderr.write(`brig: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n  hint: this is a bug in brig; please report it with the command you ran\n`);
      exit(EXIT.brigError);
    }
  },
);

/** Exit once stdout and stderr are flushed (they may be pipes). */
function exit(code: number): void {
  process.exitCode = code;
  let pending = 2;
  const done = (): void => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}
