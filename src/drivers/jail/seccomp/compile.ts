/**
 * Turns the deny list (rules.ts) plus the policy's extraDeny into one classic
 * BPF program, checked in this order:
 *
 *   1. Architecture. seccomp_data.arch must be the host's native value; a
 *      syscall made through another ABI (int 0x80 on x86_64, AArch32 on arm64)
 *      has other numbers, so the process is killed (SECCOMP_RET_KILL_PROCESS).
 *   2. x32 (x86_64 only). x32 syscalls share AUDIT_ARCH_X86_64 and mark their
 *      numbers with bit 0x40000000; they fail with ENOSYS. Why ENOSYS and not
 *      a kill: it is the exact answer of a kernel without x32 support, which
 *      is what Debian, Ubuntu and Fedora ship (compiled out or off by default),
 *      so nothing legitimate can tell the difference, and the syscall never
 *      runs either way: a kill would add no safety, only a crash for a program
 *      that probes for x32.
 *   3. The syscall number, by binary search over ranges of numbers that share
 *      one outcome: allow, deny with an errno, or jump to a small block that
 *      checks arguments (clone, ioctl, personality, socket). Numbers the
 *      Linux 6.19 table does not name (gaps and anything above the last
 *      number) are denied with ENOSYS: a syscall newer than brig's table is
 *      refused as an older kernel would refuse it, never allowed by accident.
 *
 * BPF conditional jumps reach at most 255 instructions ahead. The size of a
 * search subtree depends only on its number of ranges (treeSize), so a node
 * knows how far its right half is before emitting anything; when that is over
 * 255 the node jumps to a `ja` (32-bit offset) trampoline. Leaves jump to the
 * argument blocks with `ja` too, patched once the blocks are placed. Nothing
 * is iterated to a fixed point.
 *
 * Log-only mode turns every deny of step 3 into SECCOMP_RET_LOG. Steps 1 and
 * 2 stay as they are: they are not rules one tunes, and letting a foreign ABI
 * through would allow syscalls whose numbers the list does not describe.
 *
 * This runs once per `brig run`, while its code is still cold (interpreted,
 * no inline caches yet): loops are indexed rather than for-of, nothing is
 * allocated per syscall number or per instruction, and the steps are small
 * functions. A compile takes well under a millisecond; see docs/seccomp.md.
 */

import { BrigError } from '../../../protocol/index.ts';
import { ARCHES, isSeccompArch, syscallNumber } from './arch.ts';
import type { ArchInfo } from './arch.ts';
import {
  Assembler, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, ERRNO, MAX_COND_JUMP, SECCOMP_DATA, SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_LOG, X32_SYSCALL_BIT, argLowOffset,
} from './bpf.ts';
import type { ErrnoName } from './bpf.ts';
import { DENY_RULES, HELPER_RULES } from './rules.ts';
import type { ArgCheck, DenyRule } from './rules.ts';
import type { CompiledSeccomp, SeccompArch, SeccompOptions } from './types.ts';

/**
 * What the filter decides for a syscall number, as one number: a value >= 0 is
 * the SECCOMP_RET_* to return; a value < 0 is -1 - nr, "run the argument
 * block of syscall nr".
 */
type Outcome = number;

/** How a deny reads in this mode: the filter's return value and the summary's verb, per errno. */
interface DenyStyle {
  ret: Record<ErrnoName, number>;
  verb: Record<ErrnoName, string>;
}

/** Outcome of every number from 0 to the table's last, and the argument rules of the syscalls that have some. */
interface Decisions {
  byNr: Int32Array;
  conditional: Map<number, DenyRule[]>;
}

/** Ranges of syscall numbers with one outcome: range i starts at starts[i] and ends where range i + 1 starts. */
interface Ranges {
  starts: number[];
  outcomes: Outcome[];
}

/** Leaf `ja`s to argument blocks, waiting for their offsets: instruction index and target syscall. */
interface Fixups {
  at: number[];
  nr: number[];
}

