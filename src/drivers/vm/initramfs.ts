/**
 * The guest's initramfs: brig's own init and the kernel modules it loads,
 * nothing else (no shell, no busybox). What the init expects to find:
 *
 *   /init                   the guest init (static), 0755
 *   /lib/modules/<file>.ko  each module the guest loads
 *   /modules.order          the file names every boot loads, one a line, in load order
 *   /modules.network        those a VM with a network device loads too (the init's `net`)
 *   /dev /proc /sys /newroot /tmp   empty, to mount on
 *
 * Content-addressed: <cacheDir>/initramfs/<sha256 of its bytes>.cpio. The
 * cpio writer is reproducible, so the same init and modules give the same
 * bytes and the same name, and a new init (or kernel) simply makes a new
 * file beside the old one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { BrigError } from '../../protocol/index.ts';
import { cpioArchive, type CpioEntry } from './cpio.ts';
import type { GuestKernel } from './kernel.ts';

const MOUNT_POINTS = ['dev', 'proc', 'sys', 'newroot'];

/** Writes the initramfs for `kernel`'s modules and `initBinary` (unless it is there already) and returns its path. */
export async function buildInitramfs(cacheDir: string, kernel: GuestKernel, initBinary: string): Promise<string> {
  const archive = cpioArchive(await initramfsEntries(kernel, initBinary));
  const dir = join(cacheDir, 'initramfs');
  const path = join(dir, `${createHash('sha256').update(archive).digest('hex')}.cpio`);
  if ((await fs.stat(path).catch(() => undefined))?.size === archive.length) return path;
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    await fs.writeFile(temp, archive, { mode: 0o644 });
    await fs.rename(temp, path);
  } finally {
    await fs.rm(temp, { force: true });
  }
  return path;
}

/** The archive's entries, in the order they are written: every directory before what it holds. */
async function initramfsEntries(kernel: GuestKernel, initBinary: string): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = MOUNT_POINTS.map((path) => ({ kind: 'directory', path, mode: 0o755 }));
  // sticky and open to all, as any /tmp, should the init or its helpers write there
  entries.push({ kind: 'directory', path: 'tmp', mode: 0o1777 });
  entries.push({ kind: 'file', path: 'init', mode: 0o755, data: await readInit(initBinary) });
  entries.push({ kind: 'directory', path: 'lib', mode: 0o755 }, { kind: 'directory', path: 'lib/modules', mode: 0o755 });
  const names = kernel.modules.map((file) => basename(file));
  for (const [index, file] of kernel.modules.entries()) {
    entries.push({ kind: 'file', path: `lib/modules/${names[index]}`, mode: 0o644, data: await readModule(file, kernel.version) });
  }
  const boot = kernel.bootModules ?? names.length;
  const list = (part: string[]): Buffer => Buffer.from(part.map((name) => `${name}\n`).join(''));
  entries.push({ kind: 'file', path: 'modules.order', mode: 0o644, data: list(names.slice(0, boot)) });
  if (boot < names.length) entries.push({ kind: 'file', path: 'modules.network', mode: 0o644, data: list(names.slice(boot)) });
  return entries;
}

async function readInit(initBinary: string): Promise<Buffer> {
  try {
    return await fs.readFile(initBinary);
  } catch (error) {
    throw new BrigError('BRIG_VM_INIT_MISSING', `the guest init ${initBinary} cannot be read: ${(error as Error).message}`, 'run `npm run setup` (npm ci builds it with the rest of native/spawn)');
  }
}

async function readModule(file: string, version: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (error) {
    throw new BrigError('BRIG_VM_KERNEL_MODULE', `the cached module ${file} of kernel ${version} cannot be read: ${(error as Error).message}`, 'the cache was changed by hand: remove its kernel/ directory and brig fetches the kernel again');
  }
}
