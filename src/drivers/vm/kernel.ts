/**
 * The guest kernel: Debian's cloud kernel, fetched once from the mirror the
 * host's apt uses (nothing comes from anywhere else), and kept as vmlinuz,
 * its config and the few modules the guest loads, under
 *
 *   <cacheDir>/kernel/<release>/   vmlinuz, config, modules/*.ko, kernel.json
 *   <cacheDir>/kernel/current.json which release to use
 *   <cacheDir>/tmp/<pid>-<random>/ downloads and builds under way
 *
 * A release directory is built in tmp/ and renamed into place, and its
 * kernel.json is what makes it whole, so a half-built one is never used.
 * Once cached, nothing here runs apt: a host without a mirror boots VMs.
 *
 * apt-get download checks the .deb against the hashes of the mirror's signed
 * Release file, so the guest kernel is exactly as trusted as a kernel update.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { findExecutable } from '../plan/index.ts';
import { BrigError, processAlive } from '../../protocol/index.ts';
import { loadOrder } from './modules.ts';

/**
 * The modules the guest loads, all =m in Debian's cloud kernel (ext4,
 * devtmpfs, cgroups, user namespaces, seccomp and the 8250 serial console
 * are built in; it has no 9p). Their dependencies come along unasked. Only
 * what a VM uses today: the microvm's virtio-mmio bus, the serial ports and
 * virtiofs (each module is about 10 ms of every boot on TCG). vsock, a block
 * device, erofs and overlay join when the channel, images and snapshots need them.
 */
export const GUEST_MODULES: readonly string[] = ['virtio', 'virtio_ring', 'virtio_mmio', 'virtio_console', 'fuse', 'virtiofs'];
/** Kept too, and loaded only by a VM with a network device (network.mode host: the init's `net`). */
export const NETWORK_MODULES: readonly string[] = ['virtio_net'];
const WANTED: readonly string[] = [...GUEST_MODULES, ...NETWORK_MODULES];

export interface GuestKernel {
  /** The kernel's release, as uname -r says it in the guest: "6.1.0-57-cloud-amd64". */
  version: string;
  /** Absolute path of the kernel image. */
  vmlinuz: string;
  /** Absolute paths of the module files, each after the ones it depends on. */
  modules: string[];
  /** How many of them, from the first, every VM loads at boot (GUEST_MODULES and theirs); the rest are NETWORK_MODULES'. Absent: all. */
  bootModules?: number;
}

/** Told one line (no newline) per slow step, for a person watching the first use. */
export type Progress = (line: string) => void;

/** kernel.json: what the release directory holds. */
interface KernelManifest {
  version: string;
  /** The Debian package and its version, for the curious. */
  package: string;
  packageVersion: string;
  /** GUEST_MODULES when it was built: a brig that wants others builds again. */
  wanted: string[];
  /** File names under modules/, in load order. */
  modules: string[];
  /** How many of them, from the first, load at every boot. */
  boot: number;
}

/** Debian's architecture names for Node's. */
const DEBIAN_ARCH: Partial<Record<NodeJS.Architecture, string>> = { x64: 'amd64', arm64: 'arm64' };

export interface GuestKernelOpts {
  /**
   * Ask apt (its local lists; no download unless it names a newer kernel)
   * which kernel is current, and fetch that one if it is not cached: what
   * `brig tiers prepare vm` does after apt-get update brought a kernel update.
   * @default false
   */
  refresh?: boolean;
}

/** The guest kernel, from the cache when it is there (no apt at all), else fetched and cached first. */
export async function guestKernel(cacheDir: string, progress: Progress, opts: GuestKernelOpts = {}): Promise<GuestKernel> {
  const kernels = join(cacheDir, 'kernel');
  if (opts.refresh !== true) {
    const current = await readJson(join(kernels, 'current.json'));
    const cached = typeof current?.version === 'string' ? await cachedKernel(join(kernels, current.version)) : undefined;
    if (cached !== undefined) return cached;
  }
  const pkg = await kernelPackage();
  const version = pkg.slice('linux-image-'.length);
  const kernel = (await cachedKernel(join(kernels, version))) ?? (await fetchKernel(cacheDir, pkg, progress));
  await writeJsonAtomic(join(kernels, 'current.json'), { version });
  return kernel;
}

