import type { SandboxSample } from './samples.ts';
import type { NetworkRules, Spent, Violation } from '../../egress/index.ts';
import type { NetworkPolicy, Policy, PolicyInput } from '../../policy/index.ts';
import type { SandboxHandle, SandboxUsage } from '../../drivers/index.ts';
import type { MemoryEvent } from '../../protocol/index.ts';
import type { EnvdEndpoint } from './envd-client.ts';

/**
 * The daemon's sandboxes: what is stored about each (a record), and what
 * the API and the CLI may ask of them (the manager). The manager never sees
 * HTTP; the API never sees a driver.
 */

/** pooled: booted in the warm pool, not yet handed out (never listed, never found by id). */
export type SandboxState = 'pooled' | 'creating' | 'running' | 'stopped';

export interface SandboxRecord {
  /** E2B-style id: lower-case letters and digits. */
  id: string;
  /** A name the CLI can use instead of the id; unique among sandboxes not stopped. */
  name: string | null;
  /** E2B's templateID; brig maps it to a policy profile ("base" is the default policy). */
  templateId: string;
  metadata: Record<string, string>;
  /** Variables set in every command's environment (E2B's envVars). */
  envVars: Record<string, string>;
  /** The resolved policy the sandbox runs under. */
  policy: Policy;
  state: SandboxState;
  /** RFC 3339. */
  startedAt: string;
  /** RFC 3339: when the sandbox's timeout kills it; setTimeout and connect move it. */
  endAt: string;
  /** Keep the workspace directory when the sandbox is killed. */
  keepWorkspace: boolean;
  /** What envd inside demands (X-Access-Token); handed to the creator only. */
  envdAccessToken: string;
  /** The host directory mounted at /home/user. */
  workspace: string;
  /** The driver's handle, once booted: JSON, so a restarted daemon can reattach. */
  handle: SandboxHandle | null;
  /** Why it stopped when nobody stopped it (it died, its tier says how; its memory limit ended it); absent otherwise. */
  endReason?: string;
  /** Its ports published on the host (brig create --agent-port, --monitor-port), kept so a restarted daemon listens again; absent when none. */
  ports?: PublishedPorts;
}

/** An address on the host a sandbox's port listens on. */
export interface PortAddress {
  /** An IPv4 or IPv6 literal. */
  host: string;
  /** 1 to 65535. */
  port: number;
}

/** agent: each connection a fresh shell in the sandbox; monitor: lines into its one persistent shell. */
export type PortKind = 'agent' | 'monitor';

export type PublishedPorts = Partial<Record<PortKind, PortAddress>>;

/** What listens for a sandbox now. */
export interface PortStatus extends PortAddress {
  kind: PortKind;
  listening: boolean;
  /** Why it does not listen (taken by another program when a restarted daemon tried again). */
  error?: string;
}

/**
 * What publishes sandboxes' ports on the host (daemon/ports), as the manager
 * drives it: opened before a sandbox boots, so a refused or taken port
 * leaves no sandbox behind; served once it runs; closed when it ends.
 */
export interface SandboxPorts {
  /**
   * Refuses what the policy's network.publish does not allow
   * (BRIG_PORT_NOT_ALLOWED) and binds the listeners (BRIG_PORT_IN_USE);
   * connections wait until `serve`. On a throw nothing stays bound.
   */
  open(id: string, ports: PublishedPorts, policy: Policy): Promise<void>;
  /** The sandbox runs: its ports are served, reaching its envd through `endpoint` (asked at each use: it throws once the sandbox is gone). */
  serve(id: string, endpoint: () => EnvdEndpoint): void;
  /** A sandbox a restarted daemon reattached: listened on and served again; a port that cannot be is reported by `status`, never thrown. */
  reopen(id: string, ports: PublishedPorts, policy: Policy, endpoint: () => EnvdEndpoint): Promise<void>;
  /** The sandbox ends: its listeners and connections closed, the shells of its agent port killed. Nothing to close is no error. */
  close(id: string): Promise<void>;
  status(id: string): PortStatus[];
}

