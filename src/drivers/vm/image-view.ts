import { mkdirSync, readFileSync } from 'node:fs';
import { BrigError, INSIDE_DIR } from '../../protocol/index.ts';
import { programRuntime, type ProgramRuntime } from '../envd-runtime/index.ts';
import { canStage, prepareUpper, stagedArgv } from '../host/index.ts';
import { findExecutable, unmappedBindProblem, type ImageRoot, type MountStep, type SandboxPlan } from '../plan/index.ts';
import { VIRTIOFSD } from './qemu.ts';

/**
 * A VM's root from an image: the image's layers, read-only and shared, under
 * the sandbox's own copy-on-write upper, as gVisor's (the tier maps no ids:
 * the layers hold the ids they have inside, and so does the upper). The
 * overlay is mounted by the staging wrapper (host/stage.ts) in a private
 * mount namespace, the host never sees it; the view's bubblewrap binds it as
 * / under the plan's mounts, and virtiofsd serves the whole to the guest.
 * Whatever the guest writes lands in the upper (`rwDir/upper`), as its ids
 * inside; virtiofsd makes no device file and, under the host helpers'
 * filter, no setuid or setgid file. The image is hostile (its layers, or a
 * sandbox's upper committed into one): bubblewrap runs as host root here,
 * and follows a link at a mount point even to /oldroot/…, the host's root
 * while it sets up, so the wrapper refuses an image with a link on the way
 * to any mount point (tested: a link to /oldroot/tmp made an empty file on
 * the host before).
 */
export function imageView(image: ImageRoot, dir: string): { root: string; wrap: (argv: string[], targets: string[]) => string[] } {
  if (image.idBase !== 0) throw new BrigError('BRIG_INTERNAL', `an image root for the vm tier with its ids at ${image.idBase}`, 'this is a bug in brig: a tier that maps no ids is given an idBase of 0');
  if (!canStage()) throw new BrigError('BRIG_VM_UNSUPPORTED', 'a root filesystem from an image on this host: mounting it takes perl (perl-base) on x86-64', 'install perl-base, or use the jail tier');
  const bundle = `${dir}/image`;
  mkdirSync(`${bundle}/rootfs`, { recursive: true, mode: 0o700 });
  image.layers.forEach((_, index) => mkdirSync(`${bundle}/layers/${index}`, { recursive: true, mode: 0o700 }));
  // The image's root is root's inside, and so on the host: this tier maps no ids.
  prepareUpper(image, 0);
  // The wrapper's own failures go to a file (its stderr may be a socket, which cannot be opened by name).
  return { root: `${bundle}/rootfs`, wrap: (argv, targets) => stagedArgv(bundle, imageViewErrors(dir), image, [], [], argv, targets) };
}

/**
 * The plan's mounts as the view binds them: an image's workspace is id-mapped
 * in the jail; here, with no ids mapped, it is a plain bind, refused unless
 * the sandbox's user owns it (its files would be a stranger's on the host).
 */
export function unmappedMounts(plan: SandboxPlan): MountStep[] {
  return plan.mounts.map((step): MountStep => {
    if (step.kind !== 'mapped-bind') return step;
    const problem = unmappedBindProblem(step.source, plan.identity, step.field);
    if (problem) throw new BrigError('BRIG_VM_UNSUPPORTED', problem, "give the workspace to the sandbox's user inside (chown), or use the jail tier, which maps ids");
    return { kind: 'bind', source: step.source, target: step.target, writable: true, field: step.field };
  });
}

/** Where the image's wrapper says why it refused (a link where brig mounts) or failed. */
function imageViewErrors(dir: string): string {
  return `${dir}/image.err`;
}

/** What the image's wrapper said, its last lines, for a setup error; '' when it said nothing. */
export function imageViewMessage(dir: string): string {
  try {
    return readFileSync(imageViewErrors(dir), 'utf8').slice(-2000).trim().split('\n').slice(-3).join(' | ');
  } catch {
    return '';
  }
}

/**
 * The host programs a VM from an image runs in it, which the image need not
 * have: virtiofsd (in the view, serving it) and bubblewrap (in the guest, the
 * second layer), each with its loader and libraries under brig's directory,
 * read-only. Null for the host's view, which has both in its /usr.
 */
export interface ImagePrograms {
  virtiofsd: ProgramRuntime;
  bwrap: ProgramRuntime;
  mounts: MountStep[];
}

export function imagePrograms(plan: SandboxPlan): ImagePrograms | null {
  if (!plan.image) return null;
  const bwrapPath = findExecutable('bwrap', process.env.PATH);
  if (!bwrapPath) throw new BrigError('BRIG_BWRAP_MISSING', 'bubblewrap (bwrap) is not installed', 'run `npm run setup` (or `sudo apt-get install bubblewrap`)');
  const virtiofsd = programRuntime(`${INSIDE_DIR}/virtiofsd`, VIRTIOFSD);
  const bwrap = programRuntime(`${INSIDE_DIR}/bwrap`, bwrapPath);
  const mounts = [...virtiofsd.files, ...bwrap.files].map((file): MountStep => ({ kind: 'bind', source: file.host, target: file.sandbox, writable: false, field: "the vm tier's own programs" }));
  return { virtiofsd, bwrap, mounts };
}
