import { readFileSync } from 'node:fs';
import { findExecutable } from '../plan/index.ts';
import type { Accel } from './accel.ts';

/**
 * QEMU's command line for one sandbox: a `microvm` (no PCI, no firmware,
 * virtio-mmio devices), the guest kernel and brig's initramfs, the
 * sandbox's filesystem as a vhost-user virtiofs device (virtiofsd on the
 * host, in the sandbox's view), and virtio-serial ports for the init's
 * channel and the command's stdio, each a unix socket brig listens on.
 * No disk, no display, and a network device only for network.mode host
 * (network.ts). Kept apart from the rest of the
 * driver: another VMM (Firecracker) would be another renderer of the same parts.
 */

export const QEMU = 'qemu-system-x86_64';
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/** The channel's ports, by the names the init looks for; brig.service only in a daemon sandbox (envd's), brig.egress only in allowlist mode (egress.ts); both multiplexed. */
export const PORTS = ['brig.ctl', 'brig.stdin', 'brig.stdout', 'brig.stderr'] as const;
export type PortName = (typeof PORTS)[number] | 'brig.service' | 'brig.egress';

/** A host end: a unix socket brig listens on (QEMU connects), a file QEMU appends to, or nothing (the guest reads no data, writes go nowhere). */
export type HostEnd = { socket: string } | { appendTo: string } | 'null';

export interface VmMachine {
  qemu: string;
  accel: Accel;
  vmlinuz: string;
  initramfs: string;
  memoryMiB: number;
  cpus: number;
  /** virtiofsd's vhost-user socket: the sandbox's filesystem, tag `root`. */
  fsSocket: string;
  /** Each port, by name, and its host end. */
  ports: Array<{ name: PortName; end: HostEnd }>;
  /** The guest kernel's console (ttyS0: boot messages, the init's errors, a panic). */
  console: HostEnd;
  /** A virtio-net device on QEMU's user network (network.mode host only; network.ts). */
  network?: boolean;
}

function chardev(id: string, end: HostEnd): string {
  if (end === 'null') return `null,id=${id}`;
  if ('socket' in end) return `socket,id=${id},path=${optionValue(end.socket)}`;
  return `file,id=${id},path=${optionValue(end.appendTo)},append=on`;
}

/** A value inside QEMU's KEY=VALUE,… options: a comma is doubled, or it would end the value. */
function optionValue(text: string): string {
  return text.replaceAll(',', ',,');
}

export function qemuArgv(machine: VmMachine): string[] {
  return [
    machine.qemu,
    // x-option-roms=off: no firmware ROMs to scan. rtc=on: the wall clock, read once at boot (without it the guest
    // said 1970 on TCG, where no kvm clock tells it the time, and envd's signed URLs never expired).
    '-M', 'microvm,x-option-roms=off,rtc=on,memory-backend=mem',
    '-accel', machine.accel,
    '-cpu', machine.accel === 'kvm' ? 'host' : 'max',
    '-m', `${machine.memoryMiB}M`,
    '-smp', String(machine.cpus),
    // vhost-user (virtiofsd) maps the guest's memory: it must be a shared memfd.
    '-object', `memory-backend-memfd,id=mem,size=${machine.memoryMiB}M,share=on`,
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    // Once set up (its sockets connected, its memory and the kernel loaded), QEMU is nobody, and its own
    // seccomp filter refuses obsolete calls, exec and resource changes: a device-emulation bug a guest
    // reaches lands there, not in root. (elevateprivileges=deny would refuse -runas's own setuid.)
    '-sandbox', 'on,obsolete=deny,spawn=deny,resourcecontrol=deny',
    '-runas', 'nobody',
    // virtio-mmio as virtio 1.0, not legacy: virtiofsd (libvhost-user) refuses legacy devices.
    '-global', 'virtio-mmio.force-legacy=false',
    '-kernel', machine.vmlinuz,
    '-initrd', machine.initramfs,
    // reboot=t: the init's reboot ends QEMU (-no-reboot); panic=-1: so does a panic, at once.
    '-append', kernelCommandLine(machine.accel),
    '-chardev', chardev('console', machine.console),
    '-serial', 'chardev:console',
    '-chardev', chardev('fs', { socket: machine.fsSocket }),
    '-device', 'vhost-user-fs-device,chardev=fs,tag=root',
    '-device', 'virtio-serial-device,max_ports=8',
    ...machine.ports.flatMap(({ name, end }, index) => ['-chardev', chardev(`port${index}`, end), '-device', `virtserialport,chardev=port${index},name=${name}`]),
    // Only when the policy asks for the host's network: otherwise the guest has no network device at all.
    ...(machine.network ? ['-netdev', 'user,id=net0', '-device', 'virtio-net-device,netdev=net0'] : []),
  ];
}

/**
 * Under TCG the kernel's calibration of its clock against the emulated PIT
 * fails now and then on a loaded host ("Unable to calibrate against PIT"),
 * and about 3 boots in 10 hung there: the host's own TSC rate is given
 * instead (tsc_early_khz). KVM hands the guest the rate itself.
 */
export function kernelCommandLine(accel: Accel): string {
  const khz = accel === 'tcg' ? hostTscKhz() : null;
  // BRIG_VM_DEBUG=1: the kernel's whole boot log on the console (brig copies it to its stderr).
  const quiet = process.env.BRIG_VM_DEBUG ? [] : ['quiet', 'loglevel=3'];
  return ['console=ttyS0', 'reboot=t', 'panic=-1', ...quiet, ...(khz ? [`tsc_early_khz=${khz}`] : [])].join(' ');
}

function hostTscKhz(): number | null {
  try {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
    return mhz ? Math.round(Number(mhz) * 1000) : null;
  } catch {
    return null;
  }
}

export function findQemu(): string | null {
  return findExecutable(QEMU, [process.env.PATH, '/usr/bin'].filter(Boolean).join(':'));
}
