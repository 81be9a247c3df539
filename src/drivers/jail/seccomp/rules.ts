/**
 * brig's default seccomp deny list: data, one entry per syscall, each with
 * the reason it is denied. compile.ts turns it into BPF; docs/seccomp.md
 * explains the order of checks and where the list comes from.
 *
 * The list is at least as strict as Docker's default profile for a container
 * without capabilities (moby/profiles seccomp/default.json, which moby's
 * profiles/seccomp/default.json became): every syscall in the Linux 6.19
 * tables (syscalls-*.ts) that Docker does not allow unconditionally is here,
 * and Docker's argument rules (clone, personality, socket) are kept.
 * test/drivers/jail/seccomp.test.ts checks that against a copy of Docker's
 * allow list. On top of Docker, brig denies what an agent's jail has no use
 * for and what has a record of sandbox escapes (ptrace, keyrings, io_uring,
 * name_to_handle_at, TIOCSTI, …); those reasons say "brig".
 *
 * A rule whose syscall does not exist on an architecture is skipped there
 * (iopl is x86_64 only). Numbers the tables do not name are refused with
 * ENOSYS by compile.ts, so a syscall newer than Linux 6.19 is never allowed
 * by accident.
 */

import type { ErrnoName } from './bpf.ts';
import { MODE_SETTING_CALLS, SETID_BITS } from '../../plan/index.ts';

/**
 * A condition on one syscall argument. Compared on the low 32 bits only:
 * every argument checked here is one the kernel itself truncates to 32 bits
 * (int or unsigned int in the syscall's definition, or lower_32_bits() for
 * clone's flags), so the high half cannot change what the kernel does.
 */
export type ArgCheck =
  /** Deny when any of these bits is set. */
  | { arg: number; label: string; op: 'hasAnyBit'; mask: number }
  /** Deny when the argument is one of these values. */
  | { arg: number; label: string; op: 'isOneOf'; values: readonly number[] }
  /** Deny unless the argument is one of these values. */
  | { arg: number; label: string; op: 'isNoneOf'; values: readonly number[] };

export interface DenyRule {
  /** Syscall name as the kernel's tables spell it. */
  name: string;
  /** Why it is denied; shown by `brig run --dry-run`. */
  reason: string;
  /** Errno the denied call fails with. Default EPERM, as Docker's defaultErrnoRet. */
  errno?: ErrnoName;
  /** Deny only when this holds; without it the syscall is denied whatever its arguments. */
  args?: ArgCheck;
}

/**
 * CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET,
 * Docker's mask. CLONE_NEWTIME (0x80) is not in it: in clone() the low byte is the exit signal, so only
 * clone3 and unshare can ask for a time namespace, and both are denied.
 */
export const CLONE_NEW_MASK = 0x7e020000;
export const TIOCSTI = 0x5412;
export const TIOCLINUX = 0x541c;
export const AF_VSOCK = 40;
/** personality() values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query only). */
export const PERSONALITY_ALLOWED = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff] as const;

const NO_ENTRY = 'no entry point in Linux 6.19 (removed or never implemented): ENOSYS is what the kernel itself answers';
const NEWER = 'newer than Docker\'s profile, which does not allow it; ENOSYS, as from a kernel without it, so callers fall back';

/** The setuid and setgid rule (plan/setid.ts), for bubblewrap's filter: directories are caught too, a jail cannot make a setgid directory. */
function setidRules(): DenyRule[] {
  const why = 'brig: a setuid or setgid file written into the workspace stays on the host, where another user could run it with the jail\'s host uid (uid 0 when the workspace is root\'s); mode';
  return [
    ...MODE_SETTING_CALLS.map(({ name, arg }): DenyRule => ({ name, args: { arg, label: 'mode', op: 'hasAnyBit', mask: SETID_BITS }, reason: `${why} is arg${arg}` })),
    { name: 'openat2', errno: 'ENOSYS', reason: `brig: openat2 carries its mode in a struct seccomp cannot read, so a setuid file could be created through it; ENOSYS makes glibc and musl fall back to openat, whose mode is checked (Docker allows it)` },
  ];
}

