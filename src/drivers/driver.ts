import type { ErrorCode, MemoryEvent } from '../protocol/index.ts';
import type { Policy } from '../policy/index.ts';
import type { SandboxPlan } from './plan/index.ts';

/**
 * The Driver contract (DESIGN.md): the only way into an isolation tier. A
 * driver renders the tier-neutral plan (plan/) into its mechanism and either
 * runs one command in the foreground (brig run: the caller owns the
 * terminal, signals, exit codes and summary), or boots a sandbox with envd
 * running inside as its main process, hands back where envd listens,
 * reports usage and stops it. Drivers know nothing of HTTP, the store or the
 * CLI; a handle is plain JSON, so whoever stores it can reattach after a
 * restart. Drivers sit in the registry (registry.ts) by tier name.
 */

export interface SandboxSpec {
  /** Names the sandbox on the host: `[a-z0-9-]`, at most 64 characters. */
  id: string;
  /** A resolved policy (resolvePolicy): absolute paths, defaults filled in. */
  policy: Policy;
  /** A host directory of the sandbox's own: envd's socket and log. Created by boot, removed by stop. */
  stateDir: string;
  envd: {
    /** The host's envd bundle (dist/envd.cjs). */
    bundle: string;
    /** What every envd call must carry (X-Access-Token). */
    accessToken: string;
    /**
     * envd's listening unix socket, bound by the caller in a directory the
     * sandbox never sees (so nothing inside can replace what the caller
     * connects to). The driver hands `fd` to envd and closes it, booted or
     * not; the handle's endpoint is `path`.
     */
    socket: { path: string; fd: number };
  };
  /**
   * Required when the policy's network mode is allowlist: the host directory
   * where the sandbox's egress socket (EGRESS_SOCKET_NAME) listens, which the
   * driver makes reachable inside at 127.0.0.1:EGRESS_PORT; brig's files for
   * Node programs inside (dist/inside); the relay program a tier may run
   * inside to make the bridge (brig-relay, native/spawn/relay.c).
   */
  egress?: { socketDir: string; nodeDir: string; relay: string };
  /**
   * Called before anything is started on the host, and again once the
   * sandbox's first process is known, with a handle (`booting`; pid 0 until
   * then) stop() can undo the boot with. A caller that writes it down can
   * stop a sandbox whose boot it never saw finish (it was killed mid-create).
   */
  persist?: (handle: SandboxHandle) => void;
  /**
   * The root filesystem, when the policy names an image: its layers
   * (read-only directories, lowest first, never written), where the
   * sandbox's own writes go (rwDir: an empty directory of the caller's, on
   * the layers' filesystem), and the host ids its ids 0 … idCount-1 map to.
   */
  image?: SandboxImage;
}

export interface SandboxImage {
  layers: string[];
  rwDir: string;
  idBase: number;
  idCount: number;
}

export type Endpoint = { socketPath: string };

export interface SandboxHandle {
  id: string;
  driver: string;
  endpoint: Endpoint;
  /** The sandbox's first process (envd's parent, pid 1 inside), and its start time: pids are reused. */
  pid: number;
  pidStart: string;
  /** Whatever else the driver needs to stop the sandbox, as JSON. */
  detail: Record<string, unknown>;
  stateDir: string;
  /** Set on the handles persist() is given: the boot has not finished, so the sandbox is to be stopped, never adopted. */
  booting?: true;
}

/** gone only when known to be: a check that failed says unknown, and whoever destroys on gone keeps an unknown sandbox. */
export type Liveness = 'alive' | 'gone' | 'unknown';

export interface SandboxUsage {
  /** Memory charged to the sandbox, page cache and tmpfs included. */
  memoryBytes: number;
  /** Tasks (processes and threads) alive in it. */
  pids: number;
  /** CPU time used by everything that ever ran in it, in microseconds. */
  cpuUsec: number;
  /** Of memoryBytes, the page cache (file pages), where the cgroup says. */
  memoryCacheBytes?: number;
}

/** How a foreground run ended. */
export type RunEnd =
  | { reason: 'exit'; exitCode: number }
  /** The memory limit ended the whole sandbox. */
  | { reason: 'oom' }
  | { reason: 'timeout' }
  /** The caller ended it (RunIo.signal), with this signal as the reason. */
  | { reason: 'signal'; signal: NodeJS.Signals }
  /** The tier could not build the sandbox; its own message went to stderr, `message` says what failed, `code` and `hint` are the tier's. */
  | { reason: 'setup'; code: ErrorCode; message: string; hint: string };

export type RunStdio = 'inherit' | 'ignore' | number;

