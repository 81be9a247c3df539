/**
 * What a VM needs before QEMU starts, independent of QEMU's command line (a
 * Firecracker renderer would take the same): the guest kernel and the
 * initramfs with brig's init. Both live in <stateDir>/vm (0700): the first
 * use fetches and builds, with progress; afterwards this is a cache lookup
 * and a hash of a few megabytes, and runs no apt.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { buildInitramfs } from './initramfs.ts';
import { guestKernel, type GuestKernel, type GuestKernelOpts, type Progress } from './kernel.ts';

export interface VmArtefacts {
  kernel: GuestKernel;
  /** Absolute path of the initramfs (uncompressed newc cpio), for -initrd. */
  initramfs: string;
}

/** The kernel and initramfs for VMs of this state directory, fetched and built on first use. */
export async function vmArtefacts(stateDir: string, initBinary: string, progress: Progress, opts: GuestKernelOpts = {}): Promise<VmArtefacts> {
  const cacheDir = join(stateDir, 'vm');
  await fs.mkdir(cacheDir, { recursive: true, mode: 0o700 });
  // mkdir keeps the mode of a directory that was there: the cache holds what every guest boots, so it is brig's alone
  await fs.chmod(cacheDir, 0o700);
  const kernel = await guestKernel(cacheDir, progress, opts);
  return { kernel, initramfs: await buildInitramfs(cacheDir, kernel, initBinary) };
}
