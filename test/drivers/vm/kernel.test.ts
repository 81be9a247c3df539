import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { GUEST_MODULES, NETWORK_MODULES, guestKernel, type GuestKernel } from '../../../src/drivers/vm/kernel.ts';
import { moduleDepends, moduleName } from '../../../src/drivers/vm/modules.ts';
import { isBrigError } from '../../../src/protocol/index.ts';
import { writeFakeModules } from './fixtures.ts';

const scratch = mkdtempSync(join(tmpdir(), 'brig-kernel-'));
test.after(() => rmSync(scratch, { recursive: true, force: true }));

/** The kernel package apt names now, asked the way an operator would. */
const aptPackage = /Depends:\s*(linux-image-\S+)/.exec(execFileSync('apt-cache', ['depends', 'linux-image-cloud-amd64'], { encoding: 'utf8' }))?.[1];

/** Runs fn with PATH set to `path` (the fetch finds apt through it). */
async function withPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = path;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

/** A directory of stand-in programs, each a shell script, with dpkg-deb the real one. */
function fakeTools(name: string, scripts: Record<string, string>): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  for (const [tool, body] of Object.entries(scripts)) {
    writeFileSync(join(dir, tool), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, tool), 0o755);
  }
  if (!(('dpkg-deb' in scripts))) symlinkSync('/usr/bin/dpkg-deb', join(dir, 'dpkg-deb'));
  return dir;
}

const kernelError = (code: string, pattern: RegExp) => (error: unknown) => isBrigError(error) && error.code === code && pattern.test(error.message);

let fetched: GuestKernel | undefined;
const cacheDir = join(scratch, 'cache');

test('the first call fetches Debian\'s cloud kernel from the mirror and keeps vmlinuz, config and the guest\'s modules, each after its dependencies', async (t) => {
  assert.ok(aptPackage, 'apt-cache names the cloud kernel package');
  const lines: string[] = [];
  const started = Date.now();
  fetched = await guestKernel(cacheDir, (line) => lines.push(line));
  t.diagnostic(`fetched and cached ${fetched.version} in ${Date.now() - started} ms: ${lines.join(' | ')}`);
  assert.equal(fetched.version, aptPackage.slice('linux-image-'.length));
  assert.ok(lines.length >= 2 && lines.some((line) => line.includes(aptPackage)), 'says what it downloads');
  const dir = join(cacheDir, 'kernel', fetched.version);
  assert.equal(fetched.vmlinuz, join(dir, 'vmlinuz'));
  assert.deepEqual(readdirSync(dir).sort(), ['config', 'kernel.json', 'modules', 'vmlinuz']);
  assert.ok(statSync(fetched.vmlinuz).size > 1_000_000);
  assert.deepEqual(readdirSync(join(cacheDir, 'tmp')), [], 'no download or unpacked package is left');
  const names = fetched.modules.map((file) => moduleName(file));
  for (const wanted of [...GUEST_MODULES, ...NETWORK_MODULES]) assert.ok(names.includes(wanted), `${wanted} is kept`);
  // what the lists resolve to on Debian 12's cloud kernel: the boot set is exactly GUEST_MODULES (virtiofs's fuse, virtio and
  // virtio_ring are named), loaded first; virtio_net brings failover and net_failover, after it
  assert.deepEqual(names.slice(0, fetched.bootModules).sort(), [...GUEST_MODULES].sort());
  assert.deepEqual(names.slice(fetched.bootModules).sort(), ['failover', 'net_failover', 'virtio_net']);
  assert.equal(new Set(names).size, names.length, 'each module once');
  fetched.modules.forEach((file, index) => {
    assert.equal(file, join(dir, 'modules', basename(file)));
    for (const dependency of moduleDepends(file)) assert.ok(names.indexOf(dependency) !== -1 && names.indexOf(dependency) < index, `${dependency} is loaded before ${moduleName(file)}`);
  });
});

test('once cached, no apt runs at all: a PATH without apt-get or apt-cache finds the same kernel', async () => {
  assert.ok(fetched, 'the fetch before passed');
  const lines: string[] = [];
  const again = await withPath(fakeTools('no-apt', {}), () => guestKernel(cacheDir, (line) => lines.push(line)));
  assert.deepEqual(again, fetched);
  assert.deepEqual(lines, [], 'nothing to report');
});