export const DENY_RULES: readonly DenyRule[] = [
  // Namespaces: the jail is built once by bwrap; nothing inside may build another.
  { name: 'unshare', reason: 'brig: creates namespaces, including a nested user namespace that hands the jailed process capabilities over new kernel surface; denied whatever the flags, as Docker does without CAP_SYS_ADMIN' },
  { name: 'clone', args: { arg: 0, label: 'flags', op: 'hasAnyBit', mask: CLONE_NEW_MASK }, reason: 'brig and Docker: a new thread or process is fine, a new namespace (any CLONE_NEW* flag) is not; flags are arg0 on x86_64 and aarch64 alike (s390 is the odd one out)' },
  { name: 'clone3', errno: 'ENOSYS', reason: 'brig and Docker: its flags sit in a struct in memory, which seccomp cannot read; ENOSYS makes glibc and musl fall back to clone, whose flags the clone rule checks' },
  { name: 'setns', reason: 'brig: joins another namespace through a /proc or pidfd handle (Docker: CAP_SYS_ADMIN)' },

  // The mount family: the jail's view of the filesystem is fixed at boot.
  { name: 'mount', reason: 'brig: mounting could cover the jail\'s read-only binds or reach host filesystems (Docker: CAP_SYS_ADMIN)' },
  { name: 'umount2', reason: 'brig: unmounting could uncover what the jail hides under its binds (Docker: CAP_SYS_ADMIN)' },
  { name: 'pivot_root', reason: 'brig: changes the root mount; only bwrap does that, before the filter is applied (Docker: not allowed)' },
  { name: 'move_mount', reason: 'brig: new mount API, attaches or moves a mount (Docker: CAP_SYS_ADMIN)' },
  { name: 'open_tree', reason: 'brig: new mount API, clones a mount tree into a file descriptor (Docker: CAP_SYS_ADMIN)' },
  { name: 'open_tree_attr', reason: 'brig: new mount API, open_tree that also changes mount attributes (Docker: not allowed)' },
  { name: 'fsopen', reason: 'brig: new mount API, creates a filesystem context (Docker: CAP_SYS_ADMIN)' },
  { name: 'fsconfig', reason: 'brig: new mount API, configures a filesystem context (Docker: CAP_SYS_ADMIN)' },
  { name: 'fsmount', reason: 'brig: new mount API, turns a filesystem context into a mount (Docker: CAP_SYS_ADMIN)' },
  { name: 'fspick', reason: 'brig: new mount API, reopens an existing mount for reconfiguration (Docker: CAP_SYS_ADMIN)' },
  { name: 'mount_setattr', reason: 'brig: changes mount attributes such as read-only or idmapping (Docker: CAP_SYS_ADMIN)' },

  // Other processes: the jail runs one agent, not a debugger.
  { name: 'ptrace', reason: 'brig: process inspection and control, reads and writes another process\'s memory and registers; a classic way around seccomp itself (Docker allows it on kernels from 4.8)' },
  { name: 'process_vm_readv', reason: 'brig: reads another process\'s memory, the same power as ptrace (Docker allows it on kernels from 4.8)' },
  { name: 'process_vm_writev', reason: 'brig: writes another process\'s memory, the same power as ptrace (Docker allows it on kernels from 4.8)' },
  { name: 'kcmp', reason: 'compares kernel objects of two processes, an information leak (Docker: CAP_SYS_PTRACE)' },
  { name: 'pidfd_getfd', reason: 'copies a file descriptor out of another process (Docker: CAP_SYS_PTRACE)' },
  { name: 'process_madvise', reason: 'gives memory advice on behalf of another process (Docker: CAP_SYS_PTRACE)' },

  // Kernel attack surface with no use in an agent's jail.
  { name: 'bpf', reason: 'brig: loads eBPF programs and maps, a large kernel attack surface (Docker: CAP_SYS_ADMIN or CAP_BPF)' },
  { name: 'perf_event_open', reason: 'brig: performance counters, kernel attack surface and a side channel on other processes (Docker: CAP_SYS_ADMIN or CAP_PERFMON)' },
  { name: 'userfaultfd', reason: 'brig: lets user space stall kernel page faults, the usual tool for winning kernel races in exploits (Docker: not allowed)' },
  { name: 'io_uring_setup', reason: 'brig: io_uring runs I/O submitted through a shared ring, out of seccomp\'s sight, and has a long record of kernel exploits (Docker: not allowed); libuv and others fall back to plain syscalls' },
  { name: 'io_uring_enter', reason: 'brig: io_uring, see io_uring_setup (Docker: not allowed)' },
  { name: 'io_uring_register', reason: 'brig: io_uring, see io_uring_setup (Docker: not allowed)' },
  { name: 'keyctl', reason: 'brig: kernel keyrings hold credentials (Kerberos tickets, filesystem encryption keys) outside the filesystem view the jail controls, and their code has had privilege-escalation bugs (Docker allows it)' },
  { name: 'add_key', reason: 'brig: kernel keyrings, see keyctl (Docker allows it)' },
  { name: 'request_key', reason: 'brig: kernel keyrings, see keyctl; can also make the kernel run a user-space helper (Docker allows it)' },
  { name: 'kexec_load', reason: 'brig: loads a new kernel to boot into (Docker: not allowed)' },
  { name: 'kexec_file_load', reason: 'brig: loads a new kernel to boot into, from a file (Docker: not allowed)' },
  { name: 'init_module', reason: 'brig: loads a kernel module (Docker: CAP_SYS_MODULE)' },
  { name: 'finit_module', reason: 'brig: loads a kernel module from a file (Docker: CAP_SYS_MODULE)' },
  { name: 'delete_module', reason: 'brig: unloads a kernel module (Docker: CAP_SYS_MODULE)' },
  { name: 'open_by_handle_at', reason: 'brig: opens a file by handle without a path walk, so mount boundaries do not apply: the "shocker" container escape (Docker: CAP_DAC_READ_SEARCH)' },
  { name: 'name_to_handle_at', reason: 'brig: makes the handles open_by_handle_at takes and reveals inode identity; denied with its pair (Docker allows it)' },

  // Files the host would run with privileges: no mode with S_ISUID or S_ISGID, whichever call sets it.
  ...setidRules(),

  // The terminal the agent shares with the user.
  { name: 'ioctl', args: { arg: 1, label: 'cmd', op: 'isOneOf', values: [TIOCSTI, TIOCLINUX] }, reason: 'brig: TIOCSTI pushes characters into the terminal\'s input queue, so a jailed process could type commands into the shell that started brig (bubblewrap CVE-2017-5226); TIOCLINUX can paste into a virtual console the same way. cmd is unsigned int in the kernel, so only its low 32 bits count' },

  // Docker's other argument rules.
  { name: 'socket', args: { arg: 0, label: 'family', op: 'isOneOf', values: [AF_VSOCK] }, reason: 'AF_VSOCK talks to the hypervisor and host over virtio-vsock, which a network namespace does not isolate (Docker: same rule)' },
  { name: 'personality', args: { arg: 0, label: 'persona', op: 'isNoneOf', values: PERSONALITY_ALLOWED }, reason: 'only the personas Docker allows; others such as READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE switch off exploit mitigations' },

  // What Docker allows only with a capability a brig jail never has.
  { name: 'fanotify_init', reason: 'filesystem-wide event monitoring (Docker: CAP_SYS_ADMIN)' },
  { name: 'lsm_get_self_attr', reason: 'Linux security module attributes (Docker: CAP_SYS_ADMIN)' },
  { name: 'lsm_set_self_attr', reason: 'Linux security module attributes (Docker: CAP_SYS_ADMIN)' },
  { name: 'lsm_list_modules', reason: 'Linux security module list (Docker: CAP_SYS_ADMIN)' },
  { name: 'quotactl', reason: 'disk quota control (Docker: CAP_SYS_ADMIN)' },
  { name: 'quotactl_fd', reason: 'disk quota control (Docker: CAP_SYS_ADMIN)' },
  { name: 'sethostname', reason: 'changes the UTS host name (Docker: CAP_SYS_ADMIN)' },
  { name: 'setdomainname', reason: 'changes the UTS domain name (Docker: CAP_SYS_ADMIN)' },
  { name: 'syslog', reason: 'reads or clears the kernel log, which leaks kernel addresses (Docker: CAP_SYSLOG)' },
  { name: 'reboot', reason: 'reboots or halts the machine (Docker: CAP_SYS_BOOT)' },
  { name: 'chroot', reason: 'changes the root directory, a step in classic escapes (Docker: CAP_SYS_CHROOT)' },
  { name: 'acct', reason: 'switches process accounting to a file (Docker: CAP_SYS_PACCT)' },
  { name: 'iopl', reason: 'raw I/O port access, x86 only (Docker: CAP_SYS_RAWIO)' },
  { name: 'ioperm', reason: 'raw I/O port access, x86 only (Docker: CAP_SYS_RAWIO)' },
  { name: 'settimeofday', reason: 'sets the host-wide clock (Docker: CAP_SYS_TIME)' },
  { name: 'clock_settime', reason: 'sets a host-wide clock (Docker: CAP_SYS_TIME)' },
  { name: 'vhangup', reason: 'hangs up the controlling terminal (Docker: CAP_SYS_TTY_CONFIG)' },
  { name: 'mbind', reason: 'NUMA memory policy (Docker: CAP_SYS_NICE)' },
  { name: 'get_mempolicy', reason: 'NUMA memory policy (Docker: CAP_SYS_NICE)' },
  { name: 'set_mempolicy', reason: 'NUMA memory policy (Docker: CAP_SYS_NICE)' },
  { name: 'set_mempolicy_home_node', reason: 'NUMA memory policy (Docker: CAP_SYS_NICE)' },

  // What Docker's profile does not allow at all.
  { name: 'migrate_pages', reason: 'moves another process\'s pages between NUMA nodes (Docker: not allowed)' },
  { name: 'move_pages', reason: 'moves pages of a process between NUMA nodes (Docker: not allowed)' },
  { name: 'swapon', reason: 'adds host swap space (Docker: not allowed)' },
  { name: 'swapoff', reason: 'removes host swap space (Docker: not allowed)' },
  { name: 'sysfs', reason: 'obsolete filesystem-type query, x86_64 only (Docker: not allowed)' },
  { name: 'ustat', reason: 'obsolete filesystem statistics, x86_64 only (Docker: not allowed)' },
  { name: 'file_getattr', errno: 'ENOSYS', reason: `reads inode attributes by path; ${NEWER} (to the FS_IOC_FSGETXATTR ioctl)` },
  { name: 'file_setattr', errno: 'ENOSYS', reason: `sets inode attributes by path; ${NEWER} (to the FS_IOC_FSSETXATTR ioctl)` },
  { name: 'listns', errno: 'ENOSYS', reason: `lists namespaces; ${NEWER}` },
  { name: 'uprobe', errno: 'ENOSYS', reason: `x86_64 only, called by the kernel's own uprobe trampoline (recent kernels let it through seccomp unfiltered); ${NEWER}` },

  // Table entries without an entry point: denied so that no kernel which still wires one up can be reached.
  { name: 'uselib', errno: 'ENOSYS', reason: `x86_64 a.out library loading; ${NO_ENTRY}` },
  { name: '_sysctl', errno: 'ENOSYS', reason: `x86_64 binary sysctl; ${NO_ENTRY}` },
  { name: 'create_module', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'get_kernel_syms', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'query_module', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'nfsservctl', errno: 'ENOSYS', reason: `NFS server control; ${NO_ENTRY}` },
  { name: 'getpmsg', errno: 'ENOSYS', reason: `x86_64 STREAMS; ${NO_ENTRY}` },
  { name: 'putpmsg', errno: 'ENOSYS', reason: `x86_64 STREAMS; ${NO_ENTRY}` },
  { name: 'afs_syscall', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'tuxcall', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'security', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'vserver', errno: 'ENOSYS', reason: `x86_64; ${NO_ENTRY}` },
  { name: 'lookup_dcookie', errno: 'ENOSYS', reason: `oprofile helper (Docker: CAP_SYS_ADMIN); ${NO_ENTRY}` },
];

/** CLONE_FS | CLONE_FILES: what unshare may ask for in a host helper, a thread's own working directory and fd table (no namespace). */
const UNSHARE_HELPER_FLAGS = 0x200 | 0x400;

/**
 * The filter of brig's host helpers that serve a sandbox's files to another
 * kernel (the VM tier's virtiofsd, in the sandbox's view: jail/host-view.ts):
 * the jail's list, setuid rule included, with two calls that helper needs.
 * chroot: it locks itself into the view (sandbox=chroot). unshare: each of its
 * threads takes a working directory of its own (CLONE_FS); every other flag,
 * a namespace among them, is still denied.
 */
export const HELPER_RULES: readonly DenyRule[] = DENY_RULES.flatMap((rule): DenyRule[] => {
  if (rule.name === 'chroot') return [];
  if (rule.name !== 'unshare') return [rule];
  return [{ name: 'unshare', args: { arg: 0, label: 'flags', op: 'hasAnyBit', mask: 0xffffffff & ~UNSHARE_HELPER_FLAGS }, reason: 'brig (a host helper): a thread may take its own working directory or fd table (CLONE_FS, CLONE_FILES), never a namespace' }];
});
