import type { SandboxPlan } from '../plan/index.ts';
import { guestConfig } from './guest.ts';
import { guestSize } from './limits.ts';
import { defaultStateDir } from '../../protocol/index.ts';
import { findQemu, PORTS, qemuArgv } from './qemu.ts';
import { knownAccel } from './accel.ts';
import { hasNetworkDevice } from './network.ts';
import { cpus } from 'node:os';

/** The plan as the vm tier renders it, for --dry-run: QEMU's command line and what the guest's init is told. */
export function describeVm(plan: SandboxPlan): { lines: string[]; json: Record<string, unknown> } {
  // On a terminal the init is told its size at the start; a dry run shows the caller's.
  const config = guestConfig(plan, 'foreground', plan.tty ? { columns: process.stdout.columns || 80, rows: process.stdout.rows || 24 } : undefined);
  const size = guestSize(plan, cpus().length);
  const dir = '<run-dir>';
  const argv = qemuArgv({
    qemu: findQemu() ?? 'qemu-system-x86_64', accel: knownAccel(defaultStateDir())?.accel ?? 'kvm', vmlinuz: '<guest kernel>', initramfs: '<initramfs>', memoryMiB: size.memoryMiB, cpus: size.cpus,
    fsSocket: `${dir}/fs.sock`, ports: [...PORTS, ...(plan.network.bridge ? ['brig.egress' as const] : [])].map((name) => ({ name, end: { socket: `${dir}/${name}.sock` } })), console: { socket: `${dir}/console.sock` },
    network: hasNetworkDevice(plan),
  });
  const lines = [
    `qemu: ${argv.join(' ')}`,
    "files: virtiofsd in the sandbox's view (built by bubblewrap as the jail's), tag root",
    ...config.map((record) => `init: ${record.map((field) => JSON.stringify(field)).join(' ')}`),
  ];
  return { lines, json: { argv, guest: config } };
}