export interface ListQuery {
  /** Only sandboxes whose metadata has all of these key/value pairs. */
  metadata?: Record<string, string>;
  /** Only these states; absent or empty: every state. */
  states?: SandboxState[];
  limit: number;
  /** The cursor a previous page returned. */
  after?: string;
}

export interface Page<T> {
  items: T[];
  /** Pass as `after` for the next page; null on the last. */
  next: string | null;
}

/**
 * Where sandboxes are written down, before any side effect (DESIGN: nothing
 * lost). SQLite by default. insert and update throw BRIG_NAME_TAKEN when a
 * name clashes with a sandbox that is not stopped; update throws
 * BRIG_SANDBOX_NOT_FOUND for an unknown id. Records are ordered by the
 * instant of startedAt (written with toISOString()).
 */
export interface Store {
  insert(record: SandboxRecord): void;
  /** Replace the fields given; the id stays. */
  update(id: string, patch: Partial<Omit<SandboxRecord, 'id'>>): void;
  get(id: string): SandboxRecord | null;
  /** The sandbox with that name that is not stopped. */
  findByName(name: string): SandboxRecord | null;
  /** Oldest first (by startedAt, then id), paged by cursor. */
  list(query: ListQuery): Page<SandboxRecord>;
  /** Every record, for reconciliation after a restart. */
  all(): SandboxRecord[];
  /** Removes the record and everything kept for it (violations, spend). */
  remove(id: string): void;
  addViolation(violation: Violation): void;
  /** The newest `limit` violations of one sandbox (or of all, for null), oldest first. */
  violations(sandbox: string | null, limit: number): Violation[];
  /** What the sandbox spent through the LLM gateway; zeros when nothing. */
  spent(sandbox: string): Spent;
  charge(sandbox: string, delta: Spent): void;
  /** What every sandbox the store still holds spent through the LLM gateway, together. */
  spentTotal(): Spent;
  /** The host uid recorded for the sandbox, or null. */
  hostId(sandbox: string): number | null;
  /**
   * The sandbox's host uid: the one recorded, else the one `pick` chooses
   * given the ids every other sandbox holds, recorded at once (atomically).
   * Freed by remove().
   */
  claimHostId(sandbox: string, pick: (taken: ReadonlySet<number>) => number): number;
  close(): void;
}

export interface CreateSandboxRequest {
  templateId?: string;
  /** An image of the daemon's store to boot from (NAME or NAME:TAG); by default the template's, when an image has its name. */
  image?: string;
  /** The isolation tier (brig tiers); by default the policy's, else the daemon's --tier. */
  tier?: string;
  /** Default 300 000 (E2B's 300 s). */
  timeoutMs?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  name?: string;
  /** A brig policy on top of the template's (brig's extension to E2B's fields). */
  policy?: PolicyInput;
  keepWorkspace?: boolean;
  /** E2B's allow_internet_access: true asks for the host network. */
  allowInternetAccess?: boolean;
  /** Ports to publish on the host (brig's extension), already parsed. */
  ports?: PublishedPorts;
}

export interface SandboxStats extends SandboxUsage {
  /** Bytes used by the workspace directory. */
  diskBytes: number;
}

/** Something Sandbox.create (a templateID) can name: an image of the store, 'base' as the host view, an agent profile. */
export interface TemplateInfo {
  /** What a create takes: an image's NAME:TAG, 'base', or a profile's name. */
  id: string;
  /** Other names it answers to: an image tagged latest by its bare name, a profile's aliases. */
  aliases: string[];
  kind: 'image' | 'host' | 'profile';
  /** RFC 3339, when the image was tagged; null for the host view and profiles. */
  created: string | null;
  /** Bytes of an image's layers; 0 for the others. */
  sizeBytes: number;
  /** An image's labels (a snapshot's `brig.snapshot.sandbox` names the sandbox it came from). */
  labels: Record<string, string>;
}