test('refresh asks apt which kernel is current and downloads nothing when that one is cached', async () => {
  assert.ok(fetched, 'the fetch before passed');
  const tools = fakeTools('refresh', { 'apt-cache': `exec /usr/bin/apt-cache "$@"`, 'apt-get': 'echo "apt-get must not run" >&2; exit 1' });
  const lines: string[] = [];
  assert.deepEqual(await withPath(`${tools}:/usr/bin:/bin`, () => guestKernel(cacheDir, (line) => lines.push(line), { refresh: true })), fetched);
  assert.deepEqual(lines, []);
});

test('without apt, an empty cache is an error that says why', async () => {
  await assert.rejects(
    withPath(fakeTools('bare', {}), () => guestKernel(join(scratch, 'bare-cache'), () => {})),
    kernelError('BRIG_VM_KERNEL_UNAVAILABLE', /apt-cache is not on PATH/),
  );
});

test('apt knowing no cloud kernel (no lists) is an error whose hint is apt-get update', async () => {
  const tools = fakeTools('no-lists', { 'apt-cache': 'echo "E: No packages found" >&2; exit 100' });
  await assert.rejects(withPath(`${tools}:/usr/bin:/bin`, () => guestKernel(join(scratch, 'no-lists-cache'), () => {})), (error: unknown) => {
    assert.ok(isBrigError(error) && error.code === 'BRIG_VM_KERNEL_UNAVAILABLE', String(error));
    assert.match(error.message, /apt knows no package linux-image-cloud-amd64: E: No packages found/);
    assert.match(error.hint, /apt-get update/);
    return true;
  });
});

test('a download that fails (no mirror) is an error with apt\'s words, and leaves nothing behind', async () => {
  const tools = fakeTools('no-mirror', {
    'apt-cache': 'echo "linux-image-cloud-amd64"; echo "  Depends: linux-image-9.9.9-test-cloud-amd64"',
    'apt-get': 'echo "W: Some index files failed to download." >&2; echo "E: Failed to fetch http://deb.debian.org/debian/pool/x.deb  Could not resolve \'deb.debian.org\'" >&2; exit 100',
  });
  const cache = join(scratch, 'no-mirror-cache');
  await assert.rejects(
    withPath(`${tools}:/usr/bin:/bin`, () => guestKernel(cache, () => {})),
    kernelError('BRIG_VM_KERNEL_UNAVAILABLE', /apt-get download linux-image-9\.9\.9-test-cloud-amd64 failed: E: Failed to fetch .* Could not resolve/),
  );
  assert.deepEqual(readdirSync(join(cache, 'tmp')), []);
  assert.ok(!existsSync(join(cache, 'kernel')));
});

test('a kernel package without a module the guest needs is an error naming the module, and nothing is cached', async () => {
  const version = '9.9.9-test-cloud-amd64';
  const root = join(scratch, 'package');
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  writeFileSync(join(root, 'DEBIAN', 'control'), `Package: linux-image-${version}\nVersion: 9.9.9-1\nArchitecture: amd64\nMaintainer: brig tests <tests@brig.invalid>\nDescription: a kernel package with virtiofs missing\n`);
  mkdirSync(join(root, 'boot'));
  writeFileSync(join(root, 'boot', `vmlinuz-${version}`), 'not a kernel');
  writeFileSync(join(root, 'boot', `config-${version}`), 'CONFIG_VIRTIO_FS=n\n');
  const modules: Record<string, string> = { 'kernel/drivers/virtio/virtio_ring.ko': '' };
  for (const name of GUEST_MODULES) if (name !== 'virtiofs' && name !== 'virtio_ring') modules[`kernel/misc/${name}.ko`] = 'virtio_ring';
  writeFakeModules(join(root, 'lib', 'modules', version), modules);
  const deb = join(scratch, 'test-kernel.deb');
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, deb], { stdio: 'ignore' });
  const tools = fakeTools('no-virtiofs', {
    'apt-cache': `echo "  Depends: linux-image-${version}"`,
    'apt-get': `cp '${deb}' .`,
  });
  const cache = join(scratch, 'no-virtiofs-cache');
  await assert.rejects(
    withPath(`${tools}:/usr/bin:/bin`, () => guestKernel(cache, () => {})),
    kernelError('BRIG_VM_KERNEL_MODULE', /the kernel package has no module virtiofs \(the VM guest needs it\)/),
  );
  assert.deepEqual(readdirSync(join(cache, 'tmp')), []);
  assert.ok(!existsSync(join(cache, 'kernel', version)));
});
