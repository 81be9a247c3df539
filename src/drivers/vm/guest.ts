import { BrigError } from '../../protocol/index.ts';
import { unmappedOwnershipProblem, type SandboxPlan } from '../plan/index.ts';
import type { ChannelRecord } from './channel.ts';
import { compileSeccomp } from '../jail/index.ts';
import { egressRecords } from './egress.ts';
import { imagePrograms } from './image-view.ts';
import { hasNetworkDevice, networkRecords } from './network.ts';
import { heartbeatRecord } from './heartbeat.ts';

/**
 * What the guest's init is told about the sandbox (channel.ts records), from
 * the plan. The filesystem itself is the host's view (jail/host-view.ts)
 * behind virtiofs tag `root`; the guest adds only what must be its own
 * kernel's: /proc, /dev (with /dev/pts and /dev/shm).
 */

const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;

/** The fd a daemon sandbox's envd is given brig.service on (`envd --listen mux:N`); not 3, INNER_SECCOMP_FD. */
export const SERVICE_FD = 4;

/**
 * The records up to `end`, or BRIG_VM_UNSUPPORTED for what this tier does not
 * render yet. A foreground run (`hold`: the guest waits for brig to have all
 * of the output before it powers off) or a daemon sandbox's (`service`:
 * envd's port; nobody waits on its output, which QEMU appends to a file).
 */
export function guestConfig(plan: SandboxPlan, mode: 'foreground' | 'service' = 'foreground', terminal?: TerminalSize): ChannelRecord[] {
  const refused = unsupported(plan);
  if (refused) throw new BrigError('BRIG_VM_UNSUPPORTED', `the vm tier cannot honour ${refused} yet`, 'run it on the jail or gvisor tier (--tier jail); docs/tiers.md says what the vm tier renders');
  const { identity } = plan;
  if (plan.tty && (mode !== 'foreground' || !terminal)) throw new BrigError('BRIG_INTERNAL', 'a terminal without its size, or in a daemon sandbox', 'this is a bug in brig: a foreground run on a terminal passes its size');
  return [
    ['root', 'root'],
    // After the command's end the guest counts its output and waits for brig to have it all (run.ts).
    mode === 'foreground' ? ['hold'] : ['service', String(SERVICE_FD)],
    // `alive` every second, so the host tells a hung guest from a quiet one (heartbeat.ts).
    heartbeatRecord(),
    ['mount', 'proc', 'proc', '/proc', String(MS_NOSUID | MS_NODEV | MS_NOEXEC), ''],
    ['mount', 'devtmpfs', 'devtmpfs', '/dev', String(MS_NOSUID | MS_NOEXEC), 'mode=0755'],
    ['mount', 'devpts', 'devpts', '/dev/pts', String(MS_NOSUID | MS_NOEXEC), 'newinstance,ptmxmode=0666,mode=0620'],
    ['mount', 'tmpfs', 'tmpfs', '/dev/shm', String(MS_NOSUID | MS_NODEV), 'mode=1777,size=65536k'],
    // allowlist: the relay's socket is the guest's own, and a program beside the command carries it to the host (egress.ts).
    ...egressRecords(plan, MS_NOSUID | MS_NODEV | MS_NOEXEC),
    ['hostname', plan.hostname],
    // network.mode host: a network device on QEMU's user network (network.ts).
    ...networkRecords(plan),
    // A terminal of the guest's own (brig run on a terminal): its size, then `winsize` as it changes (run.ts).
    ...(plan.tty && terminal ? [['tty', String(terminal.columns), String(terminal.rows)] as ChannelRecord] : []),
    ['oom', plan.policy.resources.onOutOfMemory],
    ['pids', String(plan.policy.resources.pids)],
    ...plan.limits.rlimits.map((limit): ChannelRecord => ['rlimit', limit.name, String(limit.soft), String(limit.hard)]),
    ['groups'],
    ['gid', String(identity.gid)],
    ['uid', String(identity.uid)],
    ['cwd', plan.cwd],
    // The view's tmpfs (the private home, /tmp) belong to the sandbox's user, as in the jail.
    ['own', ...plan.mounts.flatMap((step) => (step.kind === 'tmpfs' ? [step.target] : []))],
    ...Object.entries(plan.env).map(([name, value]): ChannelRecord => ['env', `${name}=${value}`]),
    ['jail', ...innerJail(plan)],
    ['seccomp', compileSeccomp({ arch: 'x86_64', extraDeny: plan.syscalls.extraDeny, logOnly: plan.syscalls.logOnly }).program.toString('hex')],
    // allowlist: the relay listens on the command's loopback, then execs it (as in the jail).
    // A terminal: the command's own session has it as its controlling terminal, so Ctrl-C reaches the command, not the inner bubblewrap (as in the jail).
    ['argv', ...(plan.tty ? ['/usr/bin/setsid', '--ctty'] : []), ...(plan.network.bridge?.prefix ?? []), ...plan.command],
    ['end'],
  ];
}

