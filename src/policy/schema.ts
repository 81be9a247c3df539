import { DEFAULT_POLICY, deepFreeze } from './defaults.ts';

/**
 * The one schema of a policy *input*: a config file, a set of flags, a
 * combinator's argument. Every field is optional (what is missing comes from the
 * policy it is applied to) and unknown keys are refused everywhere. Defaults are
 * read from DEFAULT_POLICY, never retyped. validate.ts walks this object;
 * scripts/write-policy-schema.ts publishes it as docs/policy.schema.json and
 * renders the field tables of docs/policy.md from it.
 *
 * Beside the standard keywords, `errorMessage` (understood by editors such as
 * VS Code) gives the "must be …" phrase a person reads when a value is refused.
 */

export interface SchemaNode {
  $ref?: string;
  type?: JsonType | JsonType[];
  description?: string;
  default?: unknown;
  errorMessage?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: false | SchemaNode;
  propertyNames?: SchemaNode;
  items?: SchemaNode;
  enum?: readonly unknown[];
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}

export type JsonType = 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean' | 'null';

export interface RootSchema extends SchemaNode {
  $schema: string;
  title: string;
  $defs: Record<string, SchemaNode>;
}

const D = DEFAULT_POLICY;

// Absolute; or ~ / ~/… (home); or . ./… ../… (the file's directory, or the cwd
// for flags). "~user" and bare relative names like "src" are refused: each path
// has exactly one reading.
const PATH_PATTERN = '^(/|~(/|$)|\\.\\.?(/|$))[^\\u0000]*$';
const PATH_PHRASE = 'a path (absolute, or starting with ~ or .)';
const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';
// RFC 1123 labels; the kernel keeps at most 64 bytes of hostname.
const HOSTNAME_PATTERN = '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$';
// A name (optionally *.), an IPv4 address or range, or an IPv6 one (bracketed when it carries a port); an optional :port.
const DESTINATION_PATTERN = '^((\\*\\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?|[0-9.]+/[0-9]{1,2}|\\[[0-9A-Fa-f:.]+\\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?)(:[0-9]{1,5})?$';
// setrlimit refuses more than fs.nr_open, whose default is 1048576.
const NR_OPEN = 1048576;
// The kernel never has more tasks than its largest pid_max (2^22).
const PID_MAX = 4194304;
/** 2^30 MiB (1 PiB): far above any host, yet memoryMiB * 2^20 stays an exact integer the cgroup accepts. */
const MEMORY_MAX_MIB = 1073741824;
/** 2^33 MiB (2^53 bytes): the largest size a JavaScript number holds exactly. */
const FILE_SIZE_MAX_MIB = 8589934592;
/** Linux's largest NR_CPUS. */
const CPUS_MAX = 8192;
// (uid_t)-1 means "no change" to the kernel, so the last usable id is 2^32 - 2.
const MAX_ID = 4294967294;
/** The largest workspace image: 16 TiB, ext4's limit for a 4 KiB block size. */
const MAX_DISK_MIB = 16 * 1024 * 1024;

const ref = (name: string, description: string, defaultValue: unknown): SchemaNode => ({
  $ref: `#/$defs/${name}`,
  description,
  default: defaultValue,
});

interface Range {
  minimum: number;
  maximum: number;
  /** Why the range is what it is, for the description. */
  why: string;
}

function softHard(what: string, range: Range, value: { soft: number; hard: number }): SchemaNode {
  const limit = (role: string, defaultValue: number): SchemaNode => ({
    type: 'integer',
    minimum: range.minimum,
    maximum: range.maximum,
    description: `${role} ${range.why}`,
    default: defaultValue,
  });
  return {
    type: 'object',
    additionalProperties: false,
    description: `${what} soft must not exceed hard.`,
    default: value,
    properties: {
      soft: limit('The limit a process starts with.', value.soft),
      hard: limit('The most a process may raise its own soft limit to.', value.hard),
    },
  };
}

const section = (description: string, properties: Record<string, SchemaNode>): SchemaNode => ({
  type: 'object',
  additionalProperties: false,
  description,
  properties,
});

