/**
 * Classic BPF to text, one instruction per line, with seccomp annotations:
 * which seccomp_data field a load reads, which syscall a comparison names,
 * which action a return takes. Jump targets are absolute instruction numbers.
 *
 *   0000: ld   [4]                            ; A = arch
 *   0001: jeq  #0xc000003e    jt 0003 jf 0002 ; AUDIT_ARCH_X86_64
 *   0002: ret  #0x80000000                    ; KILL_PROCESS
 */

import { ARCHES, syscallNames } from './arch.ts';
import {
  BPF_A, BPF_ABS, BPF_ALU, BPF_IMM, BPF_JA, BPF_JMP, BPF_LD, BPF_LDX, BPF_LEN, BPF_MEM, BPF_MISC, BPF_RET,
  BPF_ST, BPF_STX, BPF_TXA, BPF_X, SECCOMP_DATA, SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ALLOW, SECCOMP_RET_DATA,
  SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE,
  SECCOMP_RET_TRAP, SECCOMP_RET_USER_NOTIF, X32_SYSCALL_BIT, decode,
} from './bpf.ts';
import type { Insn } from './bpf.ts';
import type { SeccompArch } from './types.ts';

const ALU_NAMES: Record<number, string> = {
  0x00: 'add', 0x10: 'sub', 0x20: 'mul', 0x30: 'div', 0x40: 'or', 0x50: 'and', 0x60: 'lsh', 0x70: 'rsh', 0x80: 'neg', 0x90: 'mod', 0xa0: 'xor',
};
const JUMP_NAMES: Record<number, string> = { 0x00: 'ja', 0x10: 'jeq', 0x20: 'jgt', 0x30: 'jge', 0x40: 'jset' };
const ACTIONS: Record<number, string> = {
  [SECCOMP_RET_KILL_PROCESS]: 'KILL_PROCESS', [SECCOMP_RET_KILL_THREAD]: 'KILL_THREAD', [SECCOMP_RET_TRAP]: 'TRAP',
  [SECCOMP_RET_ERRNO]: 'ERRNO', [SECCOMP_RET_USER_NOTIF]: 'USER_NOTIF', [SECCOMP_RET_TRACE]: 'TRACE',
  [SECCOMP_RET_LOG]: 'LOG', [SECCOMP_RET_ALLOW]: 'ALLOW',
};
const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 38: 'ENOSYS' };

export function disassemble(program: Buffer): string[] {
  const insns = decode(program);
  const arch = nativeArch(insns);
  const names = arch ? syscallNames(arch) : new Map<number, string>();
  let loaded: number | undefined;
  return insns.map((insn, pc) => {
    const { text, note } = render(insn, pc, loaded, names);
    if (insn.code === (BPF_LD | BPF_ABS)) loaded = insn.k;
    return note ? `${text.padEnd(44)} ; ${note}` : text;
  });
}

/** The architecture whose audit value the program compares against, if it is one brig knows. */
function nativeArch(insns: readonly Insn[]): SeccompArch | undefined {
  const values = new Set(insns.filter((insn) => (insn.code & 0x07) === BPF_JMP).map((insn) => insn.k));
  return (Object.keys(ARCHES) as SeccompArch[]).find((arch) => values.has(ARCHES[arch].auditArch));
}

function render(insn: Insn, pc: number, loaded: number | undefined, names: Map<number, string>): { text: string; note?: string } {
  const { code, jt, jf, k } = insn;
  const at = `${pad(pc)}: `;
  const src = (code & BPF_X) !== 0 ? 'x' : `#${hex(k)}`;
  switch (code & 0x07) {
    case BPF_LD:
    case BPF_LDX: {
      const op = (code & 0x07) === BPF_LD ? 'ld' : 'ldx';
      const mode = code & 0xe0;
      if (mode === BPF_ABS) return { text: `${at}${op.padEnd(4)} [${k}]`, note: `A = ${field(k)}` };
      if (mode === BPF_LEN) return { text: `${at}${op.padEnd(4)} #len`, note: `${SECCOMP_DATA.size}, sizeof(struct seccomp_data)` };
      if (mode === BPF_MEM) return { text: `${at}${op.padEnd(4)} M[${k}]` };
      if (mode === BPF_IMM) return { text: `${at}${op.padEnd(4)} #${hex(k)}` };
      return { text: `${at}${op.padEnd(4)} ??? (code ${hex(code)})` };
    }
    case BPF_ST:
      return { text: `${at}st   M[${k}]` };
    case BPF_STX:
      return { text: `${at}stx  M[${k}]` };
    case BPF_ALU: {
      const op = ALU_NAMES[code & 0xf0] ?? '???';
      return { text: op === 'neg' ? `${at}neg` : `${at}${op.padEnd(4)} ${src}` };
    }
    case BPF_JMP: {
      const op = JUMP_NAMES[code & 0xf0] ?? '???';
      if ((code & 0xf0) === BPF_JA) return { text: `${at}ja   ${pad(pc + 1 + k)}` };
      const operand = loaded === SECCOMP_DATA.nr && src !== 'x' && k !== X32_SYSCALL_BIT ? `#${k}` : src;
      const text = `${at}${op.padEnd(4)} ${operand.padEnd(13)} jt ${pad(pc + 1 + jt)} jf ${pad(pc + 1 + jf)}`;
      return { text, note: jumpNote(op, k, loaded, names) };
    }
    case BPF_RET:
      return (code & BPF_A) !== 0 ? { text: `${at}ret  a` } : { text: `${at}ret  #${hex(k)}`, note: action(k) };
    case BPF_MISC:
      return { text: `${at}${(code & 0xf8) === BPF_TXA ? 'txa' : 'tax'}` };
    default:
      return { text: `${at}??? (code ${hex(code)})` };
  }
}

function jumpNote(op: string, k: number, loaded: number | undefined, names: Map<number, string>): string | undefined {
  if (loaded === SECCOMP_DATA.arch) {
    const arch = (Object.keys(ARCHES) as SeccompArch[]).find((name) => ARCHES[name].auditArch === k);
    return arch ? `AUDIT_ARCH_${arch.toUpperCase()}` : undefined;
  }
  if (loaded !== SECCOMP_DATA.nr) return undefined;
  if (op === 'jset') return k === X32_SYSCALL_BIT ? 'x32 ABI bit' : undefined;
  const name = names.get(k);
  const relation = op === 'jeq' ? '==' : op === 'jge' ? '>=' : '>';
  return `nr ${relation} ${name ?? `${k} (not in the table)`}`;
}

function field(offset: number): string {
  if (offset === SECCOMP_DATA.nr) return 'nr';
  if (offset === SECCOMP_DATA.arch) return 'arch';
  if (offset === SECCOMP_DATA.instructionPointer) return 'instruction_pointer (low 32 bits)';
  if (offset === SECCOMP_DATA.instructionPointer + 4) return 'instruction_pointer (high 32 bits)';
  const arg = Math.floor((offset - SECCOMP_DATA.args) / 8);
  return `args[${arg}] (${offset % 8 === 0 ? 'low' : 'high'} 32 bits)`;
}

function action(value: number): string {
  const name = ACTIONS[(value & SECCOMP_RET_ACTION_FULL) >>> 0] ?? 'unknown action (kills the process)';
  const data = value & SECCOMP_RET_DATA;
  if (name === 'ERRNO') return `ERRNO(${data}${ERRNO_NAMES[data] ? ` ${ERRNO_NAMES[data]}` : ''})`;
  return data && name !== 'ALLOW' ? `${name}(${data})` : name;
}

function pad(pc: number): string {
  return String(pc).padStart(4, '0');
}

function hex(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}
