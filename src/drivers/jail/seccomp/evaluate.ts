/**
 * A classic BPF interpreter over struct seccomp_data, faithful to the kernel:
 * it first refuses what the kernel would refuse at load time
 * (bpf_check_classic, check_load_and_stores and seccomp_check_filter in
 * net/core/filter.c and kernel/seccomp.c), then runs the program the way the
 * kernel's cBPF-to-eBPF translation does (32-bit unsigned arithmetic, division
 * by a zero X returns 0), and maps the return value to an action the way
 * __seccomp_filter does. Used by tests and `brig` tooling to check a filter
 * without a kernel; the kernel test in the test suite checks the kernel agrees.
 */

import {
  BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_DIV, BPF_IMM, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP,
  BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MEMWORDS, BPF_MISC, BPF_MUL, BPF_NEG,
  BPF_OR, BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR, ERRNO,
  MAX_INSNS, SECCOMP_DATA, SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ALLOW, SECCOMP_RET_DATA, SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE, SECCOMP_RET_TRAP,
  SECCOMP_RET_USER_NOTIF, decode,
} from './bpf.ts';
import type { Insn } from './bpf.ts';
import type { SeccompInput, SeccompVerdict } from './types.ts';

/** Largest errno the kernel passes back (MAX_ERRNO); SECCOMP_RET_ERRNO data above it is clamped. */
const MAX_ERRNO = 4095;

const ALU_OPS = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
const COND_JUMPS = [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET];

/** Opcodes seccomp_check_filter accepts (BPF_MOD and packet loads are not among them). */
const ALLOWED = new Set<number>([
  BPF_LD | BPF_W | BPF_ABS, BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN,
  BPF_RET | BPF_K, BPF_RET | BPF_A,
  ...ALU_OPS.flatMap((op) => [BPF_ALU | op | BPF_K, BPF_ALU | op | BPF_X]), BPF_ALU | BPF_NEG,
  BPF_LD | BPF_IMM, BPF_LDX | BPF_IMM, BPF_MISC | BPF_TAX, BPF_MISC | BPF_TXA,
  BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX,
  BPF_JMP | BPF_JA, ...COND_JUMPS.flatMap((op) => [BPF_JMP | op | BPF_K, BPF_JMP | op | BPF_X]),
]);

export function evaluateSeccomp(program: Buffer, data: SeccompInput): SeccompVerdict {
  const insns = decode(program);
  check(insns);
  return verdict(run(insns, seccompData(data)));
}

/** struct seccomp_data, little-endian: nr u32 @0, arch u32 @4, instruction_pointer u64 @8, args u64[6] @16. */
function seccompData(data: SeccompInput): Buffer {
  const buf = Buffer.alloc(SECCOMP_DATA.size);
  buf.writeUInt32LE(data.nr >>> 0, SECCOMP_DATA.nr);
  buf.writeUInt32LE(data.arch >>> 0, SECCOMP_DATA.arch);
  buf.writeBigUInt64LE(BigInt.asUintN(64, data.instructionPointer ?? 0n), SECCOMP_DATA.instructionPointer);
  const args = data.args ?? [];
  if (args.length > 6) throw new Error(`seccomp: a syscall has at most 6 arguments, got ${args.length}`);
  args.forEach((arg, i) => buf.writeBigUInt64LE(BigInt.asUintN(64, arg), SECCOMP_DATA.args + 8 * i));
  return buf;
}

function invalid(pc: number, why: string): never {
  throw new Error(`seccomp: the kernel would refuse this program (EINVAL): instruction ${pc}: ${why}`);
}

/** The load-time checks, in the kernel's order. */
function check(insns: readonly Insn[]): void {
  const flen = insns.length;
  if (flen === 0 || flen > MAX_INSNS) invalid(0, `length ${flen} is not 1..${MAX_INSNS}`);
  insns.forEach((insn, pc) => {
    const { code, k } = insn;
    if (!ALLOWED.has(code)) invalid(pc, `opcode 0x${code.toString(16)} is not allowed in seccomp filters`);
    const cls = code & 0x07;
    const op = code & 0xf0;
    if (code === (BPF_LD | BPF_W | BPF_ABS) && (k >= SECCOMP_DATA.size || k % 4 !== 0)) {
      invalid(pc, `load offset ${k} is not an aligned offset in struct seccomp_data`);
    }
    if (code === (BPF_ALU | BPF_DIV | BPF_K) && k === 0) invalid(pc, 'division by constant zero');
    if ((code === (BPF_ALU | BPF_LSH | BPF_K) || code === (BPF_ALU | BPF_RSH | BPF_K)) && k >= 32) invalid(pc, `shift by ${k}`);
    if ((code === (BPF_LD | BPF_MEM) || code === (BPF_LDX | BPF_MEM) || cls === BPF_ST || cls === BPF_STX) && k >= BPF_MEMWORDS) {
      invalid(pc, `scratch memory index ${k} out of range`);
    }
    if (code === (BPF_JMP | BPF_JA) && k >= flen - pc - 1) invalid(pc, `ja ${k} jumps past the end`);
    if (cls === BPF_JMP && op !== BPF_JA && (pc + insn.jt + 1 >= flen || pc + insn.jf + 1 >= flen)) {
      invalid(pc, 'conditional jump past the end');
    }
  });
  const lastCode = (insns[flen - 1] as Insn).code;
  if (lastCode !== (BPF_RET | BPF_K) && lastCode !== (BPF_RET | BPF_A)) invalid(flen - 1, 'the last instruction is not a return');
  checkLoadsAndStores(insns);
}

