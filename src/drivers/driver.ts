import type { MemoryEvent } from '../protocol/index.ts';
import type { Policy } from '../policy/index.ts';

/**
 * The Driver contract (DESIGN.md): an isolation tier boots a sandbox with
 * envd running inside as its main process, hands back where envd listens,
 * reports usage and stops it. Drivers know nothing of HTTP, the store or the
 * CLI; a handle is plain JSON, so whoever stores it can reattach after a
 * restart.
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
}

export interface Driver {
  readonly name: string;
  /** Start the sandbox; resolves once envd answers on the endpoint. */
  boot(spec: SandboxSpec): Promise<SandboxHandle>;
  /**
   * Whether the sandbox is still running (also after the booting process
   * restarted). 'unknown' when it could not be checked (the host is out of
   * file descriptors, /proc unreadable): never a reason to destroy it.
   */
  liveness(handle: SandboxHandle): Liveness;
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
