import { existsSync } from 'node:fs';
import { BrigError, defaultStateDir } from '../../protocol/index.ts';
import { findExecutable } from '../plan/index.ts';
import type { TierStatus } from '../driver.ts';
import { findQemu, VIRTIOFSD } from './qemu.ts';
import { knownAccel } from './accel.ts';

const FIX = 'run `npm run setup` (or `sudo apt-get install qemu-system-x86 bubblewrap`), and run brig as root';

/** Whether a microVM can start here: QEMU and virtiofsd from Debian, bubblewrap, root, x86-64; and with what acceleration. */
export function vmStatus(): TierStatus {
  if (process.arch !== 'x64') return { available: false, detail: `the vm tier is built for x86-64 guests; this host is ${process.arch}` };
  if (process.getuid?.() !== 0) return { available: false, detail: 'the vm tier needs root (virtiofsd serves the sandbox\'s files as their owners)', fix: 'run brig as root (sudo), or use the jail tier' };
  const qemu = findQemu();
  if (!qemu) return { available: false, detail: 'QEMU (qemu-system-x86_64) is not installed', fix: FIX };
  if (!existsSync(VIRTIOFSD)) return { available: false, detail: `virtiofsd is not at ${VIRTIOFSD} (Debian's qemu-system-common has it)`, fix: FIX };
  if (!findExecutable('bwrap', process.env.PATH)) return { available: false, detail: 'bubblewrap (bwrap) is not installed: it builds the view virtiofsd serves', fix: FIX };
  const accel = knownAccel(defaultStateDir());
  const how = !accel ? 'KVM if /dev/kvm boots the guest kernel (checked by the first VM)' : accel.accel === 'kvm' ? `KVM (${accel.detail})` : `TCG (${accel.detail}): every guest instruction is emulated, slow`;
  return { available: true, detail: `${qemu}, ${how}` };
}

export function requireVm(): string {
  const status = vmStatus();
  const path = findQemu();
  if (!status.available || !path) throw new BrigError('BRIG_TIER_UNAVAILABLE', `the vm tier cannot run on this host: ${status.detail}`, status.fix ?? FIX);
  return path;
}
