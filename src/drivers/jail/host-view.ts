import { BrigError } from '../../protocol/index.ts';
import { findExecutable, within, type SandboxPlan } from '../plan/index.ts';
import { dieWithParent, fdTable } from '../host/index.ts';
import { compileSeccomp, hostSeccompArch } from './seccomp/index.ts';
import { FD, mountArgs, type JailPlan } from './bwrap.ts';
import brigSpawn from 'brig-spawn';

/**
 * The sandbox's filesystem exactly as bubblewrap builds it for the jail —
 * the same binds of sources opened without following links, the same masks
 * and files — but holding a helper of brig's that serves it to another
 * kernel instead of the sandbox's command: the VM tier's virtiofsd. The
 * guest then sees what a jail would, and nothing else of the host.
 *
 * What differs from renderJail: no user namespace (the helper is host root,
 * so the files it creates for the guest keep the ids the guest gives them),
 * only the capabilities it names, and the helpers' seccomp filter
 * (seccomp/rules.ts HELPER_RULES: the jail's, its setuid rule included, so no
 * set-id file reaches the host through the helper). The helper gets FD.envdSocket as an inherited descriptor (its
 * listening socket).
 */
export interface HostViewOptions {
  /** The helper's capabilities (bubblewrap's names, CAP_…); every other is dropped. */
  caps: string[];
  /**
   * An image's root, mounted by `wrap` before bubblewrap starts (its overlay,
   * in a private mount namespace: host/stage.ts): bound as / under the plan's
   * mounts, which the caller gives with no id-mapped bind (the helper maps no ids).
   */
  image?: { root: string; wrap: (argv: string[], targets: string[]) => string[] };
}

export function renderHostView(plan: SandboxPlan, command: string[], options: HostViewOptions): JailPlan {
  const bwrap = findExecutable('bwrap', process.env.PATH);
  if (!bwrap) throw new BrigError('BRIG_BWRAP_MISSING', 'bubblewrap (bwrap) is not installed', 'run `npm run setup` (or `sudo apt-get install bubblewrap`)');
  const seccomp = compileSeccomp({ arch: hostSeccompArch(), extraDeny: plan.syscalls.extraDeny, logOnly: false, profile: 'host-helper' });
  const fds = fdTable(FD.bindSources);
  const noMapping = (): string => {
    throw new BrigError('BRIG_INTERNAL', 'an id-mapped bind in a host view', 'this is a bug in brig: a tier that maps no ids renders it as a plain bind first');
  };
  // /proc and /dev as the jail has them (the helper reads /proc/self/fd; /proc/sys stays read-only): the guest mounts its own over them.
  const mounts = plan.mounts.flatMap((step, index) => [...reachableParents(plan, index), ...mountArgs(step, fds, noMapping)]);
  const bwrapArgs = [
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup', '--unshare-net',
    '--cap-drop', 'ALL',
    ...options.caps.flatMap((cap) => ['--cap-add', cap]),
    ...(plan.outlivesParent ? [] : ['--die-with-parent']),
    '--new-session',
    ...(options.image ? ['--bind', options.image.root, '/'] : []),
    ...mounts,
    '--chdir', '/',
    '--seccomp', String(FD.seccomp),
    '--json-status-fd', String(FD.status),
    '--',
    ...command,
  ];
  // The image's wrapper goes between brig-exec and bubblewrap: brig-exec first, so the parent-death signal joins it (and its fds stay).
  const bwrapArgv = [bwrap, ...bwrapArgs];
  // Bubblewrap, as host root, mounts on these paths inside the image's root: the wrapper refuses a link on their way.
  const wrapped = options.image ? options.image.wrap(bwrapArgv, plan.mounts.map((step) => step.target)) : bwrapArgv;
  const argv = [brigSpawn.execPath, '--keep-fds', String(FD.bindSources + fds.entries.length - 1), '--', ...wrapped];
  return {
    ...plan,
    // The helper runs as host root with a bare environment; the command's own environment goes to the guest.
    identity: { ...plan.identity, dropPrivileges: false },
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    // As host root without a user namespace, bubblewrap's own process outlives brig despite --die-with-parent
    // (that reaches only its child): the parent-death signal is set on it too, before brig-exec.
    argv: plan.outlivesParent ? argv : dieWithParent(argv),
    fds: fds.entries,
    seccompProgram: seccomp.program,
    seccompSummary: seccomp.summary,
  };
}

/**
 * The directories bubblewrap would make on its own for step `index`'s mount
 * point, made first with mode 0755. In the jail it makes them inside the
 * sandbox user's namespace, so they are that user's; here it is host root,
 * and they would be root's and 0700: the guest's user could not reach its own
 * home under /home. Only where bubblewrap makes them: in its root or in an
 * earlier tmpfs of the plan, never in a bound host directory.
 */
function reachableParents(plan: SandboxPlan, index: number): string[] {
  const step = plan.mounts[index];
  if (!step) return [];
  const parents: string[] = [];
  const parts = step.target.split('/').filter(Boolean);
  for (let depth = 1; depth < parts.length; depth++) {
    const dir = `/${parts.slice(0, depth).join('/')}`;
    const earlier = plan.mounts.slice(0, index).filter((other) => within(dir, other.target));
    if (earlier.some((other) => other.target === dir)) continue;
    const holder = earlier.at(-1);
    if (holder && holder.kind !== 'tmpfs') continue;
    parents.push('--perms', '0755', '--dir', dir);
  }
  return parents;
}
