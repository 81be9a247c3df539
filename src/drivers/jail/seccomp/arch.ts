/** Per-architecture facts the filter needs: audit arch value, syscall table, ABI quirks. */

import { BrigError } from '../../../protocol/index.ts';
import { AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64 } from './bpf.ts';
import { AARCH64_LAST, AARCH64_SYSCALLS, AARCH64_UNASSIGNED } from './syscalls-aarch64.ts';
import { X86_64_LAST, X86_64_SYSCALLS, X86_64_UNASSIGNED } from './syscalls-x86_64.ts';
import type { SeccompArch } from './types.ts';

export interface ArchInfo {
  /** seccomp_data.arch for native syscalls of this architecture. */
  auditArch: number;
  /** Syscall name to number, from the kernel's table for this architecture. */
  syscalls: Readonly<Record<string, number>>;
  /** Highest number in the table. */
  last: number;
  /** Numbers up to `last` the table does not name, as inclusive ranges (kept beside the table; a test checks them). */
  unassigned: readonly (readonly [number, number])[];
  /** True where the x32 ABI shares auditArch and marks its numbers with bit 0x40000000. */
  hasX32: boolean;
}

export const ARCHES: Readonly<Record<SeccompArch, ArchInfo>> = {
  x86_64: { auditArch: AUDIT_ARCH_X86_64, syscalls: X86_64_SYSCALLS, last: X86_64_LAST, unassigned: X86_64_UNASSIGNED, hasX32: true },
  aarch64: { auditArch: AUDIT_ARCH_AARCH64, syscalls: AARCH64_SYSCALLS, last: AARCH64_LAST, unassigned: AARCH64_UNASSIGNED, hasX32: false },
};

export function isSeccompArch(value: string): value is SeccompArch {
  return value === 'x86_64' || value === 'aarch64';
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
  // typeof, not Object.hasOwn: inherited names ('toString', '__proto__') are never numbers,
  // and hasOwn costs about a microsecond a call while the code is cold.
  const nr = ARCHES[arch].syscalls[name];
  return typeof nr === 'number' ? nr : undefined;
}

/** Number-to-name map of an architecture's table (for disassembly; built on demand, not kept). */
export function syscallNames(arch: SeccompArch): Map<number, string> {
  return new Map(Object.entries(ARCHES[arch].syscalls).map(([name, nr]) => [nr, name]));
}
