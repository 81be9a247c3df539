import { closeSync, existsSync, fstatSync } from 'node:fs';
import { openSource } from './sources.ts';
import type { ImageRoot } from '../plan/index.ts';

/**
 * Bind sources, mounted exactly as checked. runsc's gofer opens a bind
 * source by its path, following links, a moment after brig looked at it: a
 * sandbox that writes the workspace could swap a directory for a link in
 * between. So runsc starts in a private mount namespace of its own where
 * each source is first bind-mounted on a staging point in the bundle, and
 * config.json names the staging points (in brig's own 0700 directory, where
 * no sandbox can plant anything). Just before, brig opened every source
 * itself (host/sources.ts: one component at a time, no link followed) and
 * noted its identity (device and inode); once staged, every staging point
 * must show that same identity, or runsc never starts. A link planted in
 * between leads elsewhere, to another inode, and is caught.
 *
 * (Binding the opened descriptor itself, as bubblewrap's --bind-fd does, is
 * refused by the kernel here: the descriptor's mount belongs to the host's
 * namespace, not the new one, and mount(2) binds only from its own.)
 *
 * The staging mounts exist only in that namespace: they go when the
 * sandbox's last process does, and the host's mount table never sees them.
 */

/**
 * A mask or file mounted by the staging wrapper inside a staged read-only
 * host directory, rather than by the tier (gVisor: each mount runsc makes is
 * a gofer connection, about 2 ms of every start on the ptrace platform, and
 * a plan's /etc alone has a dozen). `source` is the index of the staged
 * source, `path` the target relative to it; `file` the bundle file bound
 * there (a `dir` is an empty read-only tmpfs).
 */
export interface StageFold {
  source: number;
  path: string;
  kind: 'file' | 'dir';
  file?: string;
  /** Where it appears inside, for --dry-run. */
  target: string;
}

const PERL = '/usr/bin/perl';

/**
 * One small process does it all: perl (perl-base is Essential on Debian)
 * calls unshare(2) and mount(2) itself and execs runsc, where unshare(1),
 * bash, one mount(8) per source and stat(1) cost about 70 ms a launch.
 * Syscall numbers by architecture (no syscall.ph needed).
 */
const SYSCALLS: Partial<Record<string, { unshare: number; mount: number }>> = {
  x64: { unshare: 272, mount: 165 },
  arm64: { unshare: 97, mount: 40 },
};

/**
 * Arguments: unshare and mount's numbers, the bundle, the error file, the
 * image's layer count, its layers (top first), upper and work (when it has
 * layers), the count of bind sources, count × (source, identity), the count
 * of folds, count × (kind, source index, path, bundle file), the count of
 * paths inside the image's root that must have no link on the way, those
 * paths, then the command.
 */