/** The kernel in a release directory, or undefined when it is missing, half-built or built for other modules. */
async function cachedKernel(dir: string): Promise<GuestKernel | undefined> {
  const manifest = (await readJson(join(dir, 'kernel.json'))) as KernelManifest | undefined;
  if (manifest === undefined || JSON.stringify(manifest.wanted) !== JSON.stringify(WANTED) || typeof manifest.boot !== 'number') return undefined;
  return { version: manifest.version, vmlinuz: join(dir, 'vmlinuz'), modules: manifest.modules.map((name) => join(dir, 'modules', name)), bootModules: manifest.boot };
}

/** Downloads `pkg`, unpacks it and keeps what the guest needs in <cacheDir>/kernel/<release>. */
async function fetchKernel(cacheDir: string, pkg: string, progress: Progress): Promise<GuestKernel> {
  const version = pkg.slice('linux-image-'.length);
  const aptGet = tool('apt-get');
  const dpkgDeb = tool('dpkg-deb');
  const work = await tempDir(cacheDir);
  try {
    progress(`fetching the guest kernel (${pkg}) from the Debian mirror apt uses; once, then cached in ${cacheDir}`);
    const started = Date.now();
    await fs.mkdir(join(work, 'download'));
    const got = await run(aptGet, ['download', pkg], join(work, 'download'));
    if (got.code !== 0) throw unavailable(`apt-get download ${pkg} failed: ${lastLines(got.stderr)}`, 'check that the mirror in /etc/apt/sources.list answers (apt-get update, as root, says); brig fetches from nowhere else');
    const deb = (await fs.readdir(join(work, 'download'))).find((name) => name.endsWith('.deb'));
    if (deb === undefined) throw unavailable(`apt-get download ${pkg} left no .deb`, 'run it by hand in an empty directory to see why');
    const debFile = join(work, 'download', deb);
    const bytes = (await fs.stat(debFile)).size;
    const unpacked = join(work, 'unpacked');
    const unpack = await run(dpkgDeb, ['-x', debFile, unpacked], work);
    if (unpack.code !== 0) throw unavailable(`dpkg-deb -x ${deb} failed: ${lastLines(unpack.stderr)}`, 'the download may be damaged: try again');
    const packageVersion = (await run(dpkgDeb, ['--field', debFile, 'Version'], work)).stdout.trim();
    progress(`downloaded ${(bytes / 1e6).toFixed(1)} MB and unpacked it in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const built = await keepWhatTheGuestNeeds(unpacked, join(work, 'kernel'), { version, package: pkg, packageVersion });
    const kernel = await cachedKernel(await moveIntoPlace(built, join(cacheDir, 'kernel', version), cacheDir));
    if (kernel === undefined) throw unavailable(`the cached kernel ${version} in ${cacheDir} is not whole`, 'remove it and try again');
    progress(`kept vmlinuz and ${kernel.modules.length} modules of ${version} (${WANTED.length} wanted, with what they depend on)`);
    return kernel;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** The versioned package the cloud metapackage depends on now ("linux-image-6.1.0-57-cloud-amd64"): apt's lists, no network. */
async function kernelPackage(): Promise<string> {
  const arch = DEBIAN_ARCH[process.arch];
  if (arch === undefined) throw unavailable(`Debian has no cloud kernel for ${process.arch}`, 'the VM tier runs on amd64 and arm64 hosts');
  const meta = `linux-image-cloud-${arch}`;
  const result = await run(tool('apt-cache'), ['depends', meta], '/');
  // a Debian package name (lowercase, digits, + - .), which becomes a directory name here
  const pkg = /^\s*Depends:\s*(linux-image-[a-z0-9][a-z0-9+.-]*)\s*$/m.exec(result.stdout)?.[1];
  if (result.code !== 0 || pkg === undefined) {
    throw unavailable(`apt knows no package ${meta}${result.stderr.trim() === '' ? '' : `: ${lastLines(result.stderr)}`}`, `run apt-get update (as root) so apt's lists name ${meta}; brig takes the guest kernel from Debian's mirror only`);
  }
  return pkg;
}

/** Copies vmlinuz, config and the wanted modules (with their dependencies) of an unpacked package into `dir`, kernel.json last. */
async function keepWhatTheGuestNeeds(unpacked: string, dir: string, about: Omit<KernelManifest, 'wanted' | 'modules' | 'boot'>): Promise<string> {
  const vmlinuz = join(unpacked, 'boot', `vmlinuz-${about.version}`);
  const modulesDir = join(unpacked, 'lib', 'modules', about.version);
  if (!(await exists(vmlinuz)) || !(await exists(modulesDir))) {
    throw unavailable(`${about.package} has no boot/vmlinuz-${about.version} or lib/modules/${about.version}`, 'Debian changed how the kernel package is laid out: please report it');
  }
  // Depth first in WANTED's order: the boot set and its dependencies come first, whole.
  const order = await loadOrder(modulesDir, WANTED);
  const boot = (await loadOrder(modulesDir, GUEST_MODULES)).length;
  await fs.mkdir(join(dir, 'modules'), { recursive: true, mode: 0o755 });
  // 0644 whatever the package says: all of it is public, and whoever runs QEMU must read it
  await copy(vmlinuz, join(dir, 'vmlinuz'));
  await copy(join(unpacked, 'boot', `config-${about.version}`), join(dir, 'config'));
  for (const file of order) await copy(file, join(dir, 'modules', basename(file)));
  const manifest: KernelManifest = { ...about, wanted: [...WANTED], modules: order.map((file) => basename(file)), boot };
  await writeJsonAtomic(join(dir, 'kernel.json'), manifest);
  return dir;
}

/**
 * Renames a built release directory to `target`. When another process got
 * there first with a good one, theirs stays and ours goes; one built for
 * other modules (an older brig) is moved aside first.
 */
async function moveIntoPlace(built: string, target: string, cacheDir: string): Promise<string> {
  await fs.mkdir(join(cacheDir, 'kernel'), { recursive: true, mode: 0o700 });
  if ((await cachedKernel(target)) !== undefined) return target;
  const asideDir = await tempDir(cacheDir);
  await fs.rename(target, join(asideDir, 'old')).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  try {
    await fs.rename(built, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || (await cachedKernel(target)) === undefined) throw error;
  } finally {
    await fs.rm(asideDir, { recursive: true, force: true });
  }
  return target;
}

/**
 * A fresh directory under <cacheDir>/tmp, named for this process; ones left
 * by processes that died are removed on the way (a download killed midway).
 */
async function tempDir(cacheDir: string): Promise<string> {
  const tmp = join(cacheDir, 'tmp');
  await fs.mkdir(tmp, { recursive: true, mode: 0o700 });
  for (const name of await fs.readdir(tmp)) {
    const pid = Number(name.split('-')[0]);
    if (pid !== process.pid && !processAlive(pid)) await fs.rm(join(tmp, name), { recursive: true, force: true });
  }
  const dir = join(tmp, `${process.pid}-${randomBytes(6).toString('hex')}`);
  await fs.mkdir(dir, { mode: 0o700 });
  return dir;
}


function tool(name: string): string {
  const path = findExecutable(name, process.env.PATH);
  if (path === null) throw unavailable(`${name} is not on PATH`, 'the VM tier fetches its guest kernel with apt from the host\'s Debian mirror: run brig on Debian (or a derivative) with apt');
  return path;
}

function run(file: string, args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** apt's last words, which say what went wrong ("E: ..."), on one line. */
function lastLines(text: string): string {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const errors = lines.filter((line) => line.startsWith('E:'));
  return (errors.length > 0 ? errors : lines.slice(-2)).join(' / ') || 'no message';
}

async function copy(from: string, to: string): Promise<void> {
  await fs.copyFile(from, to);
  await fs.chmod(to, 0o644);
}

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await fs.readFile(path, 'utf8')) as Record<string, unknown>;
  } catch {
    // missing or torn by hand: as good as not cached
    return undefined;
  }
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const temp = `${path}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
  await fs.writeFile(temp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o644 });
  await fs.rename(temp, path);
}

function unavailable(message: string, hint: string): BrigError {
  return new BrigError('BRIG_VM_KERNEL_UNAVAILABLE', message, hint);
}
