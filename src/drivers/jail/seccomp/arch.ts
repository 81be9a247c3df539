/** Per-architecture facts the filter needs: audit arch value, syscall table, ABI quirks. */

import { BrigError } from '../../../protocol/index.ts';
import { AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64 } from './bpf.ts';
import { AARCH64_SYSCALLS } from './syscalls-aarch64.ts';
import { X86_64_SYSCALLS } from './syscalls-x86_64.ts';
import type { SeccompArch } from './types.ts';

export interface ArchInfo {
  /** seccomp_data.arch for native syscalls of this architecture. */
  auditArch: number;
  /** Syscall name to number, from the kernel's table for this architecture. */
  syscalls: Readonly<Record<string, number>>;
  /** True where the x32 ABI shares auditArch and marks its numbers with bit 0x40000000. */
  hasX32: boolean;
}

export const ARCHES: Readonly<Record<SeccompArch, ArchInfo>> = {
  x86_64: { auditArch: AUDIT_ARCH_X86_64, syscalls: X86_64_SYSCALLS, hasX32: true },
  aarch64: { auditArch: AUDIT_ARCH_AARCH64, syscalls: AARCH64_SYSCALLS, hasX32: false },
};

export function isSeccompArch(value: string): value is SeccompArch {
  return Object.hasOwn(ARCHES, value);
}

/** The seccomp architecture of this host, from process.arch. */
export function hostSeccompArch(): SeccompArch {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'aarch64';
  throw new BrigError(
    'BRIG_JAIL_SETUP',
    `seccomp: no syscall table for this host's architecture '${process.arch}' (brig has x86_64 and aarch64)`,
    'run the jail on an x86_64 or aarch64 Linux host',
  );
}

/** Number of a syscall on an architecture, or undefined when that architecture has no such syscall. */
export function syscallNumber(arch: SeccompArch, name: string): number | undefined {
  const table = ARCHES[arch].syscalls;
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/** Number-to-name map of an architecture's table (for disassembly; built on demand, not kept). */
export function syscallNames(arch: SeccompArch): Map<number, string> {
  return new Map(Object.entries(ARCHES[arch].syscalls).map(([name, nr]) => [nr, name]));
}
