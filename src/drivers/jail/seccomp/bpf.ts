/**
 * Classic BPF as seccomp uses it: the instruction encoding of
 * <linux/filter.h> and <linux/bpf_common.h>, the return values of
 * <linux/seccomp.h>, the layout of struct seccomp_data, and a small
 * assembler. Nothing here knows about syscalls or policy.
 */

/** One struct sock_filter: u16 code, u8 jt, u8 jf, u32 k. */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Bytes per struct sock_filter. */
export const INSN_BYTES = 8;
/** BPF_MAXINSNS: the kernel refuses longer programs. */
export const MAX_INSNS = 4096;
/** Largest jt/jf: conditional jump offsets are one byte. */
export const MAX_COND_JUMP = 255;

// Instruction classes.
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;
// Load size and mode.
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;
// ALU operations.
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;
// Jumps.
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;
// Operand source, return source, misc.
export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;
export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;
/** Scratch memory words (M[0..15]). */
export const BPF_MEMWORDS = 16;

/** Seccomp filter return values: action in the high 16 bits, data in the low 16. */
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ACTION_FULL = 0xffff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

/** seccomp_data.arch values (<linux/audit.h>). */
export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_AARCH64 = 0xc00000b7;
export const AUDIT_ARCH_I386 = 0x40000003;
export const AUDIT_ARCH_ARM = 0x40000028;

/** x86_64: syscall numbers with this bit set come from the x32 ABI. */
export const X32_SYSCALL_BIT = 0x40000000;

/** Byte offsets in struct seccomp_data (64 bytes, host byte order). */
export const SECCOMP_DATA = {
  nr: 0,
  arch: 4,
  instructionPointer: 8,
  args: 16,
  size: 64,
} as const;

/** Offset of the low 32 bits of args[index] on a little-endian host. */
export function argLowOffset(index: number): number {
  return SECCOMP_DATA.args + 8 * index;
}

export const ERRNO = { EPERM: 1, ENOSYS: 38 } as const;
export type ErrnoName = keyof typeof ERRNO;

/**
 * Builds a program in place as struct sock_filter[] in host byte order, the
 * form bwrap's --seccomp fd expects: u16 code, u8 jt, u8 jf, u32 k, each
 * written through a typed array of its own width, so every field is in the
 * host's order. No object per instruction: compiling runs once per `brig run`,
 * while the code is still cold.
 */
export class Assembler {
  private readonly bytes = new ArrayBuffer(MAX_INSNS * INSN_BYTES);
  private readonly u8 = new Uint8Array(this.bytes);
  private readonly u16 = new Uint16Array(this.bytes);
  private readonly u32 = new Uint32Array(this.bytes);
  /** Number of instructions so far; also the index of the next one. */
  length = 0;

  /** Appends one instruction and returns its index. */
  emit(code: number, k: number, jt = 0, jf = 0): number {
    const pc = this.length;
    if (pc >= MAX_INSNS) throw new Error(`seccomp: internal error, program over ${MAX_INSNS} instructions`);
    if (jt > MAX_COND_JUMP || jf > MAX_COND_JUMP) throw new Error(`seccomp: internal error, jump offset ${Math.max(jt, jf)} over 8 bits`);
    this.u16[pc * 4] = code;
    this.u8[pc * 8 + 2] = jt;
    this.u8[pc * 8 + 3] = jf;
    this.u32[pc * 2 + 1] = k;
    this.length = pc + 1;
    return pc;
  }

  /** A = the 32-bit word at this offset of struct seccomp_data. */
  load(offset: number): number {
    return this.emit(BPF_LD | BPF_W | BPF_ABS, offset);
  }

  ret(value: number): number {
    return this.emit(BPF_RET | BPF_K, value);
  }

  /** Unconditional jump: a 32-bit offset, the only way past 255 instructions. */
  ja(offset: number): number {
    return this.emit(BPF_JMP | BPF_JA, offset);
  }

  /** Sets the offset of the `ja` at pc, once its target is known. */
  patchJa(pc: number, target: number): void {
    this.u32[pc * 2 + 1] = target - pc - 1;
  }

  /** The program so far, copied out. */
  program(): Buffer {
    return Buffer.from(this.bytes.slice(0, this.length * INSN_BYTES));
  }
}

/** Reads struct sock_filter[] (little-endian, as on every host brig runs on). */
export function decode(program: Buffer): Insn[] {
  if (program.length % INSN_BYTES !== 0) {
    throw new Error(`seccomp: a program is a whole number of ${INSN_BYTES}-byte instructions, got ${program.length} bytes`);
  }
  const insns: Insn[] = [];
  for (let at = 0; at < program.length; at += INSN_BYTES) {
    insns.push({
      code: program.readUInt16LE(at),
      jt: program.readUInt8(at + 2),
      jf: program.readUInt8(at + 3),
      k: program.readUInt32LE(at + 4),
    });
  }
  return insns;
}