export interface RunIo {
  /** The command's stdin, stdout and stderr: the caller's own, /dev/null, or a descriptor (a terminal's slave, when plan.tty). */
  stdio: [RunStdio, RunStdio, RunStdio];
  /** Instead of stdio 1 and 2: the command's output as it comes. */
  output?: (chunk: Buffer) => void;
  /** Called once the command's process exists: a caller that handed over a terminal's slave closes its copy then. */
  started?: () => void;
  /** Aborting ends the sandbox; the end reports the abort's reason when it is a signal name, SIGTERM otherwise. */
  signal?: AbortSignal;
  /** At the memory limit, never kill the command's own process, only what it started (brig agent: the agent lives on). */
  protectMain?: boolean;
  /** Each decision at the memory limit, as it is made. */
  onMemoryEvent?: (event: MemoryEvent) => void;
}

/** Whether a tier works on this host, and if not, why and what fixes it. */
export interface TierStatus {
  available: boolean;
  /** What it runs on (e.g. runsc's version and platform), or why it cannot. */
  detail: string;
  /** The command or step that makes it available. */
  fix?: string;
  /** The error a request for it gets (default BRIG_TIER_UNAVAILABLE): the jail's missing bubblewrap keeps its own code. */
  code?: ErrorCode;
}

export interface Driver {
  readonly name: string;
  /** What the tier defends against, in a line (brig tiers). */
  readonly summary: string;
  /**
   * Whether the sandbox's ids are mapped onto host ids of the caller's
   * choosing (a user namespace: the jail). Without (gVisor), a file the
   * sandbox writes in a bind belongs on the host to its uid inside, so a
   * caller that wants the workspace's files to be its host owner's runs the
   * sandbox's user as that uid.
   */
  readonly mapsIds: boolean;
  /** Checked on this host now: the package, device or kernel feature it needs. */
  status(): TierStatus;
  /**
   * Fetch and build now what this tier's first sandbox would otherwise wait
   * for (the VM's guest kernel and initramfs), telling `say` each slow step;
   * resolves to lines saying what is ready. Tiers with nothing to prepare
   * leave it out. `brig tiers prepare`.
   */
  prepare?(say: (line: string) => void): Promise<string[]>;
  /** The plan as this tier renders it, for --dry-run: lines for people, and JSON. */
  describe(plan: SandboxPlan): { lines: string[]; json: Record<string, unknown> };
  /** Run plan.command in the foreground, attached to io, and report how it ended; everything it started is gone when this resolves. */
  run(plan: SandboxPlan, io: RunIo): Promise<RunEnd>;
  /** Start the sandbox; resolves once envd answers on the endpoint. */
  boot(spec: SandboxSpec): Promise<SandboxHandle>;
  /**
   * Whether the sandbox is still running (also after the booting process
   * restarted). 'unknown' when it could not be checked (the host is out of
   * file descriptors, /proc unreadable): never a reason to destroy it.
   */
  liveness(handle: SandboxHandle): Liveness;
  /**
   * Why a sandbox found gone ended, when the tier can tell (the VM's guest
   * hung or panicked, QEMU failed): a line for its record. Asked before stop,
   * which removes what it would read.
   */
  whyGone?(handle: SandboxHandle): string | null;
  usage(handle: SandboxHandle): SandboxUsage;
  /**
   * Resolve the sandbox's out-of-memory as its policy says (resources.onOutOfMemory:
   * kill its largest process, never envd; or kill it whole) and report each
   * decision. Call again after a restart; close() stops watching, nothing else.
   */
  watchMemory(handle: SandboxHandle, onEvent: (event: MemoryEvent) => void): { close(): void };
  /** Kill everything in it and remove what it held on the host. Safe to call twice. */
  stop(handle: SandboxHandle): Promise<void>;
}

/** The signal a run's end reports for an abort: the one the caller aborted with (the CLI passes the signal it got), SIGTERM for any other reason. */
function abortSignal(reason: unknown): NodeJS.Signals {
  return typeof reason === 'string' && /^SIG[A-Z0-9]+$/.test(reason) ? (reason as NodeJS.Signals) : 'SIGTERM';
}

/**
 * A foreground run's two ends that come from outside it, each told to `end`:
 * the policy's timeout (runMs; 0 for none) and the caller's abort. Returns
 * what stops watching them.
 */
export function watchTimeoutAndAbort(runMs: number, signal: AbortSignal | undefined, end: (end: RunEnd) => void): () => void {
  const timeout = runMs > 0 ? setTimeout(() => end({ reason: 'timeout' }), runMs) : null;
  const onAbort = (): void => end({ reason: 'signal', signal: abortSignal(signal?.reason) });
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort);
  return () => {
    signal?.removeEventListener('abort', onAbort);
    if (timeout) clearTimeout(timeout);
  };
}
