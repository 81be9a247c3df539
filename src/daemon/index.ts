/**
 * daemon/: `brig serve`. Sandboxes (a jail with envd inside each) behind
 * E2B's control plane and an envd gateway, recorded in SQLite so a restarted
 * daemon reattaches them. Rooms: api/ (HTTP), sandboxes/ (lifecycle, no
 * HTTP), jobs/ (seed 003's queue), store/ (persistence), ports/ (a
 * sandbox's agent and monitor ports on the host).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { BrigError, apiKeyFile, defaultStateDir, llmKeyFile } from '../protocol/index.ts';
import { createGateway, loadGatewayConfig } from '../egress/index.ts';
import { listAgents } from '../agents/index.ts';
import { homedir } from 'node:os';
import { DEFAULT_TIER, usableDriver } from '../drivers/index.ts';
import { buildApi, type ConnectionLimits } from './api/index.ts';
import { createSandboxManager, type Budgets } from './sandboxes/index.ts';
import { openImageStore } from '../images/index.ts';
import { openSqliteStore } from './store/index.ts';
import { createJobQueue } from './jobs/index.ts';
import { ActivityBoard, EventLog, DEFAULT_TRANSCRIPT_LIMITS, Transcripts, type TranscriptLimits } from './timeline/index.ts';
import { daemonMetrics } from './metrics/index.ts';
import { claimStateDir, type StateDirClaim } from './state-dir.ts';
import { PortPublisher } from './ports/index.ts';

export interface DaemonOptions {
  /** Default 127.0.0.1: the daemon is local unless asked otherwise. */
  host?: string;
  /** Default 3000 (DEFAULT_DAEMON_URL's; E2B_DEBUG's control-plane port); 0 picks a free one. */
  port?: number;
  /** Default /var/lib/brig for root, $XDG_STATE_HOME/brig or ~/.local/state/brig otherwise. */
  stateDir?: string;
  /** Default: BRIG_API_KEY, else the key file in stateDir, else a new one written there (0600). */
  apiKey?: string;
  /** The envd bundle sandboxes run (default: envd.cjs beside this bundle). */
  envdBundle: string;
  /** brig's files for Node programs inside allowlist sandboxes (dist/inside). */
  insideDir: string;
  /** Sandboxes kept booted so a create returns at once. Default 2. */
  poolSize?: number;
  /** What all sandboxes may commit together (docs/daemon.md, "Limits"); each absent one from the host. */
  budgets?: Partial<Budgets>;
  /** Caps on client connections; each absent one from the daemon's descriptor limit. */
  connections?: Partial<ConnectionLimits>;
  /** The tier sandboxes get unless their create or policy names one (default: jail). Checked at start: one that cannot run here stops it. */
  tier?: string;
  /** Jobs (POST /schedule) running at once. Default 4. */
  jobs?: number;
  /** How long an ended job's result and artifacts are kept, in ms. Default 7 days. */
  jobRetentionMs?: number;
  /** Each sandbox's transcript: its cap in bytes (default 32 MiB), and how long it is kept after the sandbox ended (default 7 days). */
  transcripts?: Partial<TranscriptLimits>;
  /** The domain of sandboxes' host names, `<port>-<id>.<domain>` (host or host:port); default localhost:<the daemon's port>. */
  domain?: string;
}

export interface Daemon {
  url: string;
  apiKey: string;
  /** True when this start generated the API key (show it once). */
  apiKeyCreated: boolean;
  stateDir: string;
  /** Stops serving; sandboxes keep running and are reattached by the next daemon. */
  close(): Promise<void>;
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const stateDir = options.stateDir ?? defaultStateDir();
  // Before anything reads the store: a second daemon on the same directory stops here.
  const claim = claimStateDir(stateDir);
  try {
    return await serve(stateDir, claim, options);
  } catch (error) {
    claim.release();
    throw error;
  }
}

