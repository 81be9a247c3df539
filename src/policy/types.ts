/**
 * The Policy: the one description of a jail, whatever tier runs it.
 * Grouped by DESIGN.md's sections; units are in the names. Host paths are
 * absolute once a policy is resolved (see resolve.ts); a tier that cannot
 * honour a field refuses the policy rather than quietly meaning something else.
 */

export interface Policy {
  /** A short name, for profiles and for `brig run --dry-run`. */
  name: string;
  /** What this policy opens and why, in a sentence or two. */
  description: string;
  /**
   * The image whose root filesystem the jail gets (`NAME` or `NAME:TAG` from
   * brig's image store), copy-on-write and with root inside; null: the
   * host's own view (system directories read-only).
   */
  image: string | null;
  /**
   * The isolation tier that runs it (`brig tiers` lists them: jail, gvisor);
   * null: the caller's default (brig run: jail; a daemon: its --tier).
   */
  tier: string | null;
  filesystem: FilesystemPolicy;
  /** Host commands made available inside, by name (looked up on the host PATH) or absolute path. */
  tools: string[];
  environment: EnvironmentPolicy;
  network: NetworkPolicy;
  identity: IdentityPolicy;
  resources: ResourcesPolicy;
  syscalls: SyscallPolicy;
  timeouts: TimeoutPolicy;
}

export interface FilesystemPolicy {
  /**
   * The project directory: bound read-write at its own path and the working
   * directory of the command. "." means the directory brig was started in
   * (in a policy file: the file's directory); null means no workspace (the
   * command starts in the private home).
   */
  workspace: string | null;
  /**
   * Where the workspace appears inside the jail; null: at its own host path.
   * E2B-style sandboxes put it at /home/user, the user's home.
   */
  workspaceTarget: string | null;
  /**
   * A host directory shown read-write as the jail's home and kept between runs
   * (an agent's private config and state); null: a fresh private tmpfs each run.
   * Never the caller's real home, nor a directory holding it.
   */
  home: string | null;
  /** System directories bound read-only at their own paths when they exist on the host. */
  system: string[];
  /** Further host paths bound read-only at their own paths; each must exist. */
  readOnly: string[];
  /** Further host paths bound read-write at their own paths; each must exist. */
  readWrite: string[];
  /** Paths that get a fresh, private, writable tmpfs (the default /tmp). */
  tmpfs: string[];
  /** Paths made invisible inside: a directory shows empty, a file shows as an empty file. */
  hidden: string[];
  /** Size cap of each tmpfs, the private home included (tmpfs pages also count as jail memory). */
  tmpfsSizeMiB: number;
}

export interface EnvironmentPolicy {
  /** Host variables passed in by name when set on the host; everything else is scrubbed. */
  forward: string[];
  /** Variables set inside, after forwarding (a set value wins). */
  set: Record<string, string>;
}

export type NetworkMode = 'none' | 'allowlist' | 'host';

/** Where a daemon sandbox's ports (its agent and monitor ports) may listen on the host. */
export type PublishScope = 'none' | 'loopback' | 'all';

/** The model APIs the LLM gateway serves. */
export type LlmProvider = 'anthropic' | 'openai' | 'gemini';

export interface NetworkPolicy {
  /**
   * none: only a private loopback. allowlist: only a loopback, with a proxy on
   * it that reaches what `allow` names and the LLM gateway. host: the host's
   * network, unfiltered.
   */
  mode: NetworkMode;
  /** allowlist mode: destinations the proxy reaches (`example.com`, `*.example.com`, `host:443`, `10.0.0.0/8`). */
  allow: string[];
  /** allowlist mode: destinations refused even when `allow` matches; checked first. */
  deny: string[];
  /** allowlist mode: the LLM providers reachable through the gateway, which holds their keys. */
  llm: LlmProvider[];
  /** What the sandbox may spend through the gateway; 0 means no limit. */
  budget: LlmBudget;
  /**
   * Daemon sandboxes: where its published ports (brig create --agent-port,
   * --monitor-port) may listen on the host. none: nowhere. loopback: only on
   * a loopback address (127.0.0.0/8, ::1). all: on any address of the host.
   */
  publish: PublishScope;
}

export interface LlmBudget {
  requests: number;
  tokens: number;
}

export interface IdentityPolicy {
  /** uid inside the jail; null means the caller's. */
  uid: number | null;
  /** gid inside the jail; null means the caller's. */
  gid: number | null;
  /** Hostname inside the jail. */
  hostname: string;
  /** User name inside the jail; null: the host's name for the uid. */
  user: string | null;
  /**
   * The home directory inside the jail; null: the caller's home path. A private
   * tmpfs, unless it is the workspace's place inside: then the workspace is the home.
   */
  home: string | null;
}

/** What brig does when a jail reaches its memory limit (docs/jail.md, "Out of memory"). */
export type OutOfMemoryAction = 'kill-process' | 'kill-sandbox';

export interface SoftHard {
  soft: number;
  hard: number;
}

export interface ResourcesPolicy {
  /** Memory for the whole jail (page cache and tmpfs included); onOutOfMemory says what happens at it. */
  memoryMiB: number;
  /** At the memory limit: kill the largest process and let the jail live on (kill-process), or end the whole jail (kill-sandbox). */
  onOutOfMemory: OutOfMemoryAction;
  /** CPU time as a number of CPUs (a quota, fractions allowed). */
  cpus: number;
  /** Tasks (processes and threads) alive at once in the jail. */
  pids: number;
  /** RLIMIT_NOFILE: open files per process. */
  openFiles: SoftHard;
  /** RLIMIT_NPROC: processes per user. */
  processes: SoftHard;
  /** RLIMIT_FSIZE: the largest file a process may write. */
  maxFileSizeMiB: number;
  /** A daemon sandbox's workspace as a filesystem of this size (a quota on what it can write); null: none. */
  diskMiB: number | null;
}

export interface SyscallPolicy {
  /** Syscall names denied on top of brig's default deny list. */
  extraDeny: string[];
  /** Log what the filter would deny (to the kernel audit log) instead of denying it: for tuning only. */
  logOnly: boolean;
}

export interface TimeoutPolicy {
  /** Wall-clock limit of the command in milliseconds; 0 means none. */
  runMs: number;
  /** A daemon sandbox whose commands show no output and use no CPU for this long is hung; 0 means never. */
  hungMs: number;
  /** What a hung sandbox gets: an event only (flag), or killed too. */
  onHung: 'flag' | 'kill';
}

/** A partial policy, as a config file or a set of flags gives it: every field optional, deeply. */
export type PolicyInput = {
  [K in keyof Policy]?: Policy[K] extends string[] ? string[] : Policy[K] extends object ? Partial<{ [F in keyof Policy[K]]: Policy[K][F] extends SoftHard | LlmBudget ? Partial<Policy[K][F]> : Policy[K][F] }> : Policy[K];
};
