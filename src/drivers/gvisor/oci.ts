import { existsSync, lstatSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BrigError } from '../../protocol/index.ts';
import { MODE_SETTING_CALLS, SETID_BITS, unmappedBindProblem, unmappedOwnershipProblem, within, type ImageRoot, type MountStep, type SandboxPlan } from '../plan/index.ts';
import { canStage, type StageFold } from '../host/index.ts';
import { behindInit, INIT_INSIDE, insidePrograms, STATX_INSIDE, withPreload } from './init.ts';

/**
 * A SandboxPlan rendered as an OCI runtime spec for runsc. Pure: it reads
 * the host only to learn whether a bind source is a file or a directory (the
 * mount point made for it must be the same kind). bundle.ts writes it down.
 *
 * The root is a skeleton directory of the bundle's, read-only: it holds only
 * the mount points and the plan's symbolic links (an OCI mount cannot be a
 * link). Everything else is a mount. /proc and /dev are the Sentry's own, not
 * the host's: gVisor's /proc has no kcore, keys, sysrq-trigger, kallsyms or
 * timer_list, and its /proc/sys is not writable, so the plan's proc-readonly
 * steps and its masks inside /proc have nothing to do here.
 */

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** What the skeleton root holds: mount points and links, each at a path inside. */
export type SkeletonEntry = { kind: 'dir' | 'file'; path: string } | { kind: 'symlink'; path: string; linkTo: string };

export interface OciRender {
  /** config.json, with bundle-relative sources written as `bundle:NAME` until bundle.ts places them. */
  config: Record<string, unknown>;
  skeleton: SkeletonEntry[];
  /** Files the bundle holds and binds read-only (the plan's `file` steps; the empty file masks use). */
  files: Array<{ name: string; data: string; mode: number }>;
  /**
   * Host paths bound in, the policy field each came from, whether it is a
   * directory, and which of config.mounts binds it: opened again just before
   * runsc starts and staged in the bundle (stage.ts), so runsc mounts what was checked.
   */
  sources: Array<{ path: string; field: string; directory: boolean; mount: number }>;
  /** Whether runsc must apply linux.seccomp (--oci-seccomp). */
  seccomp: boolean;
  /** The image whose overlay is mounted on rootfs before runsc starts (stage.ts); null: the skeleton root. */
  image: ImageRoot | null;
  /** Masks and files mounted inside a staged source by the staging wrapper instead of runsc (foldable()). */
  folds: StageFold[];
}

/** A host directory or file brig adds for its own needs (envd's runtime, its socket directory). */
export interface ExtraBind {
  source: string;
  target: string;
  writable: boolean;
  field: string;
}

/** Where a bundle file is bound from: bundle.ts turns it into the path of the file it wrote. */
export const BUNDLE_PREFIX = 'bundle:';
const EMPTY_FILE = 'empty';