async function serve(stateDir: string, claim: StateDirClaim, options: DaemonOptions): Promise<Daemon> {
  // A default tier that cannot run would fail every create: say so now, before anything listens.
  usableDriver(options.tier ?? DEFAULT_TIER);
  const { apiKey, created } = apiKeyFor(stateDir, options.apiKey ?? process.env.BRIG_API_KEY);
  const store = openSqliteStore(`${stateDir}/brig.db`);
  const events = new EventLog(store);
  const activity = new ActivityBoard();
  const transcripts = new Transcripts(`${stateDir}/transcripts`, { ...DEFAULT_TRANSCRIPT_LIMITS, ...options.transcripts }, () => new Set(store.all().filter((record) => record.state !== 'stopped').map((record) => record.id)));
  const stopTranscribingEvents = events.follow((event) => transcripts.event(event));
  // Model keys from the daemon's environment or its key file; a bad key file stops the start, loudly.
  const gateway = createGateway(loadGatewayConfig(process.env, llmKeyFile(stateDir)));
  // Sandboxes' agent and monitor ports (brig create --agent-port, --monitor-port).
  const ports = new PortPublisher({ recorder: transcripts });
  const manager = await createSandboxManager({
    stateDir,
    store,
    tier: options.tier ?? DEFAULT_TIER,
    envdBundle: options.envdBundle,
    poolSize: options.poolSize ?? 2,
    egress: { gateway, nodeDir: options.insideDir },
    agents: await listAgents(process.env, process.env.HOME || homedir()),
    budgets: options.budgets,
    // Image sandboxes map id ranges and mount layers: only a daemon running as root boots them.
    images: process.getuid?.() === 0 ? await openImageStore(`${stateDir}/images`) : undefined,
    events,
    activity,
    transcripts,
    ports,
  });
  const jobs = await createJobQueue({ store, manager, stateDir, events, recorder: transcripts, tsRunner: `${options.insideDir}/ts-run.cjs`, ...(options.jobs !== undefined ? { concurrency: options.jobs } : {}), ...(options.jobRetentionMs !== undefined ? { retentionMs: options.jobRetentionMs } : {}) });
  const metrics = daemonMetrics({ events, store, manager });
  // Known once listening (port 0 picks one): until then no request can arrive.
  let domain = options.domain ?? 'localhost';
  const app = buildApi(manager, { apiKey, connections: options.connections, jobs, events, activity, metrics, transcripts, ports, sandboxDomain: () => domain });
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 3000;
  let url: string;
  try {
    url = await app.listen({ host, port });
    if (options.domain === undefined) domain = `localhost:${new URL(url).port || 80}`;
  } catch (error) {
    await jobs.close();
    await ports.shutdown();
    await manager.close();
    stopTranscribingEvents();
    transcripts.close();
    gateway.close();
    throw new BrigError('BRIG_USAGE', `cannot listen on ${host}:${port}: ${(error as Error).message}`, 'pick another --port or --host, or stop what already listens there');
  }
  claim.listening(url);
  return {
    url,
    apiKey,
    apiKeyCreated: created,
    stateDir,
    async close() {
      await app.close();
      metrics.close();
      // Running jobs are let go of, not stopped: the next daemon reattaches them.
      await jobs.close();
      // Its ports stop listening (the next daemon listens again); their monitor shells run on with their sandboxes.
      await ports.shutdown();
      await manager.close();
      stopTranscribingEvents();
      transcripts.close();
      gateway.close();
      claim.release();
    },
  };
}

/** The key every control-plane call needs: given, or kept in the state directory (0600), or made now. */
function apiKeyFor(stateDir: string, given: string | undefined): { apiKey: string; created: boolean } {
  if (given) return { apiKey: given, created: false };
  const file = apiKeyFile(stateDir);
  if (existsSync(file)) return { apiKey: readFileSync(file, 'utf8').trim(), created: false };
  const apiKey = `brig_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, apiKey + '\n', { mode: 0o600, flag: 'wx' });
  return { apiKey, created: true };
}
