import { execFile } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { BrigError } from '../../protocol/index.ts';

/**
 * A sandbox's workspace on the host: a plain directory, or, when its policy
 * sets resources.diskMiB, a filesystem of its own: a sparse ext4 image of
 * that size (<root>/workspace.img, root's, 0600, never visible inside)
 * loop-mounted nosuid,nodev on the workspace directory. What the sandbox
 * writes there then fails with ENOSPC at the quota, and the host's disk
 * holds at most the image, however much the sandbox writes. Needs root (a
 * mount) and e2fsprogs (mkfs.ext4).
 */

const run = promisify(execFile);

export interface WorkspacePaths {
  /** The sandbox's own directory, holding the workspace and its image. */
  root: string;
  workspace: string;
}

const imageOf = (paths: WorkspacePaths): string => `${paths.root}/workspace.img`;

/** Makes the workspace directory, with a filesystem of diskMiB MiB when given, belonging to owner when given. */
export async function makeWorkspace(paths: WorkspacePaths, diskMiB: number | null, owner: { uid: number; gid: number } | null): Promise<void> {
  mkdirSync(paths.workspace, { mode: 0o755 });
  if (diskMiB === null) return;
  if (process.getuid?.() !== 0) {
    throw new BrigError('BRIG_POLICY_INVALID', `resources.diskMiB: a workspace quota needs a loop mount, which only a daemon running as root can make`, 'run brig serve as root, or drop resources.diskMiB (the workspace is then a plain directory on the daemon\'s disk)');
  }
  const image = imageOf(paths);
  const fd = openSync(image, 'wx', 0o600);
  try {
    // Sparse: the host's disk pays for what is written, up to the size.
    ftruncateSync(fd, diskMiB * 1024 * 1024);
  } finally {
    closeSync(fd);
  }
  const rootOwner = owner ? `${owner.uid}:${owner.gid}` : `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`;
  // No blocks kept for root (-m 0): the sandbox gets its whole quota; lazy init keeps a large image quick to make.
  await tool('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', `root_owner=${rootOwner},lazy_itable_init=1,lazy_journal_init=1`, image]);
  // nosuid,nodev: nothing the sandbox writes there is a setuid program or a device for the host.
  await tool('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', image, paths.workspace]);
  // The workspace is the sandbox's home: no lost+found in it.
  rmdirSync(`${paths.workspace}/lost+found`);
}

/** Removes the sandbox's directory, its workspace (unmounted first, when it has a filesystem of its own) included. */
export async function removeSandboxDir(paths: WorkspacePaths): Promise<void> {
  if (mounted(paths.workspace)) {
    // A jail still holding it (being stopped) keeps it busy: detach it now, the kernel frees it with the last user.
    await tool('umount', [paths.workspace])
      .catch(() => tool('umount', ['-l', paths.workspace]))
      .catch(() => {
        // Not mounted after all; or stuck, and then removing the directory below says so.
      });
  }
  rmSync(paths.root, { recursive: true, force: true });
}

/** Whether a filesystem is mounted exactly at path (mountinfo's fifth field, octal escapes as the kernel writes them). */
function mounted(path: string): boolean {
  const escaped = path.replace(/[ \t\n\\]/g, (char) => `\\${char.charCodeAt(0).toString(8).padStart(3, '0')}`);
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === escaped);
  } catch {
    // Not knowing: try to unmount; a path that is not mounted only makes umount fail.
    return true;
  }
}

async function tool(program: string, args: string[]): Promise<void> {
  try {
    await run(program, args);
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    const missing = failure.code === 'ENOENT';
    throw new BrigError(
      'BRIG_JAIL_SETUP',
      missing ? `cannot make the workspace's filesystem: ${program} is not installed` : `cannot make the workspace's filesystem: ${program} failed: ${(failure.stderr ?? failure.message).trim()}`,
      missing ? 'install e2fsprogs and util-linux (`npm run setup`)' : 'the daemon needs root and loop devices (/dev/loop-control) for resources.diskMiB',
    );
  }
}