export function compileSeccomp(options: SeccompOptions): CompiledSeccomp {
  if (!isSeccompArch(options.arch)) {
    throw new BrigError('BRIG_JAIL_SETUP', `seccomp: no syscall table for architecture '${String(options.arch)}'`, 'use x86_64 or aarch64');
  }
  const arch = options.arch;
  const info = ARCHES[arch];
  const style: DenyStyle = options.logOnly
    ? { ret: { EPERM: SECCOMP_RET_LOG, ENOSYS: SECCOMP_RET_LOG }, verb: { EPERM: 'log (instead of EPERM)', ENOSYS: 'log (instead of ENOSYS)' } }
    : { ret: { EPERM: SECCOMP_RET_ERRNO | ERRNO.EPERM, ENOSYS: SECCOMP_RET_ERRNO | ERRNO.ENOSYS }, verb: { EPERM: 'deny (EPERM)', ENOSYS: 'deny (ENOSYS)' } };

  const summary: string[] = [`kill process: syscalls from any ABI but native ${arch} (seccomp_data.arch != ${hex(info.auditArch)})`];
  if (info.hasX32) summary.push(`deny (ENOSYS): x32 ABI syscalls (nr & ${hex(X32_SYSCALL_BIT)}), as a kernel without x32 answers`);
  const rules = (options.profile === 'host-helper' ? HELPER_RULES : DENY_RULES).concat(extraRules(arch, options.extraDeny, summary));
  const decisions = decide(arch, info, rules, style, summary);
  summary.push(`${style.verb.ENOSYS} numbers the Linux 6.19 ${arch} table does not name (unassigned, or above ${info.last}): unknown to brig, refused as a kernel without them would refuse them`);

  // Whatever extraDeny names, the program stays far below the kernel's 4096 instructions:
  // the tree has at most one range per number (some 940 instructions at worst).
  const asm = new Assembler();
  asm.load(SECCOMP_DATA.arch);
  asm.emit(BPF_JMP | BPF_JEQ | BPF_K, info.auditArch, 1, 0);
  asm.ret(SECCOMP_RET_KILL_PROCESS);
  asm.load(SECCOMP_DATA.nr);
  if (info.hasX32) {
    asm.emit(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, 0, 1);
    asm.ret(SECCOMP_RET_ERRNO | ERRNO.ENOSYS);
  }
  const ranges = rangesOf(decisions.byNr, style.ret.ENOSYS);
  const fixups: Fixups = { at: [], nr: [] };
  searchTree(ranges, 0, ranges.starts.length - 1, asm, fixups);
  const blockAt = argBlocks(decisions.conditional, style, asm);
  for (let i = 0; i < fixups.at.length; i++) asm.patchJa(fixups.at[i] as number, blockAt.get(fixups.nr[i] as number) as number);

  return { program: asm.program(), summary };
}

/** Rules for the policy's extraDeny names; a name no supported architecture knows is a policy error. */
function extraRules(arch: SeccompArch, names: readonly string[], summary: string[]): DenyRule[] {
  const rules: DenyRule[] = [];
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (syscallNumber(arch, name) !== undefined) {
      rules.push({ name, reason: 'denied by the policy (syscalls.extraDeny)' });
      continue;
    }
    const elsewhere = (Object.keys(ARCHES) as SeccompArch[]).find((other) => syscallNumber(other, name) !== undefined);
    if (elsewhere === undefined) {
      throw new BrigError('BRIG_POLICY_INVALID', `unknown syscall '${name}' in syscalls.extraDeny`, "use a Linux syscall name for this architecture, e.g. 'ptrace'");
    }
    summary.push(`nothing to deny for ${name} (syscalls.extraDeny): ${arch} has no such syscall, only ${elsewhere}`);
  }
  return rules;
}

/**
 * Outcome per syscall number. Named numbers start allowed and unassigned ones
 * denied with ENOSYS. The first rule that denies a syscall whatever its
 * arguments wins, and drops any argument rule for it; argument rules for one
 * syscall add up. Rules for syscalls this architecture lacks are skipped.
 */
function decide(arch: SeccompArch, info: ArchInfo, rules: readonly DenyRule[], style: DenyStyle, summary: string[]): Decisions {
  const byNr = new Int32Array(info.last + 1).fill(SECCOMP_RET_ALLOW);
  for (let i = 0; i < info.unassigned.length; i++) {
    const [first, last] = info.unassigned[i] as readonly [number, number];
    byNr.fill(style.ret.ENOSYS, first, last + 1);
  }
  const conditional = new Map<number, DenyRule[]>();
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as DenyRule;
    const nr = syscallNumber(arch, rule.name);
    if (nr === undefined || (byNr[nr] !== SECCOMP_RET_ALLOW && !conditional.has(nr))) continue;
    const errno = rule.errno ?? 'EPERM';
    if (rule.args) {
      const checks = conditional.get(nr);
      if (checks) checks.push(rule);
      else conditional.set(nr, [rule]);
      byNr[nr] = -1 - nr;
      summary.push(`${style.verb[errno]} ${rule.name} when ${describe(rule.args)}: ${rule.reason}`);
    } else {
      conditional.delete(nr);
      byNr[nr] = style.ret[errno];
      summary.push(`${style.verb[errno]} ${rule.name}: ${rule.reason}`);
    }
  }
  return { byNr, conditional };
}