/** A commit's outcome: the new image and what the store refused of the sandbox's writes. */
export interface CommittedImage {
  /** NAME:TAG. */
  ref: string;
  layers: string[];
  /** Entries of the sandbox's writes not kept as they were (devices dropped, set-id bits cleared). */
  dropped: Array<{ path: string; why: string }>;
}

export interface SandboxManager {
  /** Boots a sandbox with envd inside; resolves when envd answers. */
  create(request: CreateSandboxRequest): Promise<SandboxRecord>;
  /** By id or name; throws BRIG_SANDBOX_NOT_FOUND. */
  get(idOrName: string): SandboxRecord;
  list(query: ListQuery): Page<SandboxRecord>;
  /** Kill it and remove what it held (the workspace too, unless kept or `keepWorkspace`). */
  kill(idOrName: string, options?: { removeWorkspace?: boolean }): Promise<void>;
  /** Every sandbox, stopped ones (kept workspaces) included, oldest first. */
  listAll(): SandboxRecord[];
  /** By id or name, stopped ones too; throws BRIG_SANDBOX_NOT_FOUND. */
  lookup(idOrName: string): SandboxRecord;
  /** Remove a sandbox, running or stopped: kill it if it runs; `data` also deletes its workspace. */
  remove(idOrName: string, options: { data: boolean }): Promise<void>;
  /** Remove stopped sandboxes started more than `olderThanMs` ago, their workspaces included. Returns their ids. */
  prune(olderThanMs: number): Promise<string[]>;
  /** The warm pool: how many sandboxes are booted and waiting, booting, and wanted. */
  pool(): { ready: number; booting: number; size: number };
  /** The sandbox now ends `timeoutMs` from now. */
  setTimeout(idOrName: string, timeoutMs: number): SandboxRecord;
  /** Where its envd listens and the token it demands: for the gateway. */
  endpoint(idOrName: string): { socketPath: string; accessToken: string };
  stats(idOrName: string): Promise<SandboxStats>;
  /** Its CPU, memory and disk over the last hour (a sample every 5 s), between two instants in seconds since the epoch: E2B's getMetrics. */
  metrics(idOrName: string, startUnix?: number, endUnix?: number): SandboxSample[];
  /** envd's log inside the sandbox's state directory. */
  logs(idOrName: string): string;
  /** The network policy in force (rules as last changed). */
  network(idOrName: string): NetworkPolicy;
  /** Replace an allowlist sandbox's allow and deny lists, live: the next connection sees them. */
  setNetworkRules(idOrName: string, rules: NetworkRules): NetworkPolicy;
  /** The newest `limit` refused accesses of one sandbox (stopped ones too), or of all for null; oldest first. */
  violations(idOrName: string | null, limit: number): Violation[];
  /** A refused access observed outside egress (envd refused a file operation inside the jail). */
  recordViolation(violation: Violation): void;
  /** What it spent through the LLM gateway. */
  llmUsage(idOrName: string): Spent;
  /** The newest `limit` decisions at its memory limit (stopped sandboxes too), oldest first. */
  memoryEvents(idOrName: string, limit: number): MemoryEvent[];
  /** The file of its gateway transcript (JSON lines), or null before its first exchange. */
  transcript(idOrName: string): string | null;
  /**
   * A running image sandbox's root as a new image NAME[:TAG]: the layers it
   * booted from plus one of its writes, the config of its image. It keeps
   * running (a consistent copy is the caller's concern). BRIG_COMMIT_UNSUPPORTED
   * for a host-view sandbox.
   */
  commit(idOrName: string, ref: string, options?: { labels?: Record<string, string> }): Promise<CommittedImage>;
  /** What a create can name: the store's images, 'base' (the host view until an image 'base' exists), the agent profiles. */
  templates(): Promise<TemplateInfo[]>;
  /** Removes an image's name and tag from the store (its layers stay until `brig image prune`); BRIG_IMAGE_NOT_FOUND when none. */
  removeImage(ref: string): Promise<void>;
  /** Stop timers and close the store; sandboxes keep running, to be reattached by the next daemon. */
  close(): Promise<void>;
}
