/**
 * The one registry of brig's error codes. Every failure brig reports carries
 * one of these codes, a message naming what went wrong and a hint saying how
 * to fix it. docs/errors.md has a row per code; test/protocol/errors.test.ts
 * keeps the two in step. A retired code is never reused.
 */

/** Exit codes of `brig run` that belong to brig, not to the jailed command. */
export const EXIT = {
  /** The policy's timeout ended the command (as GNU timeout does). */
  timeout: 124,
  /** brig itself failed before or around the command: usage, policy, host. */
  brigError: 125,
  /** The command exists in the jail but cannot be executed. */
  notExecutable: 126,
  /** The command does not exist in the jail's view. */
  notFound: 127,
  /** The jail ran out of memory and was killed whole (128 + SIGKILL). */
  outOfMemory: 137,
} as const;

interface ErrorSpec {
  /** Exit code the CLI uses when this error ends it. */
  exit: number;
  /** HTTP status the daemon answers with it. */
  http: number;
  /** When it happens, for docs/errors.md. */
  when: string;
}

export const ERROR_CODES = {
  BRIG_USAGE: { exit: EXIT.brigError, http: 400, when: 'The command line has an unknown flag, a missing value or a value of the wrong form.' },
  BRIG_POLICY_INVALID: { exit: EXIT.brigError, http: 400, when: 'A policy (from a file, flags or code) has a field that is unknown, of the wrong type or out of range.' },
  BRIG_POLICY_FILE: { exit: EXIT.brigError, http: 400, when: 'A policy file cannot be read or parsed as JSON or YAML.' },
  BRIG_PATH_MISSING: { exit: EXIT.brigError, http: 400, when: 'A path the policy binds into the jail does not exist on the host.' },
  BRIG_PATH_SYMLINK: { exit: EXIT.brigError, http: 400, when: 'A path the policy binds into the jail goes through a symbolic link, which a jail could have planted to redirect the bind.' },
  BRIG_BIND_MASKED: { exit: EXIT.brigError, http: 400, when: 'A bind would land on a path brig masks or keeps private (credentials, /proc, the private home).' },
  BRIG_BWRAP_MISSING: { exit: EXIT.brigError, http: 500, when: 'bubblewrap (bwrap) is not installed or not on PATH.' },
  BRIG_USERNS_UNAVAILABLE: { exit: EXIT.brigError, http: 500, when: 'The kernel refuses to create a user namespace for this user.' },
  BRIG_CGROUP_UNAVAILABLE: { exit: EXIT.brigError, http: 500, when: 'No cgroup brig may write is available, so the resource limits cannot be enforced.' },
  BRIG_JAIL_SETUP: { exit: EXIT.brigError, http: 500, when: 'bubblewrap failed while building the jail (a mount, a namespace, the seccomp filter).' },
  BRIG_COMMAND_NOT_FOUND: { exit: EXIT.notFound, http: 400, when: 'The command does not exist in the jail\'s view of the filesystem.' },
  BRIG_COMMAND_NOT_EXECUTABLE: { exit: EXIT.notExecutable, http: 400, when: 'The command exists in the jail but is not executable.' },
  BRIG_OUT_OF_MEMORY: { exit: EXIT.outOfMemory, http: 500, when: 'The sandbox used all the memory its policy allows and was killed whole.' },
  BRIG_TIMEOUT: { exit: EXIT.timeout, http: 500, when: 'The command ran longer than the policy\'s timeout and the sandbox was killed.' },
  BRIG_SANDBOX_NOT_FOUND: { exit: EXIT.brigError, http: 404, when: 'No sandbox has that id or name (it may have timed out or been killed).' },
  BRIG_NAME_TAKEN: { exit: EXIT.brigError, http: 409, when: 'Another running sandbox already has that name.' },
  BRIG_UNAUTHORIZED: { exit: EXIT.brigError, http: 401, when: 'The daemon\'s API key is missing or wrong.' },
  BRIG_BAD_REQUEST: { exit: EXIT.brigError, http: 400, when: 'A request to the daemon is malformed: not JSON, a field of the wrong type, a body too large.' },
  BRIG_NOT_FOUND: { exit: EXIT.brigError, http: 404, when: 'The daemon has no route for that method and path.' },
  BRIG_INTERNAL: { exit: EXIT.brigError, http: 500, when: 'brig failed in a way it did not expect: a bug.' },
  BRIG_AGENT_UNKNOWN: { exit: EXIT.brigError, http: 400, when: 'No built-in or configured agent profile has that name.' },
  BRIG_AGENT_INVALID: { exit: EXIT.brigError, http: 400, when: 'An agent definition (in the agents config file or code) has a field that is unknown or of the wrong form.' },
  BRIG_AGENT_NOT_INSTALLED: { exit: EXIT.notFound, http: 400, when: 'The agent\'s CLI is not on PATH, in the project\'s node_modules or in a global npm install.' },
  BRIG_LLM_KEYS: { exit: EXIT.brigError, http: 500, when: 'The LLM gateway\'s key file cannot be used: unreadable, malformed, or open to other users.' },
  BRIG_STATE_LOCKED: { exit: EXIT.brigError, http: 409, when: 'Another brig daemon already uses that state directory (its pid and address are named).' },
  BRIG_STATE_DIR: { exit: EXIT.brigError, http: 500, when: 'The daemon\'s state directory cannot be used: a parent sandboxes cannot pass through, or no lock can be taken on it.' },
  BRIG_NO_HOST_ID: { exit: EXIT.brigError, http: 503, when: 'The daemon (as root) has no host uid left in its range to give a new sandbox.' },
  BRIG_DAEMON_UNAVAILABLE: { exit: EXIT.brigError, http: 503, when: 'No brig daemon answers at the address the CLI uses.' },
  BRIG_SANDBOX_UNRESPONSIVE: { exit: EXIT.brigError, http: 504, when: 'The sandbox stopped answering (frozen, or its envd hung): a command asked to stop did not end in time.' },
  BRIG_ARCHIVE_INVALID: { exit: EXIT.brigError, http: 400, when: 'An archive (an image layer, a root filesystem tarball, a docker save archive or an OCI layout) is malformed, truncated, passes a limit on entries, sizes or path length, or its JSON, blob names or digests do not check out; nothing of it is kept.' },
  BRIG_IMAGE_INVALID: { exit: EXIT.brigError, http: 400, when: 'An image name, tag or reference is not of the allowed form, or a manifest names a layer the store does not hold.' },
  BRIG_TIER_UNKNOWN: { exit: EXIT.brigError, http: 400, when: 'A tier was asked for (--tier, the policy\'s tier, the create request) that brig does not have.' },
  BRIG_TIER_UNAVAILABLE: { exit: EXIT.brigError, http: 400, when: 'The tier asked for cannot run on this host: its package, device or kernel feature is missing. brig never falls back to a weaker tier.' },
  BRIG_IMAGE_NEEDS_ROOT: { exit: EXIT.brigError, http: 500, when: 'A sandbox from an image was asked of a brig not running as root: mapping a range of ids and mounting layers need it.' },
  BRIG_IMAGE_NOT_FOUND: { exit: EXIT.brigError, http: 404, when: 'No image in the store has that name and tag.' },
  BRIG_COMMIT_UNSUPPORTED: { exit: EXIT.brigError, http: 400, when: 'A commit or snapshot was asked of a sandbox that did not boot from an image (a host-view sandbox has no root of its own to commit), or whose image already has the 128 layers a sandbox can boot from.' },
  BRIG_DOCKERFILE_INVALID: { exit: EXIT.brigError, http: 400, when: 'A Dockerfile cannot be built by brig: a syntax error, or an instruction or flag brig does not support (multi-stage builds, ADD of a URL, heredocs); the message names the line.' },
  BRIG_BUILD_FAILED: { exit: EXIT.brigError, http: 422, when: 'An image build stopped: a RUN step exited non-zero, a COPY source is missing or leaves the build context, or the Debian bootstrap failed; the steps before it stay cached.' },
  BRIG_CAPACITY: { exit: EXIT.brigError, http: 503, when: 'The daemon is full: too many connections, or a create would pass one of its budgets (sandboxes, tasks, open files, memory), or the host is out of file descriptors.' },
  BRIG_GVISOR_UNSUPPORTED: { exit: EXIT.brigError, http: 400, when: 'The gVisor tier cannot honour part of the plan (an inside uid other than the workspace owner\'s with a writable bind, an image run\'s workspace its user does not own): it refuses rather than mean something else.' },
  BRIG_GVISOR_SETUP: { exit: EXIT.brigError, http: 500, when: 'runsc failed while building or starting the sandbox (the bundle, a mount, the platform), or envd did not come up inside it.' },
  BRIG_VM_UNSUPPORTED: { exit: EXIT.brigError, http: 400, when: 'The vm tier cannot honour part of the plan (less memory than a guest kernel needs, an id-mapped bind outside an image, an inside uid other than the workspace owner\'s with a writable bind, an allowlist sandbox with no host owner): it refuses rather than mean something else.' },
  BRIG_VM_SETUP: { exit: EXIT.brigError, http: 500, when: 'QEMU, virtiofsd or the guest\'s init failed while building or starting the VM, or the VM ended without saying how its command ended.' },
  BRIG_VM_HUNG: { exit: EXIT.brigError, http: 500, when: 'A VM gave no sign of life: its init sends a heartbeat every second, and none came for BRIG_VM_HUNG_AFTER seconds (30 by default; 120 s for the first, while it boots). The guest\'s kernel is stuck or the host starved it; the VM is killed.' },
  BRIG_VM_PROTOCOL: { exit: EXIT.brigError, http: 500, when: 'The guest\'s init sent brig something malformed on its channel.' },
  BRIG_VM_KERNEL_UNAVAILABLE: { exit: EXIT.brigError, http: 500, when: 'The VM tier\'s guest kernel cannot be fetched from the host\'s Debian mirror: apt-get, apt-cache or dpkg-deb is missing, apt knows no cloud kernel package for this architecture, or the download or unpacking failed.' },
  BRIG_VM_KERNEL_MODULE: { exit: EXIT.brigError, http: 500, when: 'The guest kernel package lacks a module the VM guest needs (or one such a module depends on), or a module file in it is not a kernel module brig can read.' },
  BRIG_VM_INIT_MISSING: { exit: EXIT.brigError, http: 500, when: 'The VM guest\'s init program is not built (or not a file brig can read), so no initramfs can be made for the guest.' },
  BRIG_JOB_NOT_FOUND: { exit: EXIT.brigError, http: 404, when: 'No job has that id (its result may have passed the daemon\'s --job-retention and been removed).' },
  BRIG_JOB_KIND_UNSUPPORTED: { exit: EXIT.brigError, http: 400, when: 'Retired: every kind of seed 003 runs now (gui with the desktop template); an unknown kind is BRIG_BAD_REQUEST.' },
  BRIG_JOB_ENDED: { exit: EXIT.brigError, http: 409, when: 'A job that already ended was asked to be cancelled.' },
  BRIG_JOB_FAILED: { exit: EXIT.brigError, http: 500, when: 'brig could not run a job: its sandbox did not start, or stopped answering, or refused its files; the job\'s record says which.' },
  BRIG_JOB_ARTIFACT_TOO_LARGE: { exit: EXIT.brigError, http: 413, when: 'A file a job named as an artifact is larger than an artifact may be (64 MiB each, 256 MiB for all of a job\'s); it is not kept, and the job\'s record says so.' },
  BRIG_PORT_NOT_ALLOWED: { exit: EXIT.brigError, http: 403, when: 'A port was asked to be published (brig create --agent-port, --monitor-port) where the sandbox\'s policy does not allow it (network.publish: none refuses every port, loopback any address but 127.0.0.0/8 and ::1), or where the host refuses the daemon (a port below 1024 without root).' },
  BRIG_PORT_IN_USE: { exit: EXIT.brigError, http: 409, when: 'A port asked to be published is already taken on the host (by another program, or another sandbox); the sandbox was not created.' },
  BRIG_PORT_CLOSED: { exit: EXIT.brigError, http: 502, when: 'A request for a port of a sandbox (getHost(port), E2b-Sandbox-Port, /sandboxes/ID/ports/PORT/) found nothing listening on that port inside the sandbox.' },
  BRIG_TEMPLATE_NOT_READY: { exit: EXIT.brigError, http: 500, when: 'A template\'s start command (LABEL brig.start) ended, or its ready port (LABEL brig.ready-port) did not open in time, so the sandbox was not created; it was stopped.' },
  BRIG_MUX_PROTOCOL: { exit: EXIT.brigError, http: 500, when: 'The other end of a stream multiplexer (envd in a microVM, or the host) sent a malformed frame, more data than its window allows, or frames whose answers it never reads; the channel is closed and every stream on it reset.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The one error class brig throws; everything a caller needs is on it. */
export class BrigError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;

  constructor(code: ErrorCode, message: string, hint: string) {
    super(message);
    this.name = 'BrigError';
    this.code = code;
    this.hint = hint;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  /** One line for a terminal: what is wrong, then how to fix it. */
  format(): string {
    return `brig: ${this.message} [${this.code}]\n  hint: ${this.hint}`;
  }
}

/**
 * Also true for a BrigError from another bundle (dist/daemon.cjs, the CLI
 * client's), whose class is a copy: instanceof cannot see across them.
 */
/** The process or the host is out of file descriptors (a flood): brig is full, not broken (503 BRIG_CAPACITY). */
export function outOfDescriptors(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

export function isBrigError(error: unknown): error is BrigError {
  if (error instanceof BrigError) return true;
  const candidate = error as Partial<BrigError> | null;
  return candidate?.name === 'BrigError' && typeof candidate.code === 'string' && candidate.code in ERROR_CODES && typeof candidate.format === 'function';
}