export interface TerminalSize {
  columns: number;
  rows: number;
}

/** The fd the init gives the inner bubblewrap its seccomp program on. */
export const INNER_SECCOMP_FD = 3;

/**
 * The second layer (seed 001): inside the guest, the command runs under the
 * jail's own bubblewrap, started by the init as the sandbox's user — its own
 * user, pid, ipc, uts, cgroup and network namespaces, no capabilities, no
 * nested user namespaces, the jail's seccomp filter, a minimal /dev and a
 * /proc whose knobs are read-only — so a bug in the guest kernel's syscall
 * surface is not reached without first getting out of that jail. The files
 * are the guest's root as it is: the host's view built it already.
 */
export function innerJail(plan: SandboxPlan): string[] {
  const procReadonly = plan.mounts.flatMap((step) => (step.kind === 'proc-readonly' ? ['--ro-bind', step.target, step.target] : []));
  // Root in an image keeps what installing packages needs (plan.capabilities), over the image's files of every
  // owner: a user namespace of bubblewrap's maps one id, so root runs as the guest's root, with those
  // capabilities only (no CAP_SYS_ADMIN, no CAP_MKNOD), and new user namespaces refused by the seccomp filter.
  const imageRoot = plan.capabilities.length > 0;
  return [
    // An image has no bubblewrap of its own: the host's, brought into the view (image-view.ts).
    ...(imagePrograms(plan)?.bwrap.argv() ?? ['/usr/bin/bwrap']),
    ...(imageRoot ? [] : ['--unshare-user']),
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup',
    // host: the guest's network is the sandbox's (its one device); otherwise a loopback of its own.
    ...(hasNetworkDevice(plan) ? [] : ['--unshare-net']),
    ...(imageRoot ? [] : ['--uid', String(plan.identity.uid), '--gid', String(plan.identity.gid), '--disable-userns']),
    '--hostname', plan.hostname,
    '--cap-drop', 'ALL',
    ...plan.capabilities.flatMap((cap) => ['--cap-add', cap]),
    // With a terminal, the session keeps it as its controlling terminal: it is the guest's own pty, whose
    // input comes only from brig, so TIOCSTI into it (what --new-session guards against) reaches nothing else.
    '--die-with-parent', ...(plan.tty ? [] : ['--new-session']),
    '--bind', '/', '/',
    '--proc', '/proc',
    '--dev', '/dev',
    ...procReadonly,
    '--chdir', plan.cwd,
    '--seccomp', String(INNER_SECCOMP_FD),
    '--',
  ];
}

/** The least memory a guest boots in: the kernel unpacks itself and the initramfs into it (64 MiB does not boot). */
export const VM_MIN_MEMORY_MIB = 128;

function unsupported(plan: SandboxPlan): string | null {
  if (plan.policy.resources.memoryMiB < VM_MIN_MEMORY_MIB) return `resources.memoryMiB ${plan.policy.resources.memoryMiB} (a VM needs at least ${VM_MIN_MEMORY_MIB} MiB: its kernel lives in it)`;
  // An image's workspace is id-mapped in the jail; here, with no ids mapped, the view binds it plainly (image-view.ts).
  if (!plan.image && plan.mounts.some((step) => step.kind === 'mapped-bind')) return 'an id-mapped bind';
  return unmappedOwnershipProblem(plan);
}
