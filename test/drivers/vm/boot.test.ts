import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vmArtefacts } from '../../../src/drivers/vm/build.ts';
import { buildInitramfs } from '../../../src/drivers/vm/initramfs.ts';
import { findExecutable } from '../../../src/drivers/plan/index.ts';
import { BRIG_INIT, testCacheDir } from './fixtures.ts';

/**
 * The artefacts as the guest sees them: Debian's kernel under QEMU (TCG,
 * microvm) unpacks the initramfs and runs its /init. No VM driver here, just
 * the kernel, the archive and the serial console.
 */
const QEMU = findExecutable('qemu-system-x86_64', process.env.PATH);
const CC = findExecutable('cc', process.env.PATH);
const skipQemu = process.arch !== 'x64' ? 'the boot test runs the amd64 cloud kernel' : QEMU === null ? 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)' : false;

const scratch = mkdtempSync(join(tmpdir(), 'brig-boot-'));
test.after(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The host's TSC rate in kHz. Under TCG the guest's TSC runs at the host's,
 * and the kernel's own calibration against the PIT fails on a busy host (it
 * then marks the TSC unstable and, with no HPET or ACPI PM timer on microvm,
 * hangs before /init: 3 boots in 10 here); tsc_early_khz skips it.
 */
function hostTscKhz(): number {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return mhz === undefined ? 2_000_000 : Math.round(Number(mhz) * 1000);
}

/** Boots vmlinuz with the initramfs until the guest powers off or panics (-no-reboot ends QEMU on either), and returns the console. */
function boot(vmlinuz: string, initramfs: string): Promise<string> {
  const append = `console=ttyS0 reboot=t panic=-1 tsc_early_khz=${hostTscKhz()}`;
  const args = ['-M', 'microvm', '-accel', 'tcg', '-m', '256', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-kernel', vmlinuz, '-initrd', initramfs, '-append', append, '-serial', 'stdio'];
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const qemu = execFile(QEMU as string, args, { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      clearTimeout(timer);
      // QEMU exits 0 on SIGTERM, so a hung guest is known by the timer, not the exit code
      if (timedOut) reject(new Error(`the guest did not power off within 60 s; its console ended:\n${stdout.split('\n').slice(-15).join('\n')}`));
      else if (error !== null) reject(new Error(`${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      qemu.kill();
    }, 60_000);
  });
}

test('the kernel unpacks the initramfs and runs its /init', { skip: skipQemu }, async (t) => {
  const { kernel, initramfs } = await vmArtefacts(testCacheDir(), BRIG_INIT, (line) => t.diagnostic(line));
  const started = Date.now();
  const console = await boot(kernel.vmlinuz, initramfs);
  t.diagnostic(`booted to /init and back in ${Date.now() - started} ms (TCG)`);
  assert.match(console, new RegExp(`Linux version ${kernel.version.replaceAll('.', '\\.')} `));
  assert.doesNotMatch(console, /Initramfs unpacking failed|junk within compressed archive|broken padding/i);
  assert.match(console, /Run \/init as init process/);
  // brig-init given no command says how to use it: /init from the archive ran
  assert.match(console, /usage: brig-init -- PROGRAM/);
});

const LOADER = `
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

/* pid 1 for the test: loads /modules.order's modules in order, then /modules.network's (the init's on request), says how each went, powers off. */
int main(void) {
  FILE *order = fopen("/modules.order", "r");
  char name[256], path[300];
  int failed = order == NULL;
  for (int list = 0; list < 2; list++, order = list == 1 ? fopen("/modules.network", "r") : NULL)
  while (order != NULL && fgets(name, sizeof name, order) != NULL) {
    name[strcspn(name, "\\n")] = 0;
    snprintf(path, sizeof path, "/lib/modules/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) {
      printf("brig-test: cannot load %s: %s\\n", name, strerror(errno));
      failed = 1;
    } else printf("brig-test: loaded %s\\n", name);
    if (fd >= 0) close(fd);
  }
  printf("brig-test: %s\\n", failed ? "FAILED" : "all loaded");
  fflush(stdout);
  reboot(RB_AUTOBOOT);
  return 0;
}
`;

test('every module of the initramfs loads into the guest kernel in the order its lists give (modules.order, then modules.network)', { skip: skipQemu || (CC === null ? 'no C compiler to build the test\'s module-loading init' : false) }, async (t) => {
  writeFileSync(join(scratch, 'loader.c'), LOADER);
  execFileSync(CC as string, ['-static', '-O2', '-o', join(scratch, 'loader'), join(scratch, 'loader.c')]);
  const { kernel } = await vmArtefacts(testCacheDir(), BRIG_INIT, (line) => t.diagnostic(line));
  const initramfs = await buildInitramfs(join(scratch, 'cache'), kernel, join(scratch, 'loader'));
  const console = await boot(kernel.vmlinuz, initramfs);
  const loaded = [...console.matchAll(/brig-test: loaded (\S+)/g)].map((match) => match[1]);
  assert.deepEqual(loaded, kernel.modules.map((file) => file.split('/').pop()), console.split('\n').filter((line) => line.includes('brig-test')).join('\n'));
  assert.match(console, /brig-test: all loaded/);
});
