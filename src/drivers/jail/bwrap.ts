import { readFileSync, statSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import { findExecutable, type MountStep, type SandboxPlan } from '../plan/index.ts';
import { fdTable, type PlanFd } from '../host/index.ts';
import { compileSeccomp, hostSeccompArch } from './seccomp/index.ts';
import { imageRootArgs, type MappedBind } from './image-root.ts';
import brigSpawn from 'brig-spawn';

/**
 * The jail tier's rendering of a sandbox plan: brig-exec (rlimits, the fd
 * bound, an image root) → bubblewrap argv, the file descriptors bubblewrap
 * reads, and the seccomp program brig compiles itself.
 *
 * The file descriptors handed to brig-exec, in the child's numbering: what
 * bubblewrap reads, then envdSocket, envd's listening socket, which passes
 * through bubblewrap to envd (a daemon sandbox; nothing for `brig run`),
 * then the bind sources and data files (plan.fds) from 6 on. brig-exec
 * closes every fd above the last.
 */
export const FD = { seccomp: 3, status: 4, envdSocket: 5, bindSources: 6 } as const;

export interface JailPlan extends SandboxPlan {
  /** The full argv: brig-exec, its limits and fd bound, bwrap, its arguments, the command. */
  argv: string[];
  /** What bubblewrap reads on fds FD.bindSources, FD.bindSources + 1, …: bind sources (opened at launch without following links) and data. */
  fds: PlanFd[];
  seccompProgram: Buffer;
  seccompSummary: string[];
}

export function renderJail(plan: SandboxPlan, hostUid: number, path: string | undefined): JailPlan {
  const bwrap = findExecutable('bwrap', path);
  if (!bwrap) throw new BrigError('BRIG_BWRAP_MISSING', 'bubblewrap (bwrap) is not installed', 'run `npm run setup` (or `sudo apt-get install bubblewrap`)');
  if (hostUid !== 0) checkUserNamespaces();
  const { identity, image } = plan;
  const seccomp = compileSeccomp({ arch: hostSeccompArch(), extraDeny: plan.syscalls.extraDeny, logOnly: plan.syscalls.logOnly });
  const fds = fdTable(FD.bindSources);
  // An image jail's user namespace and root come from brig-exec on these fds (image-root.ts).
  const imageFds = image ? { userns: fds.slot(), root: fds.slot() } : null;
  // The workspace of an image jail is bound id-mapped: the jail's user writes it as its owner would.
  const mappedBinds: MappedBind[] = [];
  const mapBind = (source: string, field: string): string => {
    const owner = statSync(source);
    const inRange = (id: number): boolean => image !== null && id >= image.idBase && id < image.idBase + image.idCount;
    // A directory the jail's range owns already (a sandbox's own) needs no mapping.
    if (inRange(owner.uid) || inRange(owner.gid)) return fds.source(source, field);
    const bound = { source: fds.source(source, field), target: fds.slot(), hostUid: owner.uid, hostGid: owner.gid };
    mappedBinds.push(bound);
    return bound.target;
  };
  const bridge = plan.network.bridge;
  const bwrapArgs = [
    // An image jail joins the user namespace brig-exec made (nested ones are capped at 0 in it, and seccomp refuses them).
    ...(imageFds ? ['--userns', imageFds.userns] : ['--unshare-user']),
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup',
    // allowlist: a network namespace of its own too; its only way out is the egress bridge.
    ...(plan.network.mode === 'host' ? [] : ['--unshare-net']),
    '--uid', String(identity.uid), '--gid', String(identity.gid),
    // A nested user namespace would let the jail map itself root again: refuse them twice (here and in seccomp).
    ...(imageFds ? [] : ['--disable-userns']),
    '--hostname', plan.hostname,
    '--cap-drop', 'ALL',
    ...plan.capabilities.flatMap((cap) => ['--cap-add', cap]),
    ...(plan.outlivesParent ? [] : ['--die-with-parent']),
    // With a terminal of its own the jail starts its own session (setsid below); without one,
    // a new session keeps it from the caller's terminal (no TIOCSTI into it).
    ...(plan.tty ? [] : ['--new-session']),
    ...(imageFds ? ['--bind-fd', imageFds.root, '/'] : []),
    ...plan.mounts.flatMap((step) => mountArgs(step, fds, mapBind)),
    ...(bridge ? bridge.mounts.flatMap((mount) => ['--ro-bind', mount.source, mount.target]) : []),
    '--chdir', plan.cwd,
    '--seccomp', String(FD.seccomp),
    '--json-status-fd', String(FD.status),
    '--',
    ...(plan.tty ? ['/usr/bin/setsid', '--ctty'] : []),
    ...(bridge ? bridge.prefix : []),
    ...plan.command,
  ];
  return {
    ...plan,
    // brig-exec keeps exactly the fds brig hands over (0 … the last of plan.fds) and closes the rest.
    argv: [
      brigSpawn.execPath,
      ...plan.limits.rlimits.flatMap((limit) => ['--rlimit', `${limit.name}=${limit.soft}:${limit.hard}`]),
      '--keep-fds', String(FD.bindSources + fds.entries.length - 1),
      ...(image && imageFds ? imageRootArgs(image, { uid: identity.hostUid, gid: identity.hostGid }, imageFds, mappedBinds, [...plan.mounts.map((step) => step.target), ...(bridge?.mounts.map((mount) => mount.target) ?? [])]) : []),
      '--', bwrap, ...bwrapArgs,
    ],
    fds: fds.entries,
    seccompProgram: seccomp.program,
    seccompSummary: seccomp.summary,
  };
}

/** One mount step as bubblewrap arguments; sources and data go on fds (host/sources.ts). */
export function mountArgs(step: MountStep, fds: ReturnType<typeof fdTable>, mapBind: (source: string, field: string) => string): string[] {
  switch (step.kind) {
    case 'bind':
      return [step.writable ? '--bind-fd' : '--ro-bind-fd', fds.source(step.source, step.field), step.target];
    case 'mapped-bind':
      return ['--bind-fd', mapBind(step.source, step.field), step.target];
    case 'symlink':
      return ['--symlink', step.linkTo, step.target];
    case 'proc':
      return ['--proc', step.target];
    case 'dev':
      return ['--dev', step.target];
    case 'proc-readonly':
      return ['--ro-bind', step.target, step.target];
    case 'tmpfs':
      return ['--size', String(step.sizeBytes), '--perms', octal(step.mode), '--tmpfs', step.target];
    case 'mask':
      return step.type === 'dir' ? ['--tmpfs', step.target, '--remount-ro', step.target] : ['--ro-bind', '/dev/null', step.target];
    case 'file':
      // bubblewrap makes data files 0600, its own user's only: --perms makes them readable by every user of the jail.
      return ['--perms', octal(step.mode), '--ro-bind-data', fds.data(step.data), step.target];
  }
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

function checkUserNamespaces(): void {
  const read = (file: string): string | null => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch {
      return null;
    }
  };
  if (read('/proc/sys/user/max_user_namespaces') === '0' || read('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    throw new BrigError(
      'BRIG_USERNS_UNAVAILABLE',
      'this kernel does not allow unprivileged user namespaces',
      'enable them: `sudo sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000`, or run brig as root',
    );
  }
}

