import { statSync } from 'node:fs';
import brigSpawn from 'brig-spawn';
import { defaultStateDir } from '../../protocol/index.ts';
import { chooseAccel, knownAccel } from './accel.ts';
import { vmArtefacts } from './build.ts';
import { requireVm } from './status.ts';

/**
 * `brig tiers prepare vm`: what the first VM would otherwise do on its way
 * up, done now. Unlike a VM's start, it asks apt whether its lists name a
 * newer guest kernel (after an apt-get update brought one) and fetches it.
 */
export async function prepareVm(say: (line: string) => void): Promise<string[]> {
  const qemu = requireVm();
  const stateDir = defaultStateDir();
  const artefacts = await vmArtefacts(stateDir, brigSpawn.vmInitPath, say, { refresh: true });
  const accel = await chooseAccel(stateDir, qemu, artefacts.kernel.vmlinuz, say);
  const megabytes = (path: string): string => `${(statSync(path).size / 1e6).toFixed(1)} MB`;
  return [
    `guest kernel ${artefacts.kernel.version}: ${artefacts.kernel.vmlinuz} (${megabytes(artefacts.kernel.vmlinuz)}), ${artefacts.kernel.modules.length} modules`,
    `initramfs: ${artefacts.initramfs} (${megabytes(artefacts.initramfs)})`,
    `acceleration: ${accel === 'kvm' ? 'KVM' : 'TCG'} (${knownAccel(stateDir)?.detail ?? 'checked now'})`,
  ];
}
