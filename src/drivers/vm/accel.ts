import { spawn } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type Accel = 'kvm' | 'tcg';

/**
 * KVM or TCG. A /dev/kvm that opens is not enough: a nested one may refuse
 * QEMU's CPU model at once ("failed to set MSR") or hang in the guest's
 * early boot for good. So the first VM after each host boot boots the guest
 * kernel on KVM once, with no root (it panics, and panic=-1 ends QEMU), and
 * the verdict is kept in <stateDir>/vm for the rest of that host boot.
 * BRIG_VM_ACCEL=kvm|tcg skips all of it.
 */
const PROBE_LIMIT_MS = 20_000;
const VERDICT_FILE = 'accel.json';

interface Verdict {
  key: string;
  accel: Accel;
  detail: string;
}

export function forcedAccel(): Accel | null {
  const forced = process.env.BRIG_VM_ACCEL;
  return forced === 'kvm' || forced === 'tcg' ? forced : null;
}

/** Whether /dev/kvm exists and opens for reading and writing (not whether it boots anything). */
export function kvmPresent(): boolean {
  if (!existsSync('/dev/kvm')) return false;
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

/** What a VM would use now without booting anything: forced, absent, or the verdict kept for this host boot; null when not yet known. */
export function knownAccel(stateDir: string): { accel: Accel; detail: string } | null {
  const forced = forcedAccel();
  if (forced) return { accel: forced, detail: `BRIG_VM_ACCEL=${forced}` };
  if (!kvmPresent()) return { accel: 'tcg', detail: 'no usable /dev/kvm' };
  const verdict = readVerdict(stateDir);
  return verdict && verdict.key === verdictKey() ? { accel: verdict.accel, detail: verdict.detail } : null;
}

/** The accelerator for a VM booting `vmlinuz`; `say` hears once why KVM is not used when it is there. */
export async function chooseAccel(stateDir: string, qemu: string, vmlinuz: string, say: (line: string) => void): Promise<Accel> {
  const known = knownAccel(stateDir);
  if (known) return known.accel;
  const failure = await probeKvm(qemu, vmlinuz);
  const verdict: Verdict = failure === null
    ? { key: verdictKey(), accel: 'kvm', detail: 'KVM boots the guest kernel' }
    : { key: verdictKey(), accel: 'tcg', detail: `/dev/kvm is there but does not boot the guest kernel (${failure})` };
  if (verdict.accel === 'tcg') say(`${verdict.detail}: using TCG, every guest instruction emulated (slow); BRIG_VM_ACCEL=kvm forces KVM`);
  writeVerdict(stateDir, verdict);
  return verdict.accel;
}

/** null when the kernel boots on KVM to its panic (no root) and QEMU ends; else what went wrong. */
function probeKvm(qemu: string, vmlinuz: string): Promise<string | null> {
  const argv = ['-M', 'microvm,x-option-roms=off,rtc=off', '-accel', 'kvm', '-cpu', 'host', '-m', '128M', '-smp', '1', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-kernel', vmlinuz, '-append', 'console=ttyS0 reboot=t panic=-1 quiet', '-serial', 'stdio'];
  return new Promise((resolve) => {
    const child = spawn(qemu, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
    let output = '';
    const keep = (chunk: Buffer): void => void (output = (output + chunk.toString()).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_LIMIT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve(error.message);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && /Kernel panic/.test(output)) resolve(null);
      else if (signal === 'SIGKILL') resolve(`no end after ${PROBE_LIMIT_MS / 1000} s`);
      else {
        const lines = output.trim().split('\n');
        const why = lines.find((line) => /error/i.test(line)) ?? lines.filter((line) => /qemu|fail/i.test(line)).at(-1);
        resolve(why?.slice(0, 200) ?? `QEMU ended with ${code ?? signal}`);
      }
    });
  });
}

/** The host boot: a verdict holds until the host (and its KVM) starts again. */
function verdictKey(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function readVerdict(stateDir: string): Verdict | null {
  try {
    const parsed = JSON.parse(readFileSync(join(stateDir, 'vm', VERDICT_FILE), 'utf8')) as Partial<Verdict>;
    return typeof parsed.key === 'string' && (parsed.accel === 'kvm' || parsed.accel === 'tcg') && typeof parsed.detail === 'string' ? (parsed as Verdict) : null;
  } catch {
    return null;
  }
}

function writeVerdict(stateDir: string, verdict: Verdict): void {
  const path = join(stateDir, 'vm', VERDICT_FILE);
  writeFileSync(`${path}.${process.pid}`, JSON.stringify(verdict), { mode: 0o600 });
  renameSync(`${path}.${process.pid}`, path);
}