export function renderOci(plan: SandboxPlan, extra: ExtraBind[] = []): OciRender {
  const { image } = plan;
  // A tier that maps no ids (Driver.mapsIds) is given an image whose ids are the host's: an image's root is 0 on the host too.
  if (image && image.idBase !== 0) throw new BrigError('BRIG_INTERNAL', `an image root for gVisor with its ids at ${image.idBase}: gVisor maps no ids`, 'this is a bug in brig: the caller must give a tier that maps no ids an idBase of 0');
  if (image && !canStage()) throw unsupported('a root filesystem from an image on this host: mounting it takes perl (perl-base) on x86-64 or arm64');
  const render: OciRender = { config: {}, skeleton: [], files: [], sources: [], seccomp: false, image, folds: [] };
  const mounts: OciMount[] = [];
  const covered = (path: string): boolean => mounts.some((mount) => within(path, mount.destination));
  /**
   * A mount point in the skeleton, unless an earlier mount already provides the place (runsc makes it there).
   * An image's root is the sandbox's own, writable: runsc makes its mount points in it, as bubblewrap does in the jail's.
   */
  const point = (path: string, kind: 'dir' | 'file'): void => {
    if (image) return;
    const under = [...mounts].reverse().find((mount) => within(path, mount.destination));
    if (!under) return void render.skeleton.push({ kind, path });
    // runsc's gofer, as host root, would make a missing mount point in a bound host directory, read-only or not.
    if (under.type === 'bind' && !under.source.startsWith(BUNDLE_PREFIX) && !existsSync(join(under.source, relative(under.destination, path)))) {
      throw unsupported(`a mount at ${path}: it does not exist in ${under.source} (bound at ${under.destination}), and runsc would create it there on the host`);
    }
  };
  /** `directory` when the caller knows it: the egress socket's directory exists only once its session starts (not for --dry-run). */
  const bind = (source: string, target: string, writable: boolean, field: string, directory = isDirectory(source, field)): void => {
    point(target, directory ? 'dir' : 'file');
    render.sources.push({ path: source, field, directory, mount: mounts.length });
    mounts.push({ destination: target, type: 'bind', source, options: ['rbind', writable ? 'rw' : 'ro', 'nosuid', 'nodev'] });
  };
  /**
   * A mask or file inside a staged host directory, bound read-only, where only root could swap what lies
   * between the two: the staging wrapper mounts it, checking that again (stage.ts). Anything else stays runsc's.
   */
  const fold = (target: string, kind: 'file' | 'dir', file?: string): boolean => {
    if (!canStage()) return false;
    let index = mounts.length - 1;
    while (index >= 0 && !within(target, (mounts[index] as OciMount).destination)) index--;
    const under = mounts[index];
    const source = render.sources.findIndex((entry) => entry.mount === index);
    if (!under || source < 0 || !render.sources[source]?.directory || under.options.includes('rw') || target === under.destination) return false;
    const path = relative(under.destination, target);
    if (!rootsOnly(under.source, path, kind)) return false;
    render.folds.push({ source, path, kind, ...(file ? { file } : {}), target });
    return true;
  };
  const bundleFile = (name: string, data: string, mode: number, target: string): void => {
    if (!render.files.some((file) => file.name === name)) render.files.push({ name, data, mode });
    if (fold(target, 'file', name)) return;
    point(target, 'file');
    mounts.push({ destination: target, type: 'bind', source: `${BUNDLE_PREFIX}${name}`, options: ['rbind', 'ro', 'nosuid', 'nodev'] });
  };

  for (const step of plan.mounts) renderStep(step);
  const bridge = plan.network.bridge;
  for (const item of bridge?.mounts ?? []) bind(item.source, item.target, false, 'network.allowlist', item.source === bridge?.socketDir ? true : undefined);
  for (const item of extra) bind(item.source, item.target, item.writable, item.field);
  const programs = insidePrograms();
  bind(programs.statx, STATX_INSIDE, false, 'brig-statx.so');
  bind(programs.init, INIT_INSIDE, false, 'brig-init');
  // gVisor's gofer runs as host root and gives a created file the creator's inside ids (tested).
  const ownership = unmappedOwnershipProblem(plan);
  if (ownership) throw unsupported(ownership);

  function renderStep(step: MountStep): void {
    switch (step.kind) {
      case 'bind':
        return bind(step.source, step.target, step.writable, step.field);
      case 'mapped-bind':
        // gVisor maps no ids: the bind is plain, which is the same thing when the sandbox's user is the directory's owner.
        checkOwnedBy(step.source, plan.identity, step.field);
        return bind(step.source, step.target, true, step.field);
      case 'symlink':
        // The skeleton holds the links; an image's root is its own (the plan makes none for it).
        if (image) throw unsupported(`the link ${step.target} -> ${step.linkTo} in an image's root`);
        if (covered(step.target)) throw unsupported(`the link ${step.target} -> ${step.linkTo} lies inside another mount`);
        render.skeleton.push({ kind: 'symlink', path: step.target, linkTo: step.linkTo });
        return;
      case 'proc':
        point('/proc', 'dir');
        mounts.push({ destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] });
        return;
      case 'dev':
        // runsc fills its own /dev (null, zero, full, random, urandom, tty, pts, shm) over this tmpfs: no host device is visible.
        point('/dev', 'dir');
        mounts.push({ destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] });
        return;
      case 'proc-readonly':
        // The Sentry's /proc/sys is read-only to the sandbox already (tested).
        return;
      case 'tmpfs':
        point(step.target, 'dir');
        // Owned by the sandbox's user, as bubblewrap's are (its tmpfs is made inside the user's namespace).
        mounts.push({ destination: step.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', `size=${step.sizeBytes}`, `mode=${step.mode.toString(8)}`, `uid=${plan.identity.uid}`, `gid=${plan.identity.gid}`] });
        return;
      case 'mask':
        // Inside /proc: the Sentry's /proc has none of what the plan hides there (tested).
        if (step.proc) return;
        if (step.type === 'file') return bundleFile(EMPTY_FILE, '', 0o444, step.target);
        if (fold(step.target, 'dir')) return;
        point(step.target, 'dir');
        mounts.push({ destination: step.target, type: 'tmpfs', source: 'tmpfs', options: ['ro', 'nosuid', 'nodev', 'noexec', 'size=4096', 'mode=555'] });
        return;
      case 'file':
        return bundleFile(`file-${render.files.length}`, step.data, step.mode, step.target);
    }
  }

  const args = [...(plan.network.bridge?.prefix ?? []), ...plan.command];
  const seccomp = seccompSection(plan);
  render.seccomp = seccomp !== null;
  const hostNetwork = plan.network.mode === 'host';
  render.config = {
    ociVersion: '1.0.2',
    process: {
      // With a terminal, runsc hands the slave it is given on stdio to the command as its controlling tty.
      terminal: plan.tty,
      user: { uid: plan.identity.uid, gid: plan.identity.gid, additionalGids: [] },
      args: behindInit(args),
      env: Object.entries(withPreload(plan.env)).map(([name, value]) => `${name}=${value}`),
      cwd: plan.cwd,
      capabilities: capabilitySets(plan.capabilities),
      noNewPrivileges: true,
      rlimits: plan.limits.rlimits.map((limit) => ({ type: `RLIMIT_${limit.name}`, soft: limit.soft, hard: limit.hard })),
    },
    root: { path: 'rootfs', readonly: image === null },
    hostname: plan.hostname,
    mounts,
    linux: {
      namespaces: ['pid', 'ipc', 'uts', 'mount', ...(hostNetwork ? [] : ['network'])].map((type) => ({ type })),
      ...(seccomp ? { seccomp } : {}),
    },
  };
  return render;
}