/** check_load_and_stores(): scratch memory must be written on every path before it is read. */
function checkLoadsAndStores(insns: readonly Insn[]): void {
  const masks = new Array<number>(insns.length).fill(0xffff);
  let valid = 0;
  insns.forEach((insn, pc) => {
    valid &= masks[pc] as number;
    const cls = insn.code & 0x07;
    if (cls === BPF_ST || cls === BPF_STX) {
      valid |= 1 << insn.k;
    } else if (insn.code === (BPF_LD | BPF_MEM) || insn.code === (BPF_LDX | BPF_MEM)) {
      if (!(valid & (1 << insn.k))) invalid(pc, `reads scratch memory M[${insn.k}] before any store`);
    } else if (insn.code === (BPF_JMP | BPF_JA)) {
      masks[pc + 1 + insn.k] = (masks[pc + 1 + insn.k] as number) & valid;
      valid = 0xffff;
    } else if (cls === BPF_JMP) {
      masks[pc + 1 + insn.jt] = (masks[pc + 1 + insn.jt] as number) & valid;
      masks[pc + 1 + insn.jf] = (masks[pc + 1 + insn.jf] as number) & valid;
      valid = 0xffff;
    }
  });
}

/** Runs a checked program; every jump goes forward, so this ends. Returns the filter's 32-bit result. */
function run(insns: readonly Insn[], data: Buffer): number {
  let a = 0;
  let x = 0;
  const mem = new Uint32Array(BPF_MEMWORDS);
  for (let pc = 0; pc < insns.length; pc++) {
    const { code, jt, jf, k } = insns[pc] as Insn;
    const cls = code & 0x07;
    const src = (code & BPF_X) !== 0 ? x : k;
    switch (cls) {
      case BPF_LD:
        if (code === (BPF_LD | BPF_W | BPF_ABS)) a = data.readUInt32LE(k);
        else if (code === (BPF_LD | BPF_W | BPF_LEN)) a = SECCOMP_DATA.size;
        else if (code === (BPF_LD | BPF_MEM)) a = mem[k] as number;
        else a = k;
        break;
      case BPF_LDX:
        if (code === (BPF_LDX | BPF_W | BPF_LEN)) x = SECCOMP_DATA.size;
        else if (code === (BPF_LDX | BPF_MEM)) x = mem[k] as number;
        else x = k;
        break;
      case BPF_ST:
        mem[k] = a;
        break;
      case BPF_STX:
        mem[k] = x;
        break;
      case BPF_ALU: {
        const op = code & 0xf0;
        // The kernel's translation makes a cBPF division by a zero X end the program with 0.
        if (op === BPF_DIV && src === 0) return 0;
        a = alu(op, a, src);
        break;
      }
      case BPF_JMP: {
        const op = code & 0xf0;
        if (op === BPF_JA) {
          pc += k;
          break;
        }
        const taken = op === BPF_JEQ ? a === src : op === BPF_JGT ? a > src : op === BPF_JGE ? a >= src : (a & src) !== 0;
        pc += taken ? jt : jf;
        break;
      }
      case BPF_RET:
        return ((code & BPF_A) !== 0 ? a : k) >>> 0;
      case BPF_MISC:
        if ((code & 0xf8) === BPF_TXA) a = x;
        else if ((code & 0xf8) === BPF_TAX) x = a;
        break;
    }
  }
  throw new Error('seccomp: internal error, the program ran off its end');
}

function alu(op: number, a: number, src: number): number {
  switch (op) {
    case BPF_ADD: return (a + src) >>> 0;
    case BPF_SUB: return (a - src) >>> 0;
    case BPF_MUL: return Math.imul(a, src) >>> 0;
    case BPF_DIV: return Math.floor(a / src) >>> 0;
    case BPF_AND: return (a & src) >>> 0;
    case BPF_OR: return (a | src) >>> 0;
    case BPF_XOR: return (a ^ src) >>> 0;
    case BPF_LSH: return (a << (src & 31)) >>> 0;
    case BPF_RSH: return a >>> (src & 31);
    case BPF_NEG: return -a >>> 0;
    default: throw new Error(`seccomp: internal error, ALU op 0x${op.toString(16)}`);
  }
}

/** What __seccomp_filter does with a filter's result (one filter, no tracer, no notification listener). */
function verdict(result: number): SeccompVerdict {
  const data = result & SECCOMP_RET_DATA;
  switch ((result & SECCOMP_RET_ACTION_FULL) >>> 0) {
    case SECCOMP_RET_ALLOW: return { action: 'allow' };
    case SECCOMP_RET_ERRNO: return { action: 'errno', errno: Math.min(data, MAX_ERRNO) };
    case SECCOMP_RET_LOG: return { action: 'log' };
    case SECCOMP_RET_TRACE: return { action: 'trace' };
    case SECCOMP_RET_TRAP: return { action: 'trap' };
    // Without a listener (bwrap attaches none) the kernel fails the syscall with ENOSYS.
    case SECCOMP_RET_USER_NOTIF: return { action: 'errno', errno: ERRNO.ENOSYS };
    case SECCOMP_RET_KILL_THREAD: return { action: 'kill_thread' };
    case SECCOMP_RET_KILL_PROCESS: return { action: 'kill_process' };
    // Unknown actions take the kill path in __seccomp_filter, with a forced SIGSYS that ends the process.
    default: return { action: 'kill_process' };
  }
}