export const POLICY_SCHEMA: RootSchema = deepFreeze({
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'brig policy',
  description:
    'A brig policy file: what a jailed command may see and use. Every field is optional; what is left out keeps its default, and the defaults deny. See docs/policy.md.',
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: {
      type: 'string',
      description: 'The schema this file follows, for editors (for example "./policy.schema.json"); brig ignores it.',
    },
    name: {
      type: 'string',
      pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$',
      errorMessage: 'must be a short name (letters, digits, . _ -, at most 64)',
      description: 'A short name for the policy, shown by `brig run --dry-run` and used to pick a profile.',
      default: D.name,
    },
    description: {
      type: 'string',
      description: 'What this policy opens and why, in a sentence or two, so a reviewer can judge it without reading every field.',
      default: D.description,
    },
    filesystem: section('What the jail sees of the host\'s files: nothing is visible unless listed here.', {
      workspace: {
        type: ['string', 'null'],
        minLength: 1,
        pattern: PATH_PATTERN,
        errorMessage: `must be ${PATH_PHRASE}, or null`,
        description:
          'The project directory, bound read-write at its own path and the working directory of the command. "." is the directory brig started in (in a file: the file\'s directory); null means no workspace, the command starts in the private home.',
        default: D.filesystem.workspace,
      },
      workspaceTarget: {
        type: ['string', 'null'],
        pattern: '^/[^\\u0000]*$',
        errorMessage: 'must be an absolute path inside the jail, or null',
        description:
          'Where the workspace appears inside the jail; null means at its own host path. A sandbox for code written for E2B puts it at /home/user, with identity.home the same.',
        default: D.filesystem.workspaceTarget,
      },
      home: {
        type: ['string', 'null'],
        pattern: PATH_PATTERN,
        errorMessage: `must be ${PATH_PHRASE}, or null`,
        description:
          'A host directory shown read-write as the jail\'s home ($HOME) and kept between runs, for an agent\'s own config and state; null: a fresh private tmpfs each run. It may not be your real home or hold it: brig agent keeps one per agent under its state directory.',
        default: D.filesystem.home,
      },
      system: ref('paths', 'System directories bound read-only at their own paths when they exist on the host: the programs and libraries commands need. Secrets under /etc are masked whatever this says (docs/jail.md).', D.filesystem.system),
      readOnly: ref('paths', 'Further host paths bound read-only at their own paths, for what the command must read but never change (a shared cache, a toolchain). Each must exist.', D.filesystem.readOnly),
      readWrite: ref('paths', 'Further host paths bound read-write at their own paths. Each one widens what a command can damage, so keep the list short. Each must exist.', D.filesystem.readWrite),
      tmpfs: ref('paths', 'Paths that get a fresh, private, writable tmpfs, gone when the jail ends: scratch space that never touches the host.', D.filesystem.tmpfs),
      hidden: ref('paths', 'Paths made invisible inside (a directory shows empty, a file shows as an empty file): for secrets inside a bound directory, such as a project\'s .env.', D.filesystem.hidden),
      tmpfsSizeMiB: {
        type: 'integer',
        minimum: 1,
        maximum: MEMORY_MAX_MIB,
        description: `Size cap of each tmpfs in MiB, the private home included. tmpfs pages count as jail memory, so scratch files are also bounded by memoryMiB. At most ${MEMORY_MAX_MIB} (1 PiB).`,
        default: D.filesystem.tmpfsSizeMiB,
      },
    }),
    image: {
      type: ['string', 'null'],
      maxLength: 384,
      pattern: '^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$',
      errorMessage: 'must be an image reference, NAME or NAME:TAG (brig image ls lists them), or null',
      description: 'The image whose root filesystem the jail gets, from brig\'s image store (NAME or NAME:TAG): copy-on-write, its writes its own, root inside mapped to unprivileged host ids. null: the host\'s own view, system directories read-only. Needs brig to run as root (the daemon).',
      default: D.image,
    },
    tier: {
      type: ['string', 'null'],
      maxLength: 32,
      pattern: '^[a-z][a-z0-9-]*$',
      errorMessage: 'must be a tier name (brig tiers lists them: jail, gvisor), or null',
      description: 'The isolation tier that runs the sandbox: jail (namespaces, seccomp and cgroups on the host kernel) or gvisor (a user-space kernel, runsc). null: the caller\'s default (brig run: jail; a daemon: its --tier). A tier that cannot run on the host is an error, never a fallback.',
      default: D.tier,
    },
    tools: {
      type: 'array',
      errorMessage: 'must be a list of command names or absolute paths',
      items: {
        type: 'string',
        pattern: '^(/[^\\u0000]*|[A-Za-z0-9_+][A-Za-z0-9._+-]*)$',
        errorMessage: 'must be a command name (like git) or an absolute path',
      },
      description: 'Host commands made available inside, by name (looked up on the host PATH) or absolute path, with the shared libraries they link that the jail would not see: tools that live outside the system directories, such as a node installed under ~/.nvm. An absolute directory brings a whole tree (its bin/ goes on PATH).',
      default: D.tools,
    },
    environment: section('The variables the command sees. The host environment is scrubbed; only what is listed here gets in.', {
      forward: {
        type: 'array',
        errorMessage: 'must be a list of variable names',
        items: { $ref: '#/$defs/envName' },
        description: 'Host variables passed in by name when they are set on the host. Everything else is scrubbed, because environments carry tokens and keys.',
        default: D.environment.forward,
      },
      set: {
        type: 'object',
        errorMessage: 'must be a mapping of variable names to string values',
        propertyNames: { $ref: '#/$defs/envName' },
        additionalProperties: {
          type: 'string',
          pattern: '^[^\\u0000]*$',
          errorMessage: 'must be a string (quote numbers and booleans in YAML)',
        },
        description: 'Variables set inside, after forwarding: a value set here wins over a forwarded one.',
        default: D.environment.set,
      },
    }),
    network: section('Whether the command can reach a network, and what of it.', {
      mode: {
        type: 'string',
        enum: ['none', 'allowlist', 'host'],
        description:
          'none: only a private loopback, the safe choice for code nobody has read. allowlist: only a loopback with a proxy on it (HTTP_PROXY, ALL_PROXY) that reaches what `allow` names, and the LLM gateway for the providers in `llm`; the jail resolves no names itself. host: the host\'s network, unfiltered; the command can reach whatever the host can.',
        default: D.network.mode,
      },
      allow: {
        $ref: '#/$defs/destinations',
        description:
          'allowlist mode: what the proxy reaches. `example.com`, `*.example.com` (its subdomains, not itself), `host:443` (one port; without a port, every port), IP literals and CIDR ranges (`10.0.0.0/8`, `[2001:db8::1]:443`). A name that resolves to a loopback, private, link-local or cloud-metadata address is refused unless that address is listed here too.',
        default: D.network.allow,
      },
      deny: {
        $ref: '#/$defs/destinations',
        description: 'allowlist mode: destinations refused even when `allow` matches them; checked first. Same forms as allow.',
        default: D.network.deny,
      },
      llm: {
        type: 'array',
        errorMessage: 'must be a list of providers (anthropic, openai, gemini)',
        items: { type: 'string', enum: ['anthropic', 'openai', 'gemini'] },
        description:
          'allowlist mode: the model APIs reachable through brig\'s LLM gateway. The jail gets each provider\'s base URL (ANTHROPIC_BASE_URL, OPENAI_BASE_URL, GOOGLE_GEMINI_BASE_URL) and a placeholder key; the gateway injects the real key, which never enters the jail.',
        default: D.network.llm,
      },
      budget: {
        type: 'object',
        additionalProperties: false,
        description: 'What the sandbox may spend through the LLM gateway; once spent, requests are refused with a 429. 0 means no limit.',
        default: D.network.budget,
        properties: {
          requests: { type: 'integer', minimum: 0, description: 'Requests to the model APIs; 0: no limit.', default: D.network.budget.requests },
          tokens: { type: 'integer', minimum: 0, description: 'Tokens, input and output together, as the providers report them; 0: no limit.', default: D.network.budget.tokens },
        },
      },
      publish: {
        type: 'string',
        enum: ['none', 'loopback', 'all'],
        description:
          "Daemon sandboxes only: where the ports published for it (brig create --agent-port, --monitor-port) may listen on the host. Each port gives whoever reaches it a shell in the sandbox, so by default only this machine may: loopback allows 127.0.0.0/8 and ::1; all allows any of the host's addresses (0.0.0.0, a LAN address); none refuses every port. It never changes what the sandbox itself can reach.",
        default: D.network.publish,
      },
    }),
    identity: section('Who the command is inside the jail.', {
      uid: {
        type: ['integer', 'null'],
        minimum: 0,
        maximum: MAX_ID,
        description: 'User id inside the jail; null keeps the caller\'s, so files written to the workspace stay yours. 0 is a root that has no privilege on the host.',
        default: D.identity.uid,
      },
      gid: {
        type: ['integer', 'null'],
        minimum: 0,
        maximum: MAX_ID,
        description: 'Group id inside the jail; null keeps the caller\'s.',
        default: D.identity.gid,
      },
      hostname: {
        type: 'string',
        maxLength: 64,
        pattern: HOSTNAME_PATTERN,
        errorMessage: 'must be a hostname (letters, digits, - and dots, at most 64)',
        description: 'Hostname inside the jail, so the host\'s name does not leak into prompts, logs and tools.',
        default: D.identity.hostname,
      },
      user: {
        type: ['string', 'null'],
        pattern: '^[a-z_][a-z0-9_-]{0,31}$',
        errorMessage: 'must be a user name (lower-case letters, digits, _ and -, at most 32), or null',
        description: 'User name inside the jail (its /etc/passwd, $USER); null keeps the host\'s name for the uid. E2B code expects "user".',
        default: D.identity.user,
      },
      home: {
        type: ['string', 'null'],
        pattern: '^/[^\\u0000]*$',
        errorMessage: 'must be an absolute path inside the jail, or null',
        description: 'The home directory inside the jail ($HOME); null keeps the caller\'s home path. It is a private tmpfs, unless it is where the workspace appears (filesystem.workspaceTarget): then the workspace is the home.',
        default: D.identity.home,
      },
    }),
    resources: section('Limits that keep a runaway or hostile command from starving the host. Always on.', {
      memoryMiB: {
        type: 'integer',
        minimum: 16,
        maximum: MEMORY_MAX_MIB,
        description: `Memory for the whole jail in MiB, page cache and tmpfs included; onOutOfMemory says what happens when it is used up. At least 16, at most ${MEMORY_MAX_MIB} (1 PiB).`,
        default: D.resources.memoryMiB,
      },
      onOutOfMemory: {
        type: 'string',
        enum: ['kill-process', 'kill-sandbox'],
        description:
          'At the memory limit. kill-process: the largest process in the jail is killed and the rest live on, as in a VM or Docker container (never envd, nor the agent under brig agent); each kill is recorded (brig info, the run summary). kill-sandbox: the whole jail is killed.',
        default: D.resources.onOutOfMemory,
      },
      cpus: {
        type: 'number',
        exclusiveMinimum: 0,
        maximum: CPUS_MAX,
        description: `CPU time as a number of CPUs (a quota, fractions allowed: 0.5 is half a CPU), so a busy loop cannot take the machine. At most ${CPUS_MAX}, Linux's largest CPU count.`,
        default: D.resources.cpus,
      },
      pids: {
        type: 'integer',
        minimum: 8,
        maximum: PID_MAX,
        description: `Tasks (processes and threads) alive at once in the jail: the brake on fork bombs. At least 8, at most ${PID_MAX}, the kernel's largest pid_max.`,
        default: D.resources.pids,
      },
      openFiles: softHard(
        'RLIMIT_NOFILE: open files per process, so a leak fails in the jail instead of exhausting the host.',
        { minimum: 16, maximum: NR_OPEN, why: `At least 16 (fewer breaks shells and runtimes); at most ${NR_OPEN}, the kernel's default fs.nr_open.` },
        D.resources.openFiles,
      ),
      processes: softHard(
        'RLIMIT_NPROC: processes per user, a second fork-bomb brake beside pids.',
        { minimum: 8, maximum: PID_MAX, why: `At least 8; at most ${PID_MAX}, the kernel's largest pid_max.` },
        D.resources.processes,
      ),
      maxFileSizeMiB: {
        type: 'integer',
        minimum: 1,
        maximum: FILE_SIZE_MAX_MIB,
        description: `RLIMIT_FSIZE in MiB: the largest file a process may write, so one runaway log cannot fill the disk. At most ${FILE_SIZE_MAX_MIB} (2^53 bytes).`,
        default: D.resources.maxFileSizeMiB,
      },
      diskMiB: {
        type: ['integer', 'null'],
        minimum: 16,
        maximum: MAX_DISK_MIB,
        description: `Daemon sandboxes: the workspace is a filesystem of this many MiB of its own (a sparse ext4 image, mounted nosuid,nodev), so what the sandbox writes there cannot fill the host's disk; past it, writes fail with ENOSPC. null: no quota (the workspace is a plain directory on the daemon's disk). \`brig run\` binds your own directory and refuses a value here. At least 16, at most ${MAX_DISK_MIB} (16 TiB).`,
        default: D.resources.diskMiB,
      },
    }),
    syscalls: section('The seccomp filter. brig always denies its default list (docs/jail.md); a policy can only add to it.', {
      extraDeny: {
        type: 'array',
        errorMessage: 'must be a list of syscall names',
        items: { type: 'string', pattern: '^[a-z_][a-z0-9_]*$', errorMessage: 'must be a syscall name (lower case, like ptrace)' },
        description: 'Syscall names denied on top of brig\'s default deny list, for commands known not to need them.',
        default: D.syscalls.extraDeny,
      },
      logOnly: {
        type: 'boolean',
        description: 'Log what the filter would deny (to the kernel audit log) instead of denying it. For tuning only: it turns the syscall filter off.',
        default: D.syscalls.logOnly,
      },
    }),
    timeouts: section('How long the command may run, and when a sandbox counts as hung.', {
      runMs: {
        type: 'integer',
        minimum: 0,
        // Node timers overflow past 2^31 - 1 ms and would fire at once.
        maximum: 2147483647,
        description: 'Wall-clock limit of the command in milliseconds; 0 means none. At most 2147483647 (about 24.8 days), the longest delay a Node timer holds.',
        default: D.timeouts.runMs,
      },
      hungMs: {
        type: 'integer',
        minimum: 0,
        maximum: 2147483647,
        description: 'A daemon sandbox is hung when it runs commands (started through envd) and for this many milliseconds they show no output and the sandbox uses no CPU: a `hung` event (GET /v1/events), and onHung acts. 0 means never. Checked every 5 s. Foreground runs (brig run) are not watched: their runMs is the limit.',
        default: D.timeouts.hungMs,
      },
      onHung: {
        type: 'string',
        enum: ['flag', 'kill'],
        description: 'What a hung sandbox gets. flag: the event only; it goes on (it may be waiting on something slow). kill: it is killed too, and its record says why.',
        default: D.timeouts.onHung,
      },
    }),
  },
  $defs: {
    paths: {
      type: 'array',
      errorMessage: 'must be a list of paths',
      items: { $ref: '#/$defs/path' },
    },
    path: {
      type: 'string',
      minLength: 1,
      pattern: PATH_PATTERN,
      errorMessage: `must be ${PATH_PHRASE}`,
      description: 'A host path: absolute; ~ or ~/… for the home directory; or ., ./… or ../… for the config file\'s directory (the working directory for flags and code).',
    },
    destinations: {
      type: 'array',
      errorMessage: 'must be a list of destinations (example.com, *.example.com, host:443, 10.0.0.0/8)',
      items: {
        type: 'string',
        maxLength: 300,
        // The shape only; the egress proxy parses every entry fully before a jail starts.
        pattern: DESTINATION_PATTERN,
        errorMessage: 'must be a destination: example.com, *.example.com, example.com:443, 1.2.3.4, 10.0.0.0/8 or [2001:db8::1]:443',
      },
    },
    envName: {
      type: 'string',
      pattern: ENV_NAME_PATTERN,
      errorMessage: 'must be a variable name (letters, digits and _, not starting with a digit)',
      description: 'An environment variable name.',
    },
  },
} satisfies RootSchema);