/** A mapped bind rendered plain: the sandbox's user must be the directory's owner, or its files would be a stranger's on the host. */
function checkOwnedBy(source: string, identity: SandboxPlan['identity'], field: string): void {
  const problem = unmappedBindProblem(source, identity, field);
  if (problem) throw unsupported(problem);
}

/**
 * The sandbox's syscall filter as an OCI seccomp section, applied by the
 * Sentry to the sandbox's own syscalls (runsc --oci-seccomp). gVisor's Sentry
 * implements the syscalls itself and runs under its own host filter, so the
 * jail's base list (what the host kernel must never see) has no counterpart
 * here. Two things are enforced: the setuid and setgid rule (plan/setid.ts:
 * files here reach the host as written, root's as uid 0), as three masked
 * comparisons per call since OCI has no "any bit of", and the policy's extra
 * denials. logOnly denies nothing, as in the jail.
 */
function seccompSection(plan: SandboxPlan): Record<string, unknown> | null {
  const { extraDeny, logOnly } = plan.syscalls;
  if (logOnly) return null;
  const EPERM = 1;
  const ENOSYS = 38;
  const setid = MODE_SETTING_CALLS.flatMap(({ name, arg }) =>
    [0o4000, 0o2000, 0o6000].map((bits) => ({ names: [name], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM, args: [{ index: arg, value: SETID_BITS, valueTwo: bits, op: 'SCMP_CMP_MASKED_EQ' }] })),
  );
  const denied = extraDeny.length > 0 ? [{ names: [...extraDeny], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM }] : [];
  return { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [...setid, { names: ['openat2'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS }, ...denied] };
}

function capabilitySets(names: string[]): Record<string, string[]> {
  const caps = names.map((name) => (name.toUpperCase().startsWith('CAP_') ? name.toUpperCase() : `CAP_${name.toUpperCase()}`));
  return { bounding: caps, effective: caps, inheritable: [], permitted: caps, ambient: [] };
}

/**
 * Whether `path` under the host directory `root` is what the staging wrapper
 * may mount on: every directory from root down is a directory (no link),
 * root's, and writable by no one else, and the target is there, of its kind.
 * stage.ts checks the same again at launch.
 */
function rootsOnly(root: string, path: string, kind: 'file' | 'dir'): boolean {
  const names = path.split('/');
  let current = root;
  try {
    for (const [index, name] of ['', ...names].entries()) {
      current = name === '' ? root : `${current}/${name}`;
      const stats = lstatSync(current);
      if (index === names.length) return kind === 'file' ? stats.isFile() : stats.isDirectory();
      if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o022) !== 0) return false;
    }
  } catch {
    return false;
  }
  return false;
}

function isDirectory(source: string, field: string): boolean {
  try {
    return statSync(source).isDirectory();
  } catch {
    throw new BrigError('BRIG_PATH_MISSING', `${field}: ${source} does not exist on the host`, 'create it first, or remove it from the policy (a sandbox can only be given paths that exist)');
  }
}


function unsupported(what: string): BrigError {
  return new BrigError('BRIG_GVISOR_UNSUPPORTED', `the gVisor tier cannot honour ${what}`, 'drop it from the policy, or run this sandbox on the jail tier (--tier jail); docs/tiers.md lists what gVisor renders');
}
