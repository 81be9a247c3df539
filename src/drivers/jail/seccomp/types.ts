/** The types of the seccomp module's public surface (re-exported by index.ts). */

/** Architectures brig has syscall tables for, named as the kernel's syscall tables name them. */
export type SeccompArch = 'x86_64' | 'aarch64';

export interface SeccompOptions {
  /** Architecture of the processes the filter will confine; hostSeccompArch() for this host. */
  arch: SeccompArch;
  /** Syscall names denied on top of the default list (Policy.syscalls.extraDeny). */
  extraDeny: readonly string[];
  /** Log what would be denied (SECCOMP_RET_LOG) instead of denying it: for tuning only. */
  logOnly: boolean;
  /** Whose filter: the jail's (default), or the one for brig's host helpers (HELPER_RULES in rules.ts). */
  profile?: 'jail' | 'host-helper';
}

export interface CompiledSeccomp {
  /** struct sock_filter[] as bwrap's --seccomp FD expects: 8 bytes each, host byte order (little-endian). */
  program: Buffer;
  /** One line per rule for `brig run --dry-run`, e.g. "deny ptrace (EPERM): process inspection…" */
  summary: string[];
}

/** What the kernel would do with one syscall, as evaluateSeccomp() works it out. */
export interface SeccompVerdict {
  action: 'allow' | 'errno' | 'kill_process' | 'kill_thread' | 'trap' | 'log' | 'trace';
  /** For action 'errno': the errno the syscall fails with. */
  errno?: number;
}

/** The struct seccomp_data a syscall presents to the filter. */
export interface SeccompInput {
  arch: number;
  nr: number;
  /** Up to six 64-bit arguments; missing ones are 0. */
  args?: bigint[];
  instructionPointer?: bigint;
}