const SCRIPT = `
use strict;
my ($unshare, $mount, $bundle, $errors, $layers) = splice(@ARGV, 0, 5);
sub fail { open(my $log, '>>', $errors); print $log "$_[0]\\n"; exit 125 }
# CLONE_NEWNS, then MS_REC|MS_PRIVATE on /: nothing mounted here reaches the host.
syscall($unshare, 0x20000) == 0 or fail("cannot make a mount namespace: $!");
# syscall() hands strings over as buffers it may write: never a read-only literal.
my ($none, $root, $overlay) = ("none", "/", "overlay");
syscall($mount, $none, $root, 0, 0x44000, 0) == 0 or fail("cannot make the mounts private: $!");
if ($layers > 0) {
  # An image root: each layer bound at layers/I (MS_BIND|MS_REC), so the overlay's options name them
  # in a few bytes each, then the overlay (MS_NOSUID|MS_NODEV) on rootfs, with the sandbox's upper.
  chdir("$bundle/layers") or fail("cannot enter $bundle/layers: $!");
  my @lower;
  for my $i (0 .. $layers - 1) {
    my $layer = shift @ARGV;
    syscall($mount, $layer, "./$i", 0, 0x5000, 0) == 0 or fail("cannot bind the layer $layer: $!");
    push @lower, "$i";
  }
  my ($upper, $work) = splice(@ARGV, 0, 2);
  my $options = "lowerdir=" . join(":", @lower) . ",upperdir=$upper,workdir=$work,redirect_dir=off,metacopy=off";
  syscall($mount, $overlay, "$bundle/rootfs", $overlay, 6, $options) == 0 or fail("cannot mount the image's overlay: $!");
  chdir("/");
}
my $count = shift @ARGV;
for my $i (0 .. $count - 1) {
  my ($source, $identity) = splice(@ARGV, 0, 2);
  # MS_BIND|MS_REC
  my $point = "$bundle/stage/$i";
  syscall($mount, $source, $point, 0, 0x5000, 0) == 0 or fail("cannot stage $source: $!");
  my @stats = stat($point) or fail("cannot stat the staged $source: $!");
  "$stats[0]:$stats[1]" eq $identity or fail("$source changed between its check and its mount (a link or another directory put in its place)");
}
# Masks and files inside a staged read-only directory (oci.ts, foldable): every directory down to
# the target is checked to be one only root may change, so nothing can redirect the mount.
my $folds = shift @ARGV;
my ($tmpfs, $empty) = ("tmpfs", "size=4096,mode=555");
for my $f (0 .. $folds - 1) {
  my ($kind, $i, $path, $file) = splice(@ARGV, 0, 4);
  my $at = "$bundle/stage/$i";
  for my $name (split(m{/}, $path)) {
    my @dir = lstat($at) or fail("cannot look at $at: $!");
    (-d _ && $dir[4] == 0 && !($dir[2] & 022)) or fail("$at is no longer a directory only root may change: $path is not masked");
    $at .= "/$name";
  }
  lstat($at) or fail("cannot look at $at: $!");
  -l _ and fail("$at became a link: $path is not masked");
  if ($kind eq "file") {
    -f _ or fail("$at is no longer a file");
    my $from = "$bundle/files/$file";
    # MS_BIND, then MS_REMOUNT|MS_BIND|MS_RDONLY|MS_NOSUID|MS_NODEV
    syscall($mount, $from, $at, 0, 0x1000, 0) == 0 or fail("cannot mount over $at: $!");
    syscall($mount, $none, $at, 0, 0x1027, 0) == 0 or fail("cannot make $at read-only: $!");
  } else {
    -d _ or fail("$at is no longer a directory");
    # MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC
    syscall($mount, $tmpfs, $at, $tmpfs, 0xf, $empty) == 0 or fail("cannot mount over $at: $!");
  }
}
# Where the next program (bubblewrap, as root) mounts inside the image's root: no link on the way, or
# it would be followed out of the root (a link to /oldroot/... reaches the host's files from there).
my $targets = shift @ARGV;
for my $t (0 .. $targets - 1) {
  my $target = shift @ARGV;
  my $at = "$bundle/rootfs";
  for my $name (grep { length } split(m{/}, $target)) {
    $at .= "/$name";
    lstat($at) or last;
    -l _ and fail("the image has a link at $target (or on its way): brig mounts there, and will not follow it");
  }
}
exec { $ARGV[0] } @ARGV or fail("cannot run $ARGV[0]: $!");
`;

/** Whether this host can stage (perl, and an architecture whose syscall numbers are known). */
export function canStage(): boolean {
  return SYSCALLS[process.arch] !== undefined && existsSync(PERL);
}

/** Where source i is staged. */
export function stagePoint(bundleDir: string, index: number): string {
  return `${bundleDir}/stage/${index}`;
}

/**
 * The wrapper that mounts the image root (if any), stages, checks, then runs
 * `argv` (runsc), in a private mount namespace. Opening the sources is the
 * check that counts: pass the identities sourceIdentities() returned just
 * before the launch.
 */
export function stagedArgv(bundleDir: string, errors: string, image: ImageRoot | null, sources: Array<{ path: string; identity: string }>, folds: StageFold[], argv: string[], rootTargets: string[] = []): string[] {
  const numbers = SYSCALLS[process.arch] ?? { unshare: -1, mount: -1 };
  const root = image ? [String(image.layers.length), ...[...image.layers].reverse(), `${image.rwDir}/upper`, `${image.rwDir}/work`] : ['0'];
  const pairs = sources.flatMap((source) => [source.path, source.identity]);
  const folded = folds.flatMap((fold) => [fold.kind, String(fold.source), fold.path, fold.file ?? '-']);
  return [PERL, '-e', SCRIPT, '--', String(numbers.unshare), String(numbers.mount), bundleDir, errors, ...root, String(sources.length), ...pairs, String(folds.length), ...folded, String(rootTargets.length), ...rootTargets, ...argv];
}

/** Every source opened without following a link (or refused, naming its field), and its device:inode. */
export function sourceIdentities(sources: Array<{ path: string; field: string }>): Array<{ path: string; identity: string }> {
  return sources.map((source) => {
    const fd = openSource(source.path, source.field);
    try {
      const stats = fstatSync(fd, { bigint: true });
      return { path: source.path, identity: `${stats.dev}:${stats.ino}` };
    } finally {
      closeSync(fd);
    }
  });
}