/** Merges numbers with one outcome into ranges; everything above the table's last number is unknown. */
function rangesOf(byNr: Int32Array, unknown: Outcome): Ranges {
  let previous = byNr[0] as Outcome;
  const ranges: Ranges = { starts: [0], outcomes: [previous] };
  for (let nr = 1; nr < byNr.length; nr++) {
    const outcome = byNr[nr] as Outcome;
    if (outcome === previous) continue;
    ranges.starts.push(nr);
    ranges.outcomes.push(outcome);
    previous = outcome;
  }
  if (previous !== unknown) {
    ranges.starts.push(byNr.length);
    ranges.outcomes.push(unknown);
  }
  return ranges;
}

/**
 * Binary search over ranges lo..hi with the syscall number in A. Each internal
 * node is `jge #start` of its right half; the left half follows it, then the
 * right half. A node whose left half is over 255 instructions long jumps to a
 * `ja` trampoline instead (conditional offsets are 8 bits, `ja`'s are 32).
 */
function searchTree(ranges: Ranges, lo: number, hi: number, asm: Assembler, fixups: Fixups): void {
  if (lo === hi) {
    const outcome = ranges.outcomes[lo] as Outcome;
    if (outcome >= 0) {
      asm.ret(outcome);
    } else {
      fixups.at.push(asm.ja(0));
      fixups.nr.push(-1 - outcome);
    }
    return;
  }
  const mid = (lo + hi + 1) >> 1;
  const start = ranges.starts[mid] as number;
  const leftSize = treeSize(mid - lo);
  if (leftSize <= MAX_COND_JUMP) {
    asm.emit(BPF_JMP | BPF_JGE | BPF_K, start, leftSize, 0);
  } else {
    asm.emit(BPF_JMP | BPF_JGE | BPF_K, start, 0, 1);
    asm.ja(leftSize);
  }
  searchTree(ranges, lo, mid - 1, asm, fixups);
  searchTree(ranges, mid, hi, asm, fixups);
}

/** Instructions searchTree() emits for `count` ranges: it depends on the count alone. */
function treeSize(count: number): number {
  // Without trampolines a tree of n leaves is 2n - 1 long; the first trampoline needs a
  // left half of 129 leaves (257 instructions), so a tree of fewer than 258 leaves has none.
  if (count < 258) return 2 * count - 1;
  const left = treeSize(count >> 1);
  return 1 + (left > MAX_COND_JUMP ? 1 : 0) + left + treeSize(count - (count >> 1));
}

/** One block per syscall with argument rules: each rule's test, then `ret ALLOW`. Returns where each block starts. */
function argBlocks(conditional: Map<number, DenyRule[]>, style: DenyStyle, asm: Assembler): Map<number, number> {
  const blockAt = new Map<number, number>();
  conditional.forEach((checks, nr) => {
    blockAt.set(nr, asm.length);
    for (let i = 0; i < checks.length; i++) {
      const check = checks[i] as DenyRule;
      argTest(check.args as ArgCheck, style.ret[check.errno ?? 'EPERM'], asm);
    }
    asm.ret(SECCOMP_RET_ALLOW);
  });
  return blockAt;
}

/** Load the argument's low 32 bits, test it, return `deny` on a match, else fall through to the next test. */
function argTest(check: ArgCheck, deny: number, asm: Assembler): void {
  asm.load(argLowOffset(check.arg));
  if (check.op === 'hasAnyBit') {
    asm.emit(BPF_JMP | BPF_JSET | BPF_K, check.mask, 0, 1);
  } else {
    // n comparisons, then `ret deny` at index n (counting from the first comparison); the next test starts at n + 1.
    const n = check.values.length;
    for (let i = 0; i < n; i++) {
      const value = check.values[i] as number;
      if (check.op === 'isOneOf') asm.emit(BPF_JMP | BPF_JEQ | BPF_K, value, n - 1 - i, i === n - 1 ? 1 : 0); // match: to the deny
      else asm.emit(BPF_JMP | BPF_JEQ | BPF_K, value, n - i, 0); //                                              match: past the deny
    }
  }
  asm.ret(deny);
}

function describe(check: ArgCheck): string {
  const arg = `${check.label} (arg${check.arg}, low 32 bits)`;
  if (check.op === 'hasAnyBit') return `${arg} has any bit of ${hex(check.mask)}`;
  const values = check.values.map(hex).join(', ');
  return check.op === 'isOneOf' ? `${arg} is ${values}` : `${arg} is not ${values}`;
}

function hex(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}
