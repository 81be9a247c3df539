import type { NetworkMode, Policy } from '../../policy/index.ts';
import type { CgroupPlan } from '../host/index.ts';

/**
 * The sandbox plan: what a Policy means for one sandbox, computed once and
 * the same for every tier. It is data (printable, comparable, testable);
 * each tier renders it into its own mechanism: bubblewrap argv (jail), an
 * OCI runtime spec (gVisor), a QEMU command line and guest init (vm).
 */
export interface SandboxPlan {
  /** Names the sandbox on the host (its cgroups `brig-<id>`, its records). */
  id: string;
  /** The resolved policy the plan was made from. */
  policy: Policy;
  /** The command run inside: the user's (brig run), or envd (a daemon sandbox). */
  command: string[];
  /** Mount steps in the order they are applied: parents before children, masks after what they cover. */
  mounts: MountStep[];
  identity: SandboxIdentity;
  /** The command's whole environment (built from nothing, never filtered down from the host's). */
  env: Record<string, string>;
  /** Where the command starts, inside. */
  cwd: string;
  hostname: string;
  network: { mode: NetworkMode; bridge: BridgePlan | null };
  limits: { cgroup: CgroupPlan; rlimits: Rlimit[] };
  /** The policy's syscall filter (each tier enforces it its own way: docs/tiers.md). */
  syscalls: { extraDeny: string[]; logOnly: boolean };
  /** Capabilities the command keeps inside its own namespace (root in an image sandbox); none otherwise. */
  capabilities: string[];
  /** The command gets a terminal of its own (the caller hands its slave as stdio). */
  tty: boolean;
  /** A daemon sandbox: it outlives the process that started it. Otherwise it dies with it. */
  outlivesParent: boolean;
  /** The root filesystem is an image's (layers under a copy-on-write upper), not the host's view. */
  image: ImageRoot | null;
}

/**
 * One mount step. Every host path a step names has been checked when the
 * plan was made; `source` paths of 'bind' steps are opened again at launch
 * without following any link (host/sources.ts), so a planted link cannot
 * redirect them.
 */
export type MountStep =
  /** A host file or directory at `target`: read-only unless `writable`. `field` names where the policy asked for it (for errors). */
  | { kind: 'bind'; source: string; target: string; writable: boolean; field: string }
  /** The image sandbox's workspace: bound so the sandbox's user writes it as its host owner would (jail: an id-mapped bind). */
  | { kind: 'mapped-bind'; source: string; target: string; field: string }
  /** The host's symbolic link at `target`, recreated as the same link (a merged-/usr system's /bin → usr/bin). */
  | { kind: 'symlink'; target: string; linkTo: string }
  /** The sandbox's own /proc and /dev. */
  | { kind: 'proc'; target: '/proc' }
  | { kind: 'dev'; target: '/dev' }
  /** A kernel knob under /proc made read-only (a tier whose /proc is its own may have nothing to do). */
  | { kind: 'proc-readonly'; target: string }
  /** A fresh, empty, private filesystem in memory, capped at sizeBytes. */
  | { kind: 'tmpfs'; target: string; sizeBytes: number; mode: number }
  /** An existing path made invisible: an empty read-only directory, or an empty file. `proc`: it lies in /proc. */
  | { kind: 'mask'; target: string; type: 'dir' | 'file'; proc: boolean }
  /** A read-only file holding `data` (the sandbox's /etc/passwd, hostname, hosts). */
  | { kind: 'file'; target: string; data: string; mode: number };

/**
 * Who the sandbox is, outside and inside. Outside, it never acts as host root
 * when that can be avoided (drivers/plan/identity.ts says how).
 */
export interface SandboxIdentity {
  /** Host uid/gid the sandbox's processes run as (its uid seen from outside). */
  hostUid: number;
  hostGid: number;
  /** Whether the launcher must drop to hostUid/hostGid when starting the tier. */
  dropPrivileges: boolean;
  /** uid/gid inside. */
  uid: number;
  gid: number;
  user: string;
  home: string;
  /** The login shell. */
  shell: string;
  /** /etc/passwd and /etc/group as the sandbox sees them (empty for an image, which keeps its own). */
  passwd: string;
  group: string;
}

/** The egress bridge in allowlist mode: the host's socket directory, seen inside, and the relay that listens on loopback. */
export interface BridgePlan {
  /** Host directory where the host side listens on EGRESS_SOCKET_NAME. */
  socketDir: string;
  /** Host directory of the Node preload that makes fetch use the proxy (dist/inside). */
  nodeDir: string;
  /** The host's brig-relay binary. */
  relay: string;
  /** Put before the command: the relay listens on 127.0.0.1:EGRESS_PORT, then execs the rest. */
  prefix: string[];
  /** Where the three appear inside (read-only binds). */
  mounts: Array<{ source: string; target: string }>;
}

export interface Rlimit {
  name: 'NOFILE' | 'NPROC' | 'CORE' | 'FSIZE';
  soft: number;
  hard: number;
}

/** An image root: what a tier needs to build the sandbox's root filesystem from an image. */
export interface ImageRoot {
  /** Read-only layer directories, lowest first (the image store's). */
  layers: string[];
  /** A directory of the sandbox's own on the host, for the tier's mount points. */
  dir: string;
  /** Where the sandbox's writes go (upper/ and work/ for overlayfs). */
  rwDir: string;
  /** The host id that uid and gid 0 inside map to, and how many ids it has. */
  idBase: number;
  idCount: number;
}
